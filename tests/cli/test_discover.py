"""`plume discover` (issue 14): plume-sim lines at two baud rates and parities; discover sweeps the usual settings
and the ids, fingerprints each device against the built-in profiles and prints a `buses:` + `devices:` block that,
pasted into a site file, passes `plume config check` and is read by `plume read`; `--init` writes it as a starter
site file. The gateway processes run with tests/ptyparity first on PYTHONPATH: a Linux pty drops the parity bit,
the shim hands it to plume-sim (see plume_sim/ptys.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from .helpers import ROOT, start_sim, write

SHIM = {"PYTHONPATH": f"{ROOT / 'tests' / 'ptyparity'}:{ROOT}"}

SIM = """\
site: {{id: s}}
buses:
  - {{name: a, type: rtu, port: {tmp}/ttyA, baudrate: 19200, parity: N}}
  - {{name: b, type: rtu, port: {tmp}/ttyB, baudrate: 4800, parity: E}}
devices:
  - {{name: d3, bus: a, address: 3, profile: dust-monitor}}
  - {{name: a4, bus: a, address: 4, profile: analog-4-20ma}}
  - {{name: c7, bus: b, address: 7, profile: cems-analyzer}}
  - {{name: s8, bus: b, address: 8, profile: so2-analyzer-cdab}}
