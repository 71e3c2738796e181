"""The wiring table: every consumer the site file names is built one way, secrets from inline / *_env / *_file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.alarms.delivery import WebhookSink
from gateway.config import ConfigError
from gateway.pipeline.consumers import build_consumers
from gateway.site.load import load_site
from gateway.store.log import DurableLog

SITE = """\
site: {id: s1, timezone: UTC}
buses: [{name: lan, type: tcp, host: 127.0.0.1, port: 1}]
devices: [{name: d1, bus: lan, address: 1, profile: dust-monitor}]
rules: [{id: pm10-1m, type: threshold, channel: pm10, window: 1m, limit: 150}]
windows: {periods: [1m, 1h, 1d]}
notify:
  webhooks:
    - {name: officers, url_file: secrets/wecom-url, template: wecom}
"""


async def test_a_webhook_url_comes_from_a_file_next_to_the_site_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/wecom-url").write_text("https://qyapi.example/send?key=from-file\n")
    (tmp_path / "site.yaml").write_text(SITE)
    site = load_site(tmp_path / "site.yaml")
    plans = build_consumers(site)
    assert [(p.name, p.section) for p in plans] == [("officers", "notify.webhooks")]
    lg = DurableLog(tmp_path / "log.sqlite")
    await lg.open([p.name for p in plans])
    try:
        sink = plans[0].make(lg, None)
        assert isinstance(sink, WebhookSink) and sink._url == "https://qyapi.example/send?key=from-file"
    finally:
        await lg.close()


def test_an_unreadable_url_file_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(SITE)
    site = load_site(tmp_path / "site.yaml")
    with pytest.raises(ConfigError) as exc:
        build_consumers(site)
    assert exc.value.problems == [
        f"notify.webhooks[0].url_file: cannot read {tmp_path / 'secrets/wecom-url'}: No such file or directory"]


def test_url_and_url_file_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(SITE.replace("url_file: secrets/wecom-url", "url_file: x, url: https://y"))
    with pytest.raises(ConfigError, match=r"notify.webhooks\[0\]: give url .*, url_env or url_file: one of them"):
        load_site(tmp_path / "site.yaml")
