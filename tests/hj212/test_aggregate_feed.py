"""2051 / 2061 / 2031 from the aggregates in the durable log (gateway.hj212.sources.LogAggregateFeed).

- In process, a whole local day in fast motion (a reading every 30 s, times tomorrow so the wall-clock timer never
  closes a window early): the platform simulator receives every 10-minute (2051), hour (2061) and day (2031)
  packet with the averages in the platform's unit, and a history request (2061 BeginTime..EndTime) is answered from
  the log.
- `plume run` as a process with `plume-sim`: 2011 and 2051 (1-minute data) arrive at the platform simulator.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from plume_sim.platform import PlatformSim

from gateway.core.model import ChannelValue, DeviceReading
from gateway.hj212.timefmt import time_text
from gateway.pipeline.gateway import Gateway
from gateway.site.load import load_site
from gateway.site.model import Site
from tests.pipeline.helpers import FastClock

from .helpers import MN, PW, TZ, free_port

DAY_SITE = """\
site: {{id: feed, timezone: Asia/Shanghai}}
buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: 1}}]
devices: [{{name: dust-1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 30}}]
store: {{dir: "{tmp}/log", commit_interval_ms: 50, durability: normal}}
windows: {{periods: [1m, 10m, 1h, 1d], lateness_s: 5}}
uplinks:
  - name: city
    host: 127.0.0.1
    port: {city_port}
    mn: {mn}
    pw: {pw}
    st: 39
    send: {{realtime: null, minute: {{interval_min: 10}}, hour: true, day: true}}
    codes:
      - {{code: a34002, device: dust-1, channel: pm10, unit: mg/m3}}
      - {{code: LA, device: dust-1, channel: noise, decimals: 1}}
    answer_timeout_s: 10
    backfill_per_s: 500
