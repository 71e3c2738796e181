"""End to end: the device simulator -> the gateway (acquisition, durable log, uplinks) -> two platform simulators.

In process: plume_sim's Simulator serves the devices over Modbus TCP with constant values (so every number on the
wire is known), `Gateway(site)` runs the real app (it builds the uplinks), and PlatformSim plays the city
and province platforms. `plume run` as a process is tested in test_run.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path

from plume_sim import Simulator
from plume_sim.platform import PlatformSim

from gateway.hj212.realtime import window_end
from gateway.hj212.timefmt import time_text
from gateway.pipeline.gateway import Gateway
from gateway.site.load import load_site
from gateway.store.records import LogRecord, ReadingRecord

from .helpers import MN, PW, TZ, free_port
from .uplink_rig import Delivered, cp_dict

SITE = """\
site: {{id: e2e, timezone: Asia/Shanghai}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - name: dust-1
    bus: lan
    address: 1
    profile: dust-monitor
    poll_interval_s: 0.2
    timeout_s: 0.5
    registers:
      - {{channel: tsp, address: 0, function: 4, type: u16, unit: ug/m3, min: 0, max: 10000, sim: {{constant: 130}}}}
      - {{channel: pm10, address: 1, function: 4, type: u16, unit: ug/m3, min: 0, max: 5000, sim: {{constant: 85}}}}
      - {{channel: pm25, address: 2, function: 4, type: u16, unit: ug/m3, min: 0, max: 5000, sim: {{constant: 42}}}}
      - {{channel: noise, address: 3, function: 4, type: u16, scale: 0.1, unit: dB(A), min: 30, max: 130,
          sim: {{constant: 62.5}}}}
  - name: stack-1
    bus: lan
    address: 3
    profile: cems-analyzer
    poll_interval_s: 0.2
    timeout_s: 0.5
    registers:
      - {{channel: so2, address: 0, type: f32, unit: mg/m3, min: 0, max: 5700, sim: {{constant: 35.5}}}}
      - {{channel: o2, address: 8, type: f32, unit: "%", min: 0, max: 25, sim: {{constant: 8.5}}}}
      - {{channel: so2_zs, address: 26, type: f32, unit: mg/m3, sim: {{constant: 41.25}}}}
store: {{dir: "{tmp}/log", commit_interval_ms: 100, durability: normal}}
uplinks:
  - name: city
    host: 127.0.0.1
    port: {city_port}
    mn: {mn}
    pw: {pw}
    st: 39
    send: {{realtime: {{interval_s: 1}}}}
    codes:
      - {{code: a34002, device: dust-1, channel: pm10, unit: mg/m3}}
      - {{code: a34004, device: dust-1, channel: pm25}}
      - {{code: a34001, device: dust-1, channel: tsp, unit: mg/m3}}
      - {{code: LA, device: dust-1, channel: noise, decimals: 1}}
    answer_timeout_s: 1
    retries: 1
    reconnect_min_s: 0.1
    reconnect_max_s: 0.3
    grace_s: 0.6
    backfill_per_s: 200
  - name: province
    host: 127.0.0.1
    port: {province_port}
    mn: 31000000000000000000STK1
    pw: {pw}
    st: 31
    send: {{realtime: {{interval_s: 1}}}}
    codes:
      - {{code: a21026, device: stack-1, channel: so2}}
      - {{code: a19001, device: stack-1, channel: o2, decimals: 2}}
    zs: {{a21026: so2_zs}}
    answer_timeout_s: 1
    retries: 1
    reconnect_min_s: 0.1
    reconnect_max_s: 0.3
    grace_s: 0.6
    backfill_per_s: 200
"""


class Commits:
    """Counts records the gateway committed; lets the test wait for 'N more readings' instead of sleeping."""

    def __init__(self) -> None:
        self.n = 0
        self.changed = asyncio.Event()
        self.first_ts: dict[str, int] = {}

    def __call__(self, records: list[LogRecord]) -> None:
        self.n += len(records)
        for r in records:
            if isinstance(r, ReadingRecord):
                self.first_ts.setdefault(r.reading.device, r.reading.ts)
        self.changed.set()
        self.changed = asyncio.Event()

    async def more(self, count: int, timeout: float = 10.0) -> None:
        target = self.n + count
        async with asyncio.timeout(timeout):
            while self.n < target:
                await self.changed.wait()


def consecutive(datatimes: list[str]) -> bool:
    secs = [int(d[-2:]) + 60 * int(d[-4:-2]) + 3600 * int(d[-6:-4]) for d in datatimes]
    return all(b - a == 1 for a, b in itertools.pairwise(secs))


async def test_simulator_gateway_and_two_platforms_with_an_outage_and_a_late_province(tmp_path: Path) -> None:
    province_port = free_port()
    async with PlatformSim(pw=PW, mn=MN) as city:
        path = tmp_path / "site.yaml"
        path.write_text(SITE.format(tmp=tmp_path, sim_port=free_port(), city_port=city.port,
                                    province_port=province_port, mn=MN, pw=PW), encoding="utf-8")
        site = load_site(path)
        delivered = Delivered()
        commits = Commits()
        async with Simulator(site, seed=3) as sim:
            gw = Gateway(site, on_delivered=delivered, grace_s=2.0)
            gw.on_commit(commits)
            stop = asyncio.Event()
            run = asyncio.create_task(gw.run(stop))
            try:
                await _scenario(city, province_port, sim, gw, delivered, commits)
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(run, 15)


async def _scenario(city: PlatformSim, province_port: int, sim: Simulator, gw: Gateway, delivered: Delivered,
                    commits: Commits) -> None:
    until: Callable[..., object] = delivered.until
    await until(lambda: len(city.acked("2011")) >= 2, timeout=15, what="2011 packets at the city")
    first = city.acked("2011")[0]
    assert (first.st, first.cn, first.pw, first.mn, first.flag) == ("39", "2011", PW, MN, 5)
    d = cp_dict(first)
    assert {k: v for k, v in d.items() if k != "DataTime"} == {
        "a34002-Rtd": "0.085", "a34002-Flag": "N", "a34004-Rtd": "42.0", "a34004-Flag": "N",
        "a34001-Rtd": "0.13", "a34001-Flag": "N", "LA-Rtd": "62.5", "LA-Flag": "N"}
    assert next(pk.cn for pk in city.packets()) == "2081"

    # the province platform is dead all along: the city does not notice
    province = next(s for s in gw.sinks if s.name == "province")
    assert not province.status.connected and province.status.failures >= 1
    assert province.consumer.acked == 0

    # the city platform goes away for a while, then comes back and gets the gap, in order, once
    await city.pause()
    n = len(city.acked("2011"))
    await commits.more(15)  # about 1.5 s of readings while it is away
    await city.resume()
    await until(lambda: len(city.acked("2011")) >= n + 3, timeout=10, what="the gap and live data after it")
    times = [pk.cp.get("DataTime") or "" for pk in city.acked("2011")]
    assert len(times) == len(set(times)) and times == sorted(times)
    assert consecutive(times), times  # every second, the gap included
    assert city.errors == []

    # the province comes up late and is back-filled with everything since the start, CEMS codes with Zs
    sim.set_fault("stack-1", "status:C")
    async with PlatformSim(port=province_port) as prov:
        await until(lambda: any(pk.cp.get("a21026-Flag") == "C" for pk in prov.acked("2011")), timeout=15,
                    what="the province's back-fill up to the calibration")
        pk = prov.acked("2011")
        assert {p.st for p in pk} == {"31"} and pk[0].mn == "31000000000000000000STK1"
        normal = cp_dict(pk[0])
        assert {k: v for k, v in normal.items() if k != "DataTime"} == {
            "a21026-Rtd": "35.5", "a21026-ZsRtd": "41.25", "a21026-Flag": "N", "a19001-Rtd": "8.5",
            "a19001-Flag": "N"}
        ptimes = [p.cp.get("DataTime") or "" for p in pk]
        assert ptimes == sorted(set(ptimes)) and consecutive(ptimes)
        # nothing of the dead time lost: the first packet is the window of the first stack reading
        assert ptimes[0] == time_text(window_end(commits.first_ts["stack-1"], 1000, TZ), TZ)
        assert prov.errors == []
