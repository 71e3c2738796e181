"""End to end as a conformance lab runs it (issue #11): the device simulator -> the gateway (real acquisition,
log, windows, uplink) -> the strict platform simulator, with a restart in the middle of a minute, a 1012 and a
history request. Asserted is what the protocol part controls: the strict platform refuses nothing, every 2051 is on
a minute boundary and carries a flag for every code, each start's 2081 comes after the older data, DataTimes follow
the platform's clock after the 1012, and the history reply's packets have QNs of their own. (Which letter each
minute's flag is depends on minute validity, owned by processing.)

In process, real time: about two and a half minutes (two whole minutes after the restart must close)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from plume_sim import Simulator
from plume_sim.platform import PlatformSim

from gateway.hj212.timefmt import parse_time, time_text
from gateway.pipeline.gateway import Gateway
from gateway.site.load import load_site

from .helpers import MN, PW, TZ, free_port

SITE = """\
site: {{id: lab, timezone: Asia/Shanghai}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - name: dust-1
    bus: lan
    address: 1
    profile: dust-monitor
    poll_interval_s: 1
    timeout_s: 0.5
    registers:
      - {{channel: pm10, address: 1, function: 4, type: u16, unit: ug/m3, min: 0, max: 5000, sim: {{constant: 85}}}}
      - {{channel: noise, address: 3, function: 4, type: u16, scale: 0.1, unit: dB(A), min: 30, max: 130,
          sim: {{constant: 62.5}}}}
store: {{dir: "{tmp}/log", commit_interval_ms: 100, durability: normal}}
windows: {{periods: [1m, 1h, 1d], lateness_s: 2}}
uplinks:
  - name: city
    host: 127.0.0.1
    port: {city_port}
    mn: {mn}
    pw: {pw}
    st: 39
    send: {{realtime: {{interval_s: 5}}, minute: {{interval_min: 1}}}}
    codes:
      - {{code: a34002, device: dust-1, channel: pm10, unit: mg/m3}}
      - {{code: LA, device: dust-1, channel: noise, decimals: 1}}
    answer_timeout_s: 2
    grace_s: 1
"""
AHEAD_S = 20.0


async def test_restart_mid_minute_a_1012_and_a_history_request_pass_a_strict_platform(tmp_path: Path) -> None:
    async with PlatformSim(pw=PW, mn=MN, clock_offset_s=AHEAD_S) as city:
        path = tmp_path / "site.yaml"
        path.write_text(SITE.format(tmp=tmp_path, sim_port=free_port(), city_port=city.port, mn=MN, pw=PW),
                        encoding="utf-8")
        site = load_site(path)
        async with Simulator(site, seed=5) as _sim:
            # first run: until a 2011 came, then stop in the middle of a minute
            stop = asyncio.Event()
            run = asyncio.create_task(Gateway(site).run(stop))
            await city.wait_for(lambda r: r.cn == "2011" and r.answered == "9014", timeout=30)
            stop.set()
            await asyncio.wait_for(run, 20)
            # second run, at once: the 1012, then two whole minutes on the platform's clock
            stop = asyncio.Event()
            run = asyncio.create_task(Gateway(site).run(stop))
            try:
                await city.wait_for(lambda r: r.cn == "2081" and r.answered == "9014", count=2, timeout=30)
                ex = await city.command("1012", {"SystemTime": time_text(city.now_ms(), TZ)})
                assert (ex.qn_rtn, ex.exe_rtn) == (1, 1)
                corrected_at = city.now_ms()
                await city.wait_for(lambda r: r.cn == "2051" and r.answered == "9014" and r.packet is not None
                                    and parse_time(r.packet.cp.get("DataTime") or "", TZ) > corrected_at,
                                    count=1, timeout=200)
                minutes = city.acked("2051")
                begin, end = minutes[0].cp.get("DataTime") or "", minutes[-1].cp.get("DataTime") or ""
                hist = await city.command("2051", {"BeginTime": begin, "EndTime": end}, timeout=30)
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(run, 20)

    assert city.errors == [], [r.error for r in city.errors]  # the strict platform accepted every packet
    for m in minutes:
        dt = m.cp.get("DataTime") or ""
        assert dt.endswith("00"), dt
        for code in ("a34002", "LA"):
            assert m.cp.get(f"{code}-Flag") is not None, (dt, code)  # every code carries its minute's flag
    times = [m.cp.get("DataTime") for m in minutes]
    assert times == sorted(set(times))
    # each start's 2081 follows the data measured before it
    order = [(p.cn, p.cp.get("DataTime") or "") for p in city.acked() if p.cn in ("2011", "2051", "2081")]
    restarts = [i for i, (cn, _) in enumerate(order) if cn == "2081"]
    assert len(restarts) == 2
    for i in restarts:
        assert all(dt <= order[i][1] for _, dt in order[:i])
    # after the 1012, DataTimes are on the platform's clock (20 s ahead of the system's)
    last_rtd = city.acked("2011")[-1]
    assert parse_time(last_rtd.cp.get("DataTime") or "", TZ) > corrected_at - 6000
    # the history reply: 9011/9012 with the request's QN, each data packet its own
    assert (hist.qn_rtn, hist.exe_rtn) == (1, 1) and hist.data
    qns = [d.qn for d in hist.data]
    assert len(set(qns)) == len(qns) and hist.qn not in qns
