"""A full disk under `plume run` (the simulator polled over Modbus TCP), on a small tmpfs the test mounts itself.

What a user must see: the disk-full error named as such (not a SQLite rollback message), memory held for
uncommitted readings bounded and reported in health, SIGTERM while full stopping cleanly (exit 0) with the number
of readings that could not be committed, commits resuming on their own once space returns, and — when the file
system runs low again — the oldest readings dropped (counted for the sink that had not delivered them), said at
WARNING, and the log-drops alarm raised on MQTT.

Mounting needs root (CI runs as root); elsewhere the test is skipped with that reason.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import CI, Proc, gateway_cmd, sim_cmd
from .servers import Mosquitto, MqttCollector, free_port, wait_for

MAX_BUFFERED = 300

SITE = """\
site: {{id: disk-site, timezone: Asia/Shanghai}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - {{name: dust-1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 0.05, timeout_s: 0.5}}
  - {{name: dust-2, bus: lan, address: 2, profile: dust-monitor, poll_interval_s: 0.05, timeout_s: 0.5}}
store:
  dir: {disk}/log
  commit_interval_ms: 100
  min_free_mb: {min_free_mb}
  max_buffered: {max_buffered}
windows: {{devices: []}}
rules:
  - {{id: log-drops, type: log_drops, quiet_s: 3600}}
sinks:
  - {{type: mqtt, name: broker, host: 127.0.0.1, port: {mqtt_port}, health_interval_s: 0.3,
      reconnect_min_s: 0.1, reconnect_max_s: 0.5}}
  - {{type: influx, name: tsdb, url: "http://127.0.0.1:{dead_port}", database: plume, retry_min_s: 0.5,
      retry_max_s: 1}}
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted in a private folder of this test (unmounted by path at the end)."""
    if os.geteuid() != 0:
        if CI:
            pytest.fail("CI must run as root to mount a size-limited tmpfs")
        pytest.skip("needs root to mount a size-limited tmpfs (CI runs as root)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def fill(folder: Path, name: str, leave: int = 0) -> Path:
    """Write a filler file until at most `leave` bytes are free on `folder`'s file system (0: until ENOSPC)."""
    path = folder / name
    block = b"\0" * 4096
    with open(path, "ab") as f:
        while free_bytes(folder) > leave:
            try:
                f.write(block)
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    return path


class Health:
    """The latest retained health snapshot and every alarm event, as an MQTT subscriber sees them."""

    def __init__(self, port: int):
        self.collector = MqttCollector(port, "plume/disk-site/#", client_id="disk-full-watcher")
        self.since_ms = 0

    def latest(self) -> dict[str, Any]:
        snaps = [json.loads(p) for t, p, _ in self.collector.snapshot() if t == "plume/disk-site/health"]
        snaps = [h for h in snaps if h.get("ts", 0) >= self.since_ms]
        return snaps[-1] if snaps else {}

    def log(self) -> dict[str, Any]:
        return dict(self.latest().get("log", {}))

    def new_run(self) -> None:
        """From now on only snapshots of the gateway started next count (the retained one is the last run's)."""
        self.since_ms = int(time.time() * 1000)

    def alarm_events(self) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _ in self.collector.snapshot() if t == "plume/disk-site/alarms/events"]

    def close(self) -> None:
        self.collector.close()


def test_full_disk_is_recognised_bounded_survives_sigterm_and_recovers(
    tmp_path: Path, small_disk: Path, mosquitto: Mosquitto, procs: Callable[..., Proc]
) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE.format(sim_port=free_port(), disk=small_disk, mqtt_port=mosquitto.port,
                                     dead_port=free_port(), min_free_mb=0.4, max_buffered=MAX_BUFFERED))
    sim = procs(sim_cmd(site_file, tmp_path / "truth.jsonl"), tmp_path / "sim.out")
    sim.wait_output("ready:")
    health = Health(mosquitto.port)
    try:
        # --- 1. the disk fills up completely (something else wrote it full) ------------------------------------
        health.new_run()
        gw = procs(gateway_cmd(site_file), tmp_path / "gateway-1.out")
        gw.wait_output("running:")
        wait_for(lambda: health.log().get("committed", 0) > 20, 20, "commits before the disk fills")
        filler = fill(small_disk, "filler")
        gw.wait_output("disk is full", timeout=20)
        # the other writer keeps the disk full: what the log frees by dropping its oldest readings is taken again
        wait_for(lambda: fill(small_disk, "filler") and health.log().get("lost", 0) > 0, 30,
                 "readings refused once the memory buffer is full")
        snap = health.log()
        assert snap["disk_full"] and snap["max_buffered"] == MAX_BUFFERED, snap
        assert snap["buffered"] <= MAX_BUFFERED + 50, snap  # bounded (+ records of other kinds)
        out = gw.output()
        assert "cannot rollback" not in out
        assert "WARNING" in out and "readings are held in memory" in out, out[-3000:]

        # --- 2. space returns: commits resume on their own ----------------------------------------------------
        before = health.log()["committed"]
        filler.unlink()
        gw.wait_output("commits work again", timeout=30)
        wait_for(lambda: health.log().get("committed", 0) > before + 50 and not health.log()["disk_full"], 30,
                 "commits after space returned")

        # --- 3. full again, and SIGTERM: a clean stop that says how many readings could not be committed ----------
        lost = health.log()["lost"]
        filler = fill(small_disk, "filler")
        wait_for(lambda: fill(small_disk, "filler") and health.log().get("lost", 0) > lost, 60, "the disk full again")
        fill(small_disk, "filler")
        code = gw.terminate()
        out = gw.output()
        assert code == 0, out[-3000:]
        assert "Traceback" not in out, out[-3000:]
        assert "could not be committed (disk full)" in out, out[-3000:]

        # --- 4. a restart on the still full disk comes up; once space returns it commits ----------------------
        health.new_run()
        gw = procs(gateway_cmd(site_file), tmp_path / "gateway-2.out")
        gw.wait_output("running:", timeout=30)
        filler.unlink()
        wait_for(lambda: health.log().get("committed", 0) > 50, 30, "commits after the restart")

        # --- 5. the file system runs low again: the oldest readings go, counted, at WARNING, with the alarm ----
        fill(small_disk, "filler-2", leave=200_000)
        gw.wait_output("the disk is almost full", timeout=30)
        wait_for(lambda: health.latest().get("sinks", {}).get("tsdb", {}).get("dropped", 0) > 0, 20,
                 "drops counted for the sink that had not delivered them")
        wait_for(lambda: any(e.get("rule") == "log-drops" and e.get("type") == "raised"
                             for e in health.alarm_events()), 20, "the log-drops alarm on MQTT")
        warning = [ln for ln in gw.output().splitlines() if "the disk is almost full" in ln]
        assert any("WARNING" in ln and "readings not yet delivered to tsdb" in ln for ln in warning), warning
        committed = health.log()["committed"]
        wait_for(lambda: health.log().get("committed", 0) > committed + 100, 30, "commits go on at the low mark")
        assert gw.terminate() == 0
        assert "Traceback" not in gw.output()
    finally:
        health.close()
        with contextlib.suppress(OSError):
            for p in small_disk.glob("filler*"):
                p.unlink()
