"""Fixtures every test folder shares."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from itertools import count
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from gateway.site.load import load_site
from gateway.site.model import Site

# Property tests judge what the code does, never how fast this machine is (no timed assertions in the suite): no
# per-example deadline and no "input generation is slow" failure on a loaded machine. The number of examples each
# test asks for is unchanged.
settings.register_profile("plume", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("plume")


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[..., Site]:
    """Write a site file from YAML text and load it (through the one assembly path, as `plume run` does). The text
    is a str.format template: `{tmp}` is the test's folder, every other `{name}` a keyword given, and braces meant
    for YAML are doubled (`{{id: s1}}`)."""
    numbers = count()

    def make(text: str, **fill: object) -> Site:
        path = tmp_path / f"site-{next(numbers)}.yaml"
        path.write_text(textwrap.dedent(text).format(tmp=tmp_path, **fill), encoding="utf-8")
        return load_site(path)

    return make


# Modules that keep a worker longest (worker-seconds at -n 8, 2026-12-03), longest first. With `--dist loadscope
# --no-loadscope-reorder` (.ci/run) the workers take modules in collection order, so these start first and the short
# modules fill the gaps at the end (xdist's own order, by number of tests, left one worker running a 40 s module
# while the others were idle: 131 s for 98 s of work per worker). A module missing here only runs later; the list
# changes the order of modules, never what runs.
LONGEST_FIRST = (
    "acquisition/test_hostile_answers.py", "deploy/test_nats_cluster.py", "scenarios/test_alarm_scenarios.py",
    "grafana/test_queries.py", "cli/test_discover.py", "alarms/test_sms_e2e.py", "processing/test_windows.py",
    "pipeline/test_run_e2e.py", "pipeline/test_disk_full.py", "pipeline/test_recovery.py", "test_demo.py",
    "hj212/test_e2e_conformance.py", "alarms/test_email.py", "deploy/test_install.py", "cockpit/test_browser.py",
    "acquisition/test_polling_sim.py", "pipeline/test_backlog_memory.py", "alarms/test_camera_mail.py",
    "hj212/test_aggregate_feed.py", "pipeline/test_mqtt_sink.py", "cli/test_run_reload.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {f"tests/{m}": i for i, m in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable: the rest keep order
