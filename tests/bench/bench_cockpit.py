"""Benchmark: what the cockpit costs `plume run` in memory and CPU — off, on with nobody looking, on with one
headless Chromium showing the live overview. Prints figures; asserts nothing about time.

Run: .venv/bin/python tests/bench/bench_cockpit.py [--seconds 60]

Each case is a fresh `plume run` of the same site (three simulated devices on Modbus TCP polled every 10 s, the
default interval, and every 1 s), measured from /proc over the same window after a settling period: RSS at the
end and CPU seconds (user + system) over the window. The difference to "off" is the cockpit's cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.cockpit.browser import start_browser  # noqa: E402
from tests.cockpit.rig import SITE, CockpitRig, login  # noqa: E402
from tests.pipeline.helpers import Proc  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MB, CPU seconds so far)."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / TICKS


def run_case(tmp: Path, interval_s: float, cockpit: bool, browser: bool, seconds: float) -> tuple[float, float]:
    started: list[Proc] = []

    def procs(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Proc:
        p = Proc(args, log_path, env).start()
        started.append(p)
        return p

    rig = CockpitRig(tmp, procs)
    text = rig.site.read_text().replace("poll_interval_s: 0.5", f"poll_interval_s: {interval_s}")
    text = text.replace("rules:\n  - {id: offline, type: offline, after_s: 1}\n", "")
    if not cockpit:
        text = text.replace("  enabled: true\n", "  enabled: false\n")
    rig.site.write_text(text)
    b = None
    try:
        rig.start()
        assert rig.gateway is not None and rig.gateway.proc is not None
        if browser:
            b = start_browser(tmp / "chromium")
            login(b, rig)
            time.sleep(3)
        time.sleep(max(5.0, 2 * interval_s))  # settle
        _, cpu0 = proc_stats(rig.gateway.proc.pid)
        time.sleep(seconds)
        rss, cpu1 = proc_stats(rig.gateway.proc.pid)
        return rss, cpu1 - cpu0
    finally:
        if b is not None:
            b.quit()
        for p in reversed(started):
            if p.running():
                p.terminate()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    assert "cockpit:" in SITE
    print(f"plume run, 3 simulated Modbus TCP devices, measured over {args.seconds:.0f} s after settling")
    print(f"{'poll interval':>13}  {'cockpit':<28} {'RSS MB':>7} {'CPU ms/s':>9}")
    for interval in (10.0, 1.0):
        base = None
        for label, cockpit, browser in (("off", False, False), ("on, no browser", True, False),
                                        ("on, one browser (overview)", True, True)):
            with tempfile.TemporaryDirectory(prefix="plume-bench-cockpit-") as tmp:
                rss, cpu = run_case(Path(tmp), interval, cockpit, browser, args.seconds)
            per_s = cpu / args.seconds * 1000
            extra = "" if base is None else f"   ({rss - base[0]:+.1f} MB, {per_s - base[1]:+.2f} ms/s)"
            if base is None:
                base = (rss, per_s)
            print(f"{interval:>12.0f}s  {label:<28} {rss:>7.1f} {per_s:>9.2f}{extra}", flush=True)


if __name__ == "__main__":
    main()