"""


def plume(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    from .helpers import plume as run

    return run(*args, env=SHIM, timeout=timeout)


def test_discover_finds_two_lines_at_their_settings_with_the_right_profiles_and_the_entry_runs(tmp_path, procs):
    start_sim(procs, write(tmp_path / "sim.yaml", SIM, tmp=tmp_path), tmp_path)
    r = plume("discover", "--port", str(tmp_path / "ttyA"), "--port", str(tmp_path / "ttyB"), "--ids", "1-8",
              "--timeout", "0.1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    tried = [ln.split(": ids")[0] for ln in r.stderr.splitlines() if ln.startswith("trying ")]
    # line A: 9600 (all three parities) before 19200 N; stops there. Line B: every setting up to 4800 E
    assert [t.split(" at ")[1] for t in tried] == ["9600 8N1", "9600 8E1", "9600 8O1", "19200 8N1", "9600 8N1",
                                                  "9600 8E1", "9600 8O1", "19200 8N1", "19200 8E1", "19200 8O1",
                                                  "4800 8N1", "4800 8E1"], r.stderr
    assert f"found id 3 on {tmp_path}/ttyA at 19200 8N1: dust-monitor" in r.stderr, r.stderr
    out = r.stdout
    assert f"port: {tmp_path}/ttyA, baudrate: 19200, parity: N" in out, out
    assert f"port: {tmp_path}/ttyB, baudrate: 4800, parity: E" in out, out
    assert "{name: dust-1, bus: rs485-1, address: 3, profile: dust-monitor}" in out, out
    assert "{name: analog-1, bus: rs485-1, address: 4, profile: analog-4-20ma}" in out, out
    assert "{name: cems-1, bus: rs485-2, address: 7, profile: cems-analyzer}" in out, out
    assert "{name: cems-2, bus: rs485-2, address: 8, profile: so2-analyzer-cdab}" in out, out

    site = tmp_path / "site.yaml"
    site.write_text("site: {id: found, timezone: Asia/Shanghai}\n" + out, encoding="utf-8")
    check = plume("config", "check", str(site))
    assert check.returncode == 0, check.stdout + check.stderr
    read = plume("read", "--json", str(site))
    assert read.returncode == 0, read.stdout + read.stderr
    bodies = {b["device"]: b for b in map(json.loads, read.stdout.splitlines())}
    assert set(bodies) == {"dust-1", "analog-1", "cems-1", "cems-2"}
    assert all(b["ok"] for b in bodies.values()), read.stdout
    assert bodies["dust-1"]["values"]["pm10"]["value"] is not None, read.stdout


def test_discover_first_stops_at_the_first_device_and_init_writes_a_site_that_reads(tmp_path, procs):
    start_sim(procs, write(tmp_path / "sim.yaml", SIM, tmp=tmp_path), tmp_path)
    site = tmp_path / "site.yaml"
    r = plume("discover", "--port", str(tmp_path / "ttyB"), "--baudrate", "4800", "--parity", "E", "--ids", "1-10",
              "--timeout", "0.1", "--first", "--init", str(site), "--site-id", "yard-7")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "address: 7, profile: cems-analyzer" in r.stdout and "address: 8" not in r.stdout, r.stdout
    assert not any(ln.startswith("trying ") and "ids 1-10" not in ln for ln in r.stderr.splitlines())
    text = site.read_text(encoding="utf-8")
    assert "id: yard-7" in text and "baudrate: 4800" in text and "parity: E" in text
    assert "profile: cems-analyzer" in text
    assert plume("config", "check", str(site)).returncode == 0
    read = plume("read", str(site))
    assert read.returncode == 0 and "so2" in read.stdout and "c7" not in read.stdout, read.stdout + read.stderr

    r = plume("discover", "--port", str(tmp_path / "ttyB"), "--baudrate", "4800", "--parity", "E", "--ids", "8",
              "--timeout", "0.1", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["interrupted"] is False, r.stdout + r.stderr
    (line,) = doc["lines"]
    assert (line["baudrate"], line["parity"], [d["profile"] for d in line["devices"]]) == (4800, "E", [
        "so2-analyzer-cdab"])
    fits = {f["profile"]: f for f in line["devices"][0]["fits"]}
    assert fits["dust-monitor"]["plausible"] < fits["dust-monitor"]["of"] and fits["dust-monitor"]["why_not"]


def test_ctrl_c_prints_what_was_found_so_far(tmp_path, procs):
    start_sim(procs, write(tmp_path / "sim.yaml", SIM, tmp=tmp_path), tmp_path)
    cmd = [sys.executable, "-m", "gateway.cli", "discover", "--port", str(tmp_path / "ttyA"), "--baudrate", "19200",
           "--parity", "N", "--ids", "1-247", "--timeout", "0.2"]
    import os

    # Ctrl-C's default action in the child even when the suite was started in the background (a shell starts
    # background jobs with SIGINT ignored, and Python then installs no KeyboardInterrupt handler)
    p = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **SHIM}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert p.stderr is not None
        for line in p.stderr:
            if line.startswith("found id 3"):
                break
        p.send_signal(signal.SIGINT)
        out, rest = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, rest
    assert "interrupted: 1 device found so far" in rest, rest
    assert "(interrupted)" in out and "address: 3, profile: dust-monitor" in out, out
    assert "Traceback" not in rest


def test_discover_on_a_missing_port_says_so_and_fails(tmp_path: Path):
    r = plume("discover", "--port", str(tmp_path / "nothing"), "--baudrate", "9600", "--parity", "N", "--ids", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "cannot try" in r.stderr and "no device answered" in r.stderr, r.stderr


def test_the_readme_example_prints_what_the_readme_shows(tmp_path, procs):
    """The README's `plume discover` block, run against its simulated lines (tests/cli/readme/discover-sim.yaml)
    with /tmp/plume-sim/ moved to this test's folder."""
    import re
    import shlex

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"^```\n(.*?)^```", text, re.S | re.M) if b.startswith("$ plume discover"))
    command, *expected = block.rstrip("\n").splitlines()
    sim = (ROOT / "tests" / "cli" / "readme" / "discover-sim.yaml").read_text(encoding="utf-8")
    here = f"{tmp_path}/"
    (tmp_path / "discover-sim.yaml").write_text(sim.replace("/tmp/plume-sim/", here), encoding="utf-8")
    start_sim(procs, tmp_path / "discover-sim.yaml", tmp_path)
    args = shlex.split(command[2:].replace("/tmp/plume-sim/", here))
    r = plume(*args[1:])
    assert r.returncode == 0, r.stdout + r.stderr
    got = (r.stderr + r.stdout).replace(here, "/tmp/plume-sim/").rstrip("\n").splitlines()
    assert [ln.rstrip() for ln in got] == expected
