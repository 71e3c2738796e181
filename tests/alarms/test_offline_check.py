"""`plume config check` catches an offline rule that would flap between two polls."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError
from gateway.site.load import load_site

SITE = """site: {{id: s}}
buses: [{{name: lan, type: tcp, host: 127.0.0.1}}]
devices:
  - {{name: slow, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 10}}
  - {{name: fast, bus: lan, address: 2, profile: dust-monitor, poll_interval_s: 1}}
rules: [{{id: off, type: offline, after_s: {after}}}]
"""


def test_offline_after_shorter_than_a_poll_interval_is_refused(tmp_path):
    f = tmp_path / "site.yaml"
    f.write_text(SITE.format(after=5))
    with pytest.raises(ConfigError) as exc:
        load_site(f)
    assert exc.value.problems == ["rules (off).after_s: 5 s is not longer than the poll interval of slow: the alarm "
                                  "would flap between polls; make it several intervals"]


def test_offline_after_several_intervals_is_fine(tmp_path):
    f = tmp_path / "site.yaml"
    f.write_text(SITE.format(after=60))
    assert load_site(f).config.rules[0].id == "off"
