"""The platform simulator on the fast clock (PLUME_CLOCK_SPEEDUP) a test gives `plume run` and `plume-sim`: its own
clock (the QNs of its commands, the time it sets, when it received a packet) must be the one the gateway runs on, or
a fast-motion gateway would see every request QN off by minutes and the record would not line up with the data.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from plume_sim.platform import PlatformSim

from gateway.hj212.timefmt import parse_qn
from tests.pipeline.helpers import FastClock

from .helpers import TZ, RawLogger, data_packet, free_port


async def test_the_platform_runs_on_the_clock_it_is_given_plus_its_offset() -> None:
    fast = FastClock(60)  # one real second is a minute: each time is checked between two readings of the clock
    async with PlatformSim(clock=fast.now_ms, clock_offset_s=20) as p:
        before = fast.now_ms()
        assert before + 20_000 <= p.now_ms() <= fast.now_ms() + 20_000
        lg = await RawLogger.connect(p.port)
        before = fast.now_ms()
        await lg.send(data_packet())
        await lg.read_packet()  # its 9014
        (rec,) = p.received
        assert before <= rec.at_ms <= fast.now_ms()  # received on the (fast) clock, not the system's
        await p.wait_connected()
        before = fast.now_ms() // 1000 * 1000
        task = asyncio.create_task(p.command("1011", timeout=2))
        req = await lg.read_packet()
        assert before + 20_000 <= parse_qn(req.qn, TZ) <= fast.now_ms() + 20_000
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await lg.close()


def test_the_cli_follows_plume_clock_speedup(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "rec.jsonl"
    fast = FastClock(60)
    proc = subprocess.Popen([sys.executable, "-m", "plume_sim.platform", "--port", str(port), "--record", str(path),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **fast.env()})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"ready: listening on 127.0.0.1:{port}"

        async def talk() -> None:
            lg = await RawLogger.connect(port)
            await lg.send(data_packet())
            await lg.read_packet()
            await lg.close()

        before = fast.now_ms()
        asyncio.run(talk())
        after = fast.now_ms()
        os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert before <= line["at"] <= after, (before, line["at"], after, time.time() * 1000)
