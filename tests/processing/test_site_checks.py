"""`plume config check` on the regulatory settings (issue #11): a CEMS polled too slowly for HJ 212 minute data is
said so (the site still runs), and a site whose reports follow a local clock must name its time zone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.config import ConfigError
from gateway.site.load import load_site
from tests.plume_cli import plume as run_plume

ROOT = Path(__file__).resolve().parents[2]

STACK = """\
site: {{id: s1{zone}}}
buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: 1502}}]
devices:
  - {{name: dust-1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 10}}
  - {{name: stack-1, bus: lan, address: 2, profile: cems-analyzer, poll_interval_s: {poll}}}
{extra}"""


def plume(*args: str) -> subprocess.CompletedProcess[str]:
    return run_plume(*args, cwd=ROOT, timeout=60)


def write(tmp_path: Path, poll: float = 1, zone: str | None = "Asia/Shanghai", extra: str = "") -> Path:
    f = tmp_path / "site.yaml"
    f.write_text(STACK.format(poll=poll, zone="" if zone is None else f", timezone: {zone}", extra=extra),
                 encoding="utf-8")
    return f


# --- finding 1: a CEMS polled slower than every 5 s ------------------------------------------------------------
def test_config_check_says_a_cems_polled_every_10_s_cannot_make_hj_minute_data(tmp_path):
    r = plume("config", "check", str(write(tmp_path, poll=10)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("ok")
    # warnings go to stderr (beside the site's other ones, e.g. that it has no sinks)
    (warning,) = [x for x in r.stderr.splitlines() if "poll_interval_s" in x]
    assert warning.startswith("warning: devices[1].poll_interval_s: stack-1 (cems) is polled every 10 s: it cannot "
                              "make HJ 212-valid minute data (appendix D2.2: at least 12 values a minute, at most "
                              "5 s apart)")
    assert "Poll it every 5 s or faster" in warning


@pytest.mark.parametrize("poll", [5, 1, 0.5])
def test_a_cems_polled_every_5_s_or_faster_is_fine(tmp_path, poll):
    r = plume("config", "check", str(write(tmp_path, poll=poll)))
    assert (r.returncode, r.stdout.strip().splitlines()[-1][:2]) == (0, "ok")
    assert "poll_interval_s" not in r.stderr and "HJ 212-valid" not in r.stderr


def test_the_stage_judges_minutes_against_the_site_poll_intervals(tmp_path):
    from gateway.pipeline.stage import RegulatoryStage

    stage = RegulatoryStage(load_site(write(tmp_path, poll=2)))
    # stack-1 every 2 s: 30 samples a minute (more than the 12 HJ 212 asks); dust-1 every 10 s: 6
    assert stage.windows.expected_samples("stack-1", "cems") == (30, 12)
    assert stage.windows.expected_samples("dust-1", "dust") == (6, 0)


# --- finding 4: the time zone ----------------------------------------------------------------------------------
UPLINK = """\
uplinks:
  - {name: city, host: 127.0.0.1, port: 9999, mn: "010000A8900016F000169DC0", pw: "Kq7x2L", st: 31,
     codes: [{code: a21026, device: stack-1, channel: so2}]}
"""
RULES = """\
rules:
  - {id: so2-1h, type: threshold, channel: so2, window: 1h, limit: 400}
"""
NOISE = """\
rule_packs: [{pack: noise-gb12523}]
"""
WINDOWS = """\
windows: {periods: [1m, 15m, 1h, 1d]}
"""
MAINTENANCE = """\
maintenance:
  windows: [{daily: "02:00-02:15", devices: [stack-1], reason: zero check}]
"""


@pytest.mark.parametrize(("extra", "why"), [(UPLINK, "HJ 212 uplinks"), (RULES, "window or scheduled rules"),
                                            (NOISE, "window or scheduled rules"), (WINDOWS, "a windows section"),
                                            (MAINTENANCE, "maintenance windows")])
def test_a_site_whose_reports_follow_local_time_must_name_its_zone(tmp_path, extra, why):
    f = write(tmp_path, zone=None, extra=extra)
    with pytest.raises(ConfigError) as exc:
        load_site(f)
    (line,) = [p for p in exc.value.problems if p.startswith("site.timezone")]
    assert line.startswith(f"site.timezone: missing: this site has {why}")
    assert "Asia/Shanghai" in line
    r = plume("config", "check", str(f))
    assert r.returncode == 2 and "site.timezone: missing" in r.stderr and r.stdout == ""


def test_naming_the_zone_settles_it_even_as_utc(tmp_path):
    assert load_site(write(tmp_path, zone="UTC", extra=UPLINK)).config.site.timezone == "UTC"
    assert load_site(write(tmp_path / "..", zone="Asia/Shanghai", extra=UPLINK + RULES)).config.site.timezone == (
        "Asia/Shanghai")


def test_a_plain_polling_site_may_leave_the_zone_out(tmp_path):
    # nothing in it follows a local clock but the default windows, which only sinks see (as UTC epoch times)
    assert load_site(write(tmp_path, zone=None)).config.site.timezone == "UTC"