"""

# local midnight (Asia/Shanghai) two days ahead
_midnight = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=2)
T0 = int(_midnight.timestamp() * 1000)
STEP = 30_000


class Day:
    """A day and one minute of a dust monitor (PM10 85 ug/m3, noise 62.5 dB(A)), then nothing more to poll."""

    def __init__(self, site: Site, emit: Callable[[DeviceReading], None]):
        self.emit = emit

    async def run(self) -> None:
        for i in range((86_400_000 + 60_000) // STEP + 1):
            self.emit(DeviceReading("feed", "dust-1", "dust", T0 + i * STEP, {
                "pm10": ChannelValue(85.0, "ug/m3"), "noise": ChannelValue(62.5, "dB(A)")}))
            if i % 100 == 99:
                await asyncio.sleep(0.005)

    def health(self) -> Mapping[str, Any]:
        return {}


async def test_minute_hour_and_day_data_from_the_log_reach_the_platform(tmp_path: Path) -> None:
    async with PlatformSim(pw=PW, mn=MN) as city:
        path = tmp_path / "site.yaml"
        path.write_text(DAY_SITE.format(tmp=tmp_path, city_port=city.port, mn=MN, pw=PW), encoding="utf-8")
        site = load_site(path)
        gw = Gateway(site, source=Day)  # the site's only consumers are its uplinks, fed from the log's aggregates
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        try:
            await city.wait_for(lambda r: r.cn == "2031" and r.answered == "9014", count=1, timeout=120)
            await city.wait_for(lambda r: r.cn == "2061" and r.answered == "9014", count=24, timeout=30)
            await city.wait_for(lambda r: r.cn == "2051" and r.answered == "9014", count=144, timeout=30)
            ex = await city.command("2061", {"BeginTime": time_text(T0, TZ),
                                             "EndTime": time_text(T0 + 2 * 3_600_000, TZ)})
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
        assert city.errors == []
        (day,) = city.packets("2031")
        assert day.cp.get("DataTime") == time_text(T0, TZ)
        assert (day.cp.get("a34002-Avg"), day.cp.get("a34002-Flag"), day.cp.get("LA-Avg")) == ("0.085", "N", "62.5")
        replied = {p.qn for p in ex.data}  # the history answer's packets (each with a QN of its own)
        assert ex.qn not in replied and len(replied) == len(ex.data)
        hours = [p for p in city.packets("2061") if p.qn not in replied]
        assert [p.cp.get("DataTime") for p in hours] == [time_text(T0 + h * 3_600_000, TZ) for h in range(24)]
        minutes = city.packets("2051")
        assert [p.cp.get("DataTime") for p in minutes] == [time_text(T0 + m * 600_000, TZ) for m in range(144)]
        assert {(p.cp.get("a34002-Min"), p.cp.get("a34002-Max")) for p in minutes} == {("0.085", "0.085")}
        # the history request is answered from the log: the hours starting in [T0, T0 + 2 h]
        assert (ex.qn_rtn, ex.exe_rtn) == (1, 1)
        assert [p.cp.get("DataTime") for p in ex.data] == [time_text(T0 + h * 3_600_000, TZ) for h in range(3)]


RUN_SITE = """\
site: {{id: run212, timezone: Asia/Shanghai}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - name: dust-1
    bus: lan
    address: 1
    kind: dust
    poll_interval_s: 1
    timeout_s: 0.5
    registers:
      - {{channel: pm10, address: 1, function: 4, type: u16, unit: ug/m3, min: 0, max: 5000, sim: {{constant: 85}}}}
store: {{dir: "{tmp}/log", commit_interval_ms: 100, durability: normal}}
windows: {{periods: [1m, 1h, 1d], lateness_s: 2}}
uplinks:
  - name: city
    host: 127.0.0.1
    port: {city_port}
    mn: {mn}
    pw: {pw}
    st: 39
    send: {{realtime: {{interval_s: 5}}, minute: {{interval_min: 1}}, hour: true, day: true}}
    codes:
      - {{code: a34002, device: dust-1, channel: pm10, unit: mg/m3}}
    answer_timeout_s: 2
    grace_s: 1
"""


def script(name: str) -> str:
    p = Path(sys.executable).parent / name
    return str(p) if p.exists() else name


async def test_plume_run_sends_minute_data_built_from_the_aggregates(tmp_path: Path) -> None:
    async with PlatformSim(pw=PW, mn=MN) as city:
        path = tmp_path / "site.yaml"
        path.write_text(RUN_SITE.format(tmp=tmp_path, sim_port=free_port(), city_port=city.port, mn=MN, pw=PW),
                        encoding="utf-8")
        sim_out, gw_out = open(tmp_path / "sim.out", "wb"), open(tmp_path / "gw.out", "wb")  # noqa: SIM115
        clock = FastClock(10)  # the gateway's minutes close every 6 s (its I/O keeps real time)
        env = {**os.environ, **clock.env()}
        sim = subprocess.Popen([script("plume-sim"), str(path), "--quiet"], stdout=sim_out, stderr=subprocess.STDOUT,
                               start_new_session=True, env=env)
        gw: subprocess.Popen[bytes] | None = None
        started = clock.now_ms()
        try:
            gw = subprocess.Popen([sys.executable, "-m", "gateway.cli_run", str(path)], stdout=gw_out,
                                  stderr=subprocess.STDOUT, start_new_session=True, env=env)
            # the first minute is partial (flagged, not hidden); the second is a whole one
            await city.wait_for(lambda r: r.cn == "2051" and r.answered == "9014", count=2, timeout=150)
            await city.wait_for(lambda r: r.cn == "2011" and r.answered == "9014", count=2, timeout=30)
            os.kill(gw.pid, signal.SIGTERM)
            assert gw.wait(timeout=15) == 0
        finally:
            for proc in (gw, sim):
                if proc is not None and proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
            sim_out.close()
            gw_out.close()
        assert city.errors == []
        minutes = city.packets("2051")
        whole = minutes[1]
        assert whole.cp.get("a34002-Avg") == "0.085" and whole.cp.get("a34002-Flag") == "N"
        assert whole.cp.get("DataTime") >= time_text(started, TZ)[:12] + "00"
        text = (tmp_path / "gw.out").read_text(errors="replace")
        assert "not wired to the uplink" not in text and PW not in text
