"""The gateway's clock follows a platform's time (issue #11 finding 3): after a 1012 every timestamp the gateway
makes (readings, the windows built from them, DataTime, QN, 1011's SystemTime) is on the platform's clock; the
correction is persisted and in health; a clock known to be off makes the uplink ask for the time (1013).

In process: the real Gateway (log, stage, uplink wiring) with a source that stamps its readings with the gateway's
clock (`now_ms`, as the pollers do), and the platform simulator over real TCP, its own clock set apart from the
system's (`clock_offset_s`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from plume_sim.platform import PlatformSim

from gateway.core.clock import CLOCK, now_ms
from gateway.core.model import ChannelValue, DeviceReading
from gateway.hj212.timefmt import parse_qn, parse_time
from gateway.pipeline.gateway import Gateway
from gateway.site.load import load_site
from gateway.site.model import Site

from .helpers import MN, PW, TZ

SITE = """\
site: {{id: clk, timezone: Asia/Shanghai}}
buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: 1}}]
devices: [{{name: dust-1, bus: lan, address: 1, profile: dust-monitor}}]
store: {{dir: "{tmp}/log", commit_interval_ms: 50, durability: normal}}
uplinks:
  - name: city
    host: 127.0.0.1
    port: {port}
    mn: {mn}
    pw: {pw}
    st: 39
    send: {{realtime: {{interval_s: 1}}}}
    codes: [{{code: a34002, device: dust-1, channel: pm10, unit: mg/m3}}]
    answer_timeout_s: 2
    grace_s: 0.3
"""
AHEAD_S = 600.0  # the platform's clock is ten minutes ahead of the system's


class Polls:
    """A dust monitor polled five times a second, each reading stamped by the gateway's clock."""

    def __init__(self, site: Site, emit: Callable[[DeviceReading], None]):
        self.emit = emit

    async def run(self) -> None:
        while True:
            self.emit(DeviceReading("clk", "dust-1", "dust", now_ms(), {"pm10": ChannelValue(85.0, "ug/m3")}))
            await asyncio.sleep(0.2)  # the poll period, not a synchronisation

    def health(self) -> Mapping[str, Any]:
        return {}


async def _gateway(tmp_path: Path, port: int) -> tuple[Gateway, asyncio.Event, asyncio.Task[None]]:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(tmp=tmp_path, port=port, mn=MN, pw=PW), encoding="utf-8")
    gw = Gateway(load_site(path), source=Polls)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    await asyncio.wait_for(gw.started.wait(), 10)
    return gw, stop, task


async def test_after_a_1012_datatime_qn_and_1011_follow_the_platforms_clock(tmp_path: Path) -> None:
    async with PlatformSim(pw=PW, mn=MN, clock_offset_s=AHEAD_S) as p:
        gw, stop, task = await _gateway(tmp_path, p.port)
        try:
            before = await p.wait_for(lambda r: r.cn == "2011" and r.answered == "9014")
            old = before[0].packet
            assert old is not None  # on the system clock: ten minutes behind the platform
            assert abs(parse_time(old.cp.get("DataTime") or "", TZ) - (p.now_ms() - AHEAD_S * 1000)) < 5000
            ex = await p.command("1012", {"SystemTime": _text(p.now_ms())})
            assert (ex.qn_rtn, ex.exe_rtn) == (1, 1)
            seen = len(p.received)

            def on_platform_clock(r: Any) -> bool:
                dt = r.packet.cp.get("DataTime") if r.packet is not None else None
                return dt is not None and abs(parse_time(dt, TZ) - p.now_ms()) < 5000

            await p.wait_for(lambda r: r.cn == "2011" and r.answered == "9014" and p.received.index(r) >= seen
                             and on_platform_clock(r), count=3)
            later = [r for r in p.received[seen:] if r.cn == "2011" and r.packet is not None]
            first_new = next(i for i, r in enumerate(later) if on_platform_clock(r))
            assert first_new <= 2, "at most the windows measured before the correction went out on the old clock"
            for r in later:
                assert r.packet is not None
                assert abs(parse_qn(r.packet.qn, TZ) - r.at_ms - AHEAD_S * 1000) < 5000, "QN on the new clock"
            for r in later[first_new:]:
                assert r.packet is not None
                data_time = parse_time(r.packet.cp.get("DataTime") or "", TZ)
                assert abs(data_time - r.at_ms - AHEAD_S * 1000) < 5000, "DataTime on the platform's clock"
            got = parse_time((await p.command("1011")).values()["SystemTime"], TZ)
            assert abs(got - p.now_ms()) < 3000
            health = await gw.health()
            clock = health["clock"]
            assert clock["synchronised"] is True and abs(clock["offset_ms"] - AHEAD_S * 1000) < 3000
            assert "city" in clock["last_correction"]["by"] and clock["last_correction"]["applied"] == "offset"
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    saved = json.loads((tmp_path / "log" / "clock.json").read_text())
    assert abs(saved["offset_ms"] - AHEAD_S * 1000) < 3000  # a restart keeps the correction
    CLOCK.reset()
    CLOCK.attach(tmp_path / "log" / "clock.json")
    assert abs(now_ms() - (CLOCK.system_ms() + AHEAD_S * 1000)) < 3000


async def test_a_platform_request_far_from_the_gateways_clock_makes_it_ask_for_the_time(tmp_path: Path) -> None:
    """HJ 477 allows 0.5 per mille: a request QN 5 minutes off right after start is far beyond it. The uplink sends
    a 1013 and the platform (calibrate) answers with a 1012 of its time."""
    async with PlatformSim(pw=PW, mn=MN, clock_offset_s=-300, calibrate=True) as p:
        _, stop, task = await _gateway(tmp_path, p.port)
        try:
            await p.wait_connected(MN)
            await p.command("1061")
            await p.wait_for(lambda r: r.cn == "1013")
            await p.wait_until(lambda: abs(CLOCK.offset_ms + 300_000) < 3000, what="the clock set back 5 minutes")
            assert CLOCK.last is not None and "city" in CLOCK.last.by
            assert p.errors == []
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


def _text(ms: int) -> str:
    from gateway.hj212.timefmt import time_text

    return time_text(ms, TZ)
