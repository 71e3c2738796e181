"""A test rig for the uplink: a real durable log (SQLite), the real wiring (build_consumers), real TCP to the
platform simulator. Readings are appended by hand with chosen time stamps, so windows are exact and a gap of
minutes costs no waiting (the uplink back-fills it at once)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.core.clock import CLOCK
from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.hj212.sources import AggregateFeed
from gateway.hj212.uplink import UplinkSink
from gateway.pipeline.consumers import build_consumers
from gateway.site.load import load_site
from gateway.site.model import Site
from gateway.store.log import DurableLog
from gateway.store.records import LogRecord

from .helpers import MN, PW

SITE_HEAD = """\
site: {id: s1, timezone: Asia/Shanghai}
buses:
  - {name: lan, type: tcp, host: 127.0.0.1, port: 1502}
devices:
  - {name: dust-1, bus: lan, address: 1, profile: dust-monitor}
  - {name: stack-1, bus: lan, address: 3, profile: cems-analyzer}
#DEVICES
store: {dir: "{tmp}/log", commit_interval_ms: 0, durability: normal}
uplinks:
"""

UPLINK = """\
  - name: {name}
    host: 127.0.0.1
    port: {port}
    mn: {mn}
    pw: {pw}
    st: "{st}"
    version: {version}
    send: {send}
    codes:
      - {{code: a34002, device: dust-1, channel: pm10, unit: mg/m3}}
      - {{code: a34004, device: dust-1, channel: pm25}}
      - {{code: LA, device: dust-1, channel: noise, decimals: 1}}
      - {{code: a21026, device: stack-1, channel: so2_std}}
      - {{code: a19001, device: stack-1, channel: o2, decimals: 2}}
    zs: {{a21026: so2_zs}}
    answer_timeout_s: {timeout}
    retries: {retries}
    reconnect_min_s: 0.05
    reconnect_max_s: 0.2
    connect_timeout_s: 1
    backfill_per_s: 1000
    grace_s: 0.5
    heartbeat_s: {heartbeat}
"""


def uplink_yaml(name: str, port: int, *, mn: str = MN, pw: str = PW, st: str = "39", version: int = 2017,
                send: str = "{realtime: {interval_s: 1}}", timeout: float = 0.5, retries: int = 1,
                heartbeat: float = 0, codes: str | None = None) -> str:
    text = UPLINK.format(name=name, port=port, mn=mn, pw=pw, st=st, version=version, send=send, timeout=timeout,
                         retries=retries, heartbeat=heartbeat)
    if codes is not None:  # replace the code map (and its zs) by these lines
        head, rest = text.split("    codes:\n")
        tail = rest.split("    zs: {a21026: so2_zs}\n")[1]
        text = head + "    codes:\n" + codes + tail
    return text


def t0() -> int:
    """A whole local minute ten minutes ago: windows start there."""
    now = int(time.time() * 1000)
    return now - now % 60_000 - 600_000


def dust(ts: int, pm10: float | None = 80.0, pm25: float = 40.0, noise: float = 61.23, flag: Flag = Flag.N
         ) -> DeviceReading:
    ok = pm10 is not None
    vals = {"pm10": ChannelValue(pm10, "ug/m3", flag if ok else Flag.B),
            "pm25": ChannelValue(pm25 if ok else None, "ug/m3", flag if ok else Flag.B),
            "noise": ChannelValue(noise if ok else None, "dB(A)", flag if ok else Flag.B)}
    return DeviceReading("s1", "dust-1", "dust", ts, vals, ok=ok, error="" if ok else "timeout")


def stack(ts: int, so2: float = 35.214, zs: float = 41.5, o2: float = 8.251, flag: Flag = Flag.N) -> DeviceReading:
    vals = {"so2_std": ChannelValue(so2, "mg/m3", flag), "so2_zs": ChannelValue(zs, "mg/m3", flag),
            "o2": ChannelValue(o2, "%", flag)}
    return DeviceReading("s1", "stack-1", "cems", ts, vals)


class Delivered:
    """The uplinks' delivery hook: lets a test await 'the sink acknowledged N packets' without polling."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    def __call__(self, records: list[LogRecord]) -> None:
        self.count += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def until(self, cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not cond():
            changed = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{what} not reached within {timeout} s")
            # deliveries wake us at once; other conditions (a reconnect failing) have no event: re-check often
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, 0.05))


class Rig:
    """One site file with uplinks, its durable log and running uplink sinks."""

    def __init__(self, tmp: Path, uplinks: str, devices: str = ""):
        self.tmp = tmp
        self.path = tmp / "site.yaml"
        head = SITE_HEAD.replace("{tmp}", str(tmp)).replace("#DEVICES\n", devices)
        self.path.write_text(head + uplinks, encoding="utf-8")
        self.site: Site = load_site(self.path)
        self.log: DurableLog | None = None
        self.sinks: dict[str, UplinkSink] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.delivered = Delivered()
        self._committer: asyncio.Task[None] | None = None

    async def open(self, aggregates: AggregateFeed | None = None, start: bool = True) -> Rig:
        lg = DurableLog(self.site.config.store.log_path(self.path), self.site.config.store)
        await lg.open([c.name for c in self.site.consumers])
        self.log = lg
        CLOCK.attach(lg.path.parent / "clock.json")  # as the gateway does at start
        self._committer = asyncio.create_task(lg.run())
        for plan in build_consumers(self.site, feed=lambda _: aggregates):
            sink = plan.make(lg, self.delivered)
            assert isinstance(sink, UplinkSink)
            self.sinks[plan.name] = sink
            if start:
                self.start(plan.name)
        return self

    def start(self, name: str) -> None:
        self.tasks[name] = asyncio.create_task(self.sinks[name].run(), name=f"test[{name}]")

    async def append(self, *readings: DeviceReading) -> list[int]:
        assert self.log is not None
        ids = [self.log.append(r).id for r in readings]
        await self.log.flush()
        return ids

    def acked(self, name: str) -> int:
        return self.sinks[name].consumer.acked

    async def close(self, grace: float = 5.0) -> None:
        """Stop like the app does: the log begins closing, sinks finish, cursors are committed."""
        assert self.log is not None
        self.log.begin_close()
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks.values(), timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            for t in self.tasks.values():
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        if self._committer is not None:
            self._committer.cancel()
            await asyncio.gather(self._committer, return_exceptions=True)
        await self.log.close()
        self.tasks.clear()


def cp_dict(p: Any) -> dict[str, str]:
    return {k: v for g in p.cp.groups for k, v in g}
