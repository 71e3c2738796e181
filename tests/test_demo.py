"""The README's main-job command, `plume demo`, as a user runs it: simulator + gateway, values in the log."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.pipeline.helpers import FastClock

ROOT = Path(__file__).resolve().parents[1]


def test_plume_demo_polls_every_example_device_commits_to_the_log_and_raises_an_alarm(tmp_path):
    # in fast motion (x4): the 32 s of the demo, its scripted fault and the alarm's 5 s take a quarter of that
    fast = FastClock(4)
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--duration", "32", "--log-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=90, cwd=ROOT, env={**os.environ, **fast.env()},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for device in ("dust-1", "stack-1", "dust-2", "so2-1", "pm-1"):
        assert device in r.stdout
    # the scripted fault: the last TCP device goes silent, the offline alarm is raised, then cleared
    assert "2 alarm events (1 raised, 1 cleared)" in r.stdout
    assert "offline: so2-1 (no successful reading)" in r.stdout
    last = r.stdout.strip().splitlines()[-1]
    assert "committed to the durable log" in last and int(last.split()[0]) >= 400
    with sqlite3.connect(tmp_path / "log.sqlite") as db:
        (polls,) = db.execute("select count(*) from readings").fetchone()
    assert polls >= 10, "every poll of every device was committed to the durable log"


def test_plume_demo_with_servers_delivers_to_a_local_mosquitto_and_influxdb(tmp_path):
    import os
    import re
    import shutil

    import pytest

    missing = [b for b in ("mosquitto", "influxd") if shutil.which(b) is None]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} not installed (.ci/run installs them)")
        pytest.skip(f"{missing} not installed")
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--with-servers", "--duration", "6", "--log-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    delivered = dict(re.findall(r"^sink (\w+): (\d+) readings delivered$", r.stdout, re.M))
    assert set(delivered) == {"mosquitto", "influxdb"}
    assert all(int(n) > 0 for n in delivered.values()), delivered
    assert "mosquitto_sub -p" in r.stdout  # the user is told where to look


def test_two_demos_run_side_by_side_on_their_own_ports_and_ptys(tmp_path):
    """A second demo (or one beside a running plume-sim) used to fail with "Address already in use"."""
    cmd = [sys.executable, "-m", "gateway.cli", "demo", "--duration", "5"]
    procs = [subprocess.Popen([*cmd, "--log-dir", str(tmp_path / f"demo-{i}")], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=ROOT) for i in range(2)]
    outs = [p.communicate(timeout=90)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
        assert "committed to the durable log" in out.strip().splitlines()[-1], out
    ports = [re.search(r"simulator tcp lan: 127\.0\.0\.1:(\d+)", out) for out in outs]
    assert all(ports) and ports[0].group(1) != ports[1].group(1), outs  # type: ignore[union-attr]
    assert all("/tmp/plume-sim/" not in out for out in outs), "the ptys live in each demo's own folder"
