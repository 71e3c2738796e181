"""`plume run` as systemd and mosquitto users expect it (issue 14, findings 7 and 13): SIGHUP reloads the site file
(a valid one is applied without losing a reading, an invalid one is refused with the reason while the running
configuration goes on), a gateway with no sinks says so, and /metrics carries the active alarms.

plume-sim serves the devices; its truth log (every value it served) is the reference for "no reading lost".
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from gateway.localservers import free_port, loopback_http
from gateway.store.config import LOG_FILE
from tests.pipeline.helpers import Proc, log_records, match_truth, read_truth
from tests.pipeline.servers import wait_for

from .helpers import start_sim, write

SIM_SITE = """\
site: {{id: reload-site}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - {{name: dust-1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: {interval}, timeout_s: 0.5}}
"""

SITE = SIM_SITE + """\
  - {{name: ghost, bus: nowhere, address: 1, profile: dust-monitor, poll_interval_s: 1, timeout_s: 0.3}}
  - {{name: spare, bus: lan, address: 7, profile: dust-monitor, enabled: false}}
buses_extra_marker: x
store: {{dir: {tmp}/log, commit_interval_ms: 100}}
rules:
  - {{id: offline, type: offline, after_s: 2}}
"""


def site_text(tmp: Path, sim_port: int, dead_port: int, interval: float) -> str:
    text = SITE.format(sim_port=sim_port, interval=interval, tmp=tmp)
    # the ghost's bus: a loopback port where nothing listens (it never answers)
    return text.replace("buses_extra_marker: x\n", "").replace(
        "devices:\n", f"  - {{name: nowhere, type: tcp, host: 127.0.0.1, port: {dead_port}}}\ndevices:\n")


def metrics(port: int) -> str:
    try:
        return loopback_http().get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return ""


def committed(port: int) -> float:
    m = re.search(r"^plume_log_committed_total\{[^}]*\} ([0-9.e+]+)$", metrics(port), re.M)
    return float(m.group(1)) if m else 0.0


def start_gateway(procs: Callable[..., Proc], site: Path, tmp: Path, metrics_port: int) -> Proc:
    p = procs([sys.executable, "-m", "gateway.cli", "run", str(site), "--metrics-port", str(metrics_port)],
              tmp / "gateway.log")
    p.wait_output("running", 30)
    return p


def rig(tmp: Path, procs: Callable[..., Proc], interval: float) -> tuple[Path, Proc, int]:
    sim_port, dead_port, metrics_port = free_port(), free_port(), free_port()
    sim_site = write(tmp / "sim.yaml", SIM_SITE, sim_port=sim_port, interval=interval)
    start_sim(procs, sim_site, tmp)
    site = tmp / "site.yaml"
    site.write_text(site_text(tmp, sim_port, dead_port, interval), encoding="utf-8")
    gw = start_gateway(procs, site, tmp, metrics_port)
    return site, gw, metrics_port


def test_metrics_carry_the_active_alarms_and_a_gateway_without_sinks_warns(tmp_path, procs):
    _site, gw, port = rig(tmp_path, procs, 0.5)
    assert re.search(r"WARNING.*sinks: none: readings are committed .* delivered nowhere", gw.output()), gw.output()
    text = wait_for(lambda: (m := metrics(port)) and 'plume_alarm_active{' in m and m, 20,
                    "an active alarm in /metrics")
    assert re.search(r'^plume_alarm_active\{[^}]*device="ghost"[^}]*rule="offline"[^}]*\} 1\.0$', text, re.M), text
    assert re.search(r'^plume_alarms_active\{site="reload-site"\} 1\.0$', text, re.M), text
    assert re.search(r'^plume_alarm_events_total\{site="reload-site"\} [1-9]', text, re.M), text
    assert gw.terminate() == 0


def test_sighup_applies_a_changed_poll_interval_refuses_an_invalid_file_and_loses_no_reading(tmp_path, procs):
    site, gw, port = rig(tmp_path, procs, 1.0)
    assert gw.proc is not None
    good = site.read_text(encoding="utf-8")
    wait_for(lambda: committed(port) >= 4, 30, "readings before the reload")

    # an invalid file: refused with the reason, the running configuration goes on
    site.write_text(good.replace("poll_interval_s: 1.0", "poll_interval_s: -1"), encoding="utf-8")
    before = committed(port)
    os.kill(gw.proc.pid, signal.SIGHUP)
    gw.wait_output("keeps running the previous configuration", 20)
    assert "devices[0].poll_interval_s" in gw.output(), gw.output()
    wait_for(lambda: committed(port) >= before + 3, 30, "readings after the refused reload")
    assert gw.running()

    # a valid file with a shorter poll interval: applied
    site.write_text(good.replace("poll_interval_s: 1.0", "poll_interval_s: 0.25"), encoding="utf-8")
    hup_ms = int(time.time() * 1000)
    os.kill(gw.proc.pid, signal.SIGHUP)
    gw.wait_output("reloaded", 30)
    applied_ms = int(time.time() * 1000)
    before = committed(port)
    wait_for(lambda: committed(port) >= before + 12, 30, "readings at the new interval")
    assert gw.terminate() == 0
    assert gw.output().count("running:") == 2, "one start, one reload, no restart of the process"

    records = [r for _id, _seq, r in log_records(tmp_path / "log" / LOG_FILE)]
    dust = sorted(r.ts for r in records if r.device == "dust-1" and r.ok)
    old = [b - a for a, b in itertools.pairwise(dust) if b < hup_ms]
    new = [b - a for a, b in itertools.pairwise(dust) if a > applied_ms]
    # 1 s apart before (a poll late by the loaded machine shortens the gap after it: 829 ms at load 11), 0.25 s after
    assert old and min(old) >= 600, old
    assert new and min(new) <= 400, new
    # every value the simulator served for dust-1 is in the log, across both reloads
    points = {"dust-1": [{"time": r.ts, **{ch: cv.value for ch, cv in r.values.items()}} for r in records
                         if r.device == "dust-1"]}
    truth = {d: chs for d, chs in read_truth(tmp_path / "truth-sim.jsonl").items() if d == "dust-1"}
    missing, extra = match_truth(truth, points)
    assert not missing, f"served but not in the log ({len(missing)}): {missing[:5]}"
    assert not extra, extra[:5]
