"""End to end as a conformance lab runs it (issue #11): `plume-sim` -> `plume run` (real acquisition, log, windows,
uplink) -> the strict platform simulator, all three on one fast clock (PLUME_CLOCK_SPEEDUP, x FACTOR), with a
restart (SIGTERM, start again) in the middle of a minute, a 1012 and history requests (2051 and 2061).

Asserted: the strict platform refuses nothing; every 2051 is on a minute boundary, carries a flag for every code,
and there is one per minute the gateway measured; each minute's flag letter is the one the minute-validity rule
(gateway/processing: expected samples 60 s / poll interval, >= 75 % of them normal, at least the kind's
minimum) gives for the samples the device simulator served in that minute (its truth log, paired value by value
with the log), so a full minute is N while the start-up minute and the minute the restart interrupted are judged by
what they hold; the hour (2061) is judged from its minutes; each start's 2081 comes after the older data; after
the 1012 DataTimes are on the platform's clock; the history replies (2051 and 2061) carry the live packets again,
each with a QN of its own.

The fast clock starts LEAD_MIN minutes before a full hour H, so the hour H, the restart inside it and the minutes
after it pass in about half a minute of real time; Modbus, TCP and the platform's answers keep real time.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from plume_sim.platform import PlatformSim
from plume_sim.platform.records import Received

from gateway.core.model import FLAG_SEVERITY, Flag
from gateway.hj212.timefmt import parse_time, time_text
from tests.pipeline.helpers import FastClock, Proc, gateway_cmd, log_records, match_truth, read_truth, sim_cmd

from .helpers import MN, PW, TZ, free_port

FACTOR = 200  # a fast minute is 0.3 real seconds, an hour 18 s
POLL_S = 5  # HJ 212 appendix D2.2: instantaneous values at most 5 s apart
LEAD_MIN = 15  # fast minutes between starting the processes and the hour H (both boot in 2-4 real seconds)
AHEAD_S = 300  # the platform's clock is 5 minutes ahead of the site's (a whole number of minutes and of polls)
MINUTE, HOUR = 60_000, 3_600_000
SITE = """\
site: {{id: lab, timezone: Asia/Shanghai}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - name: dust-1
    bus: lan
    address: 1
    profile: dust-monitor
    poll_interval_s: {poll_s}
    timeout_s: 0.5
    registers:
      - {{channel: pm10, address: 1, function: 4, type: u16, unit: ug/m3, min: 0, max: 5000, sim: {{constant: 85}}}}
      - {{channel: noise, address: 3, function: 4, type: u16, scale: 0.1, unit: dB(A), min: 30, max: 130,
          sim: {{constant: 62.5}}}}
store: {{dir: "{tmp}/log", commit_interval_ms: 50, durability: normal}}
windows: {{periods: [1m, 1h, 1d], lateness_s: 60}}
uplinks:
  - name: city
    host: 127.0.0.1
    port: {city_port}
    mn: {mn}
    pw: {pw}
    st: 39
    send: {{realtime: {{interval_s: 30}}, minute: {{interval_min: 1}}, hour: true}}
    codes:
      - {{code: a34002, device: dust-1, channel: pm10, unit: mg/m3}}
      - {{code: LA, device: dust-1, channel: noise, decimals: 1}}
    answer_timeout_s: 2
    grace_s: 1
    backfill_per_s: 500
"""
CODES = ("a34002", "LA")
# lateness_s is on the fast clock but the log commits (and the stage's 1 s timer runs) in real time: with 2 s
# (10 ms real) the timer closed minutes whose last readings still waited for their commit (50 ms real) and counted
# them late, so a minute with 11 samples went out as B. 60 s is 0.3 real seconds; a minute closes at once anyway
# when the device's next reading comes.


def fast_clock_from(start_ms: int) -> FastClock:
    """A FastClock (x FACTOR) that reads `start_ms` now: anchored so that anchor + (real - anchor) x FACTOR is it."""
    clock = FastClock(FACTOR)
    real = clock.anchor_ms
    clock.anchor_ms = round((real * FACTOR - start_ms) / (FACTOR - 1))
    return clock


async def until(clock: FastClock, t_ms: int) -> None:
    """Sleep (real time) until the fast clock reads `t_ms`: a point on the test's own time line, not a wait for
    the gateway."""
    left = t_ms - clock.now_ms()
    if left > 0:
        await asyncio.sleep(clock.real_s(left / 1000))


def minute_flag(flags: list[str]) -> str:
    """The flag a 1-minute window gets from the flags of the samples in it (gateway/processing/README.md, Time
    windows): N when it holds >= 75 % of the samples it expects (60 s / the poll interval; dust has no minimum of
    its own) and of those that arrived, all N; else the most frequent other flag (ties: the more severe), else B."""
    expected = math.floor(60 / POLL_S)
    need = math.ceil(0.75 * max(len(flags), expected))
    if flags.count("N") >= need:
        return "N"
    return _worst_most_frequent([f for f in flags if f != "N"])


def hour_flag(minute_flags: list[str]) -> str:
    """An hour is N with >= 45 valid (N) minutes; missing minutes count against it."""
    if minute_flags.count("N") >= 45:
        return "N"
    return _worst_most_frequent([f for f in minute_flags if f != "N"])


def _worst_most_frequent(flags: list[str]) -> str:
    if not flags:
        return "B"
    counts = Counter(flags)
    return max(counts, key=lambda f: (counts[f], FLAG_SEVERITY[Flag(f)]))


def is_acked(cn: str, data_time: str | None = None) -> Callable[[Received], bool]:
    """Matches a packet of `cn` (with that DataTime) the platform acknowledged."""
    def pred(r: Received) -> bool:
        return (r.cn == cn and r.answered == "9014" and r.packet is not None
                and (data_time is None or r.packet.cp.get("DataTime") == data_time))
    return pred


async def test_plume_run_restarted_mid_minute_with_a_1012_and_history_requests_passes_a_strict_platform(
        tmp_path: Path) -> None:
    clock0 = FastClock(1)
    hour = (clock0.now_ms() // HOUR + 3) * HOUR  # H: a full hour (Asia/Shanghai hours are UTC hours)
    fast = fast_clock_from(hour - LEAD_MIN * MINUTE)
    truth_path = tmp_path / "truth.jsonl"
    async with PlatformSim(pw=PW, mn=MN, clock=fast.now_ms, clock_offset_s=AHEAD_S) as city:
        site = tmp_path / "site.yaml"
        site.write_text(SITE.format(tmp=tmp_path, sim_port=free_port(), city_port=city.port, mn=MN, pw=PW,
                                    poll_s=POLL_S), encoding="utf-8")
        sim = Proc(sim_cmd(site, truth_path), tmp_path / "sim.out", fast.env()).start()
        gw = Proc(gateway_cmd(site), tmp_path / "gateway.out", fast.env())
        try:
            await asyncio.to_thread(sim.wait_output, "ready")
            gw.start()
            # first run: data flows, the hour H begins; then SIGTERM in the middle of a minute
            await city.wait_for(is_acked("2011"), timeout=30)
            # 10 s into a minute: SIGTERM reaches a CPU-starved gateway late (100 ms real is 20 s here, four more
            # polls: 9 of the 12 at 30 s into the minute, under load 10), and the cut minute must stay cut
            mid = max(fast.now_ms(), hour) // MINUTE * MINUTE + MINUTE + 10_000
            await until(fast, mid)
            stopped_at = fast.now_ms()
            assert await asyncio.to_thread(gw.terminate) == 0
            # second run, at once: restored from the log, it finishes the hour H
            gw.start()
            await city.wait_for(is_acked("2081"), count=2, timeout=30)
            await city.wait_for(is_acked("2061", time_text(hour, TZ)),
                                timeout=fast.real_s((hour + HOUR + 2 * MINUTE - fast.now_ms()) / 1000) + 30)
            # the 1012: the platform's clock is AHEAD_S ahead; then a whole minute on it
            ex = await city.command("1012", {"SystemTime": time_text(city.now_ms(), TZ)})
            assert (ex.qn_rtn, ex.exe_rtn) == (1, 1)
            corrected_at = city.now_ms()
            await city.wait_for(lambda r: r.cn == "2051" and r.answered == "9014" and r.packet is not None
                                and parse_time(r.packet.cp.get("DataTime") or "", TZ) > corrected_at,
                                timeout=30)
            await city.wait_for(lambda r: r.cn == "2011" and r.answered == "9014" and r.packet is not None
                                and parse_time(r.packet.cp.get("DataTime") or "", TZ) > corrected_at,
                                timeout=30)
            minutes, hours = city.acked("2051"), city.acked("2061")  # before the history replies add theirs
            rtds = city.acked("2011")
            begin, end = minutes[0].cp.get("DataTime") or "", minutes[-1].cp.get("DataTime") or ""
            hist = await city.command("2051", {"BeginTime": begin, "EndTime": end}, timeout=60)
            hist_h = await city.command("2061", {"BeginTime": time_text(hour - HOUR, TZ),
                                                 "EndTime": time_text(hour, TZ)}, timeout=30)
        finally:
            for proc in (gw, sim):
                if proc.running():
                    await asyncio.to_thread(proc.terminate)
        order = [(p.cn, p.cp.get("DataTime") or "") for p in city.acked() if p.cn in ("2011", "2051", "2081")]

    assert city.errors == [], [r.error for r in city.errors]  # the strict platform accepted every packet
    for m in minutes:
        dt = m.cp.get("DataTime") or ""
        assert dt.endswith("00"), dt
        for code in CODES:
            assert m.cp.get(f"{code}-Flag") is not None, (dt, code)  # every code carries its minute's flag
    times = [m.cp.get("DataTime") for m in minutes]
    assert times == sorted(set(times))
    # each start's 2081 follows the data measured before it
    restarts = [i for i, (cn, _) in enumerate(order) if cn == "2081"]
    assert len(restarts) == 2
    for i in restarts:
        assert all(dt <= order[i][1] for _, dt in order[:i])
    # the gateway and its uplink run on the fast clock: the second start's RestartTime is after the SIGTERM and
    # before the platform received it
    second = [r for r in city.received if r.cn == "2081" and r.answered == "9014"][-1]
    assert second.packet is not None
    restart_time = parse_time(second.packet.cp.get("RestartTime") or "", TZ)
    assert stopped_at // 1000 * 1000 <= restart_time <= second.at_ms
    # after the 1012, DataTimes are on the platform's clock (AHEAD_S ahead of the site's): the last 2011 closed
    # a window later than the site's own clock could have reached when the platform received it
    last = next(r for r in city.received if r.cn == "2011" and r.qn == rtds[-1].qn)
    assert parse_time(rtds[-1].cp.get("DataTime") or "", TZ) > last.at_ms

    # --- the truth: what the device simulator served, paired value by value with what the log holds ---------------
    state = json.loads((tmp_path / "log" / "clock.json").read_text())
    offset, set_at = state["offset_ms"], state["last"]["at_ms"]
    assert abs(offset - AHEAD_S * 1000) < 30_000
    readings = [r for _, _, r in log_records(tmp_path / "log" / "log.sqlite") if r.device == "dust-1"]
    on_sim_clock = {"dust-1": [{"time": r.ts - offset if r.ts >= set_at else r.ts,
                                **{ch: cv.value for ch, cv in r.values.items()}} for r in readings]}
    # a poll is stamped when it starts; the simulator serves it a few real ms later (a stalled loop: more), which
    # the fast clock stretches: pair within one real second
    missing, extra = match_truth(read_truth(truth_path), on_sim_clock,
                                 max_lag_ms=FACTOR * 1000)
    assert (missing, extra) == ([], []), (missing[:5], extra[:5])
    samples: dict[int, dict[str, list[str]]] = {}
    for r in readings:
        per_code = samples.setdefault(r.ts // MINUTE * MINUTE, {})
        for code, ch in zip(CODES, ("pm10", "noise"), strict=True):
            cv = r.values.get(ch)
            per_code.setdefault(code, []).append(cv.flag.value if cv is not None and cv.value is not None else "B")
    # one 2051 for every minute measured (up to the last one sent), each flag as the rule says
    sent = {parse_time(m.cp.get("DataTime") or "", TZ): m for m in minutes}
    assert sorted(sent) == sorted(t for t in samples if t <= max(sent))
    expected = {t: {code: minute_flag(samples[t][code]) for code in CODES} for t in sent}
    got = {t: {code: m.cp.get(f"{code}-Flag") for code in CODES} for t, m in sent.items()}
    assert got == expected, {time_text(t, TZ): (len(samples[t]["a34002"]), got[t], expected[t]) for t in sent
                             if got[t] != expected[t]}
    # full minutes are N (how many minutes are full depends on the machine's load: a stalled loop skips polls,
    # and the fast clock makes a stall of 25 ms a missed 5-s slot; the rule above judged those)...
    full = [t for t in sent if len(samples[t]["a34002"]) >= 60 // POLL_S]
    assert len(full) >= 5 and all(got[t] == {"a34002": "N", "LA": "N"} for t in full)
    interrupted = stopped_at // MINUTE * MINUTE
    assert len(samples[interrupted]["a34002"]) < 9 and got[interrupted]["a34002"] == "B"  # ...the cut one is not
    first = min(sent)
    assert got[first] == expected[first]  # the start-up minute: as many samples as it holds (printed on failure)
    # the hour H, across the restart, from its minutes (and the hour before it, if the first minutes fell in it)
    by_hour = {parse_time(h.cp.get("DataTime") or "", TZ): h for h in hours}
    assert hour in by_hour and set(by_hour) == {t // HOUR * HOUR for t in sent if t < hour + HOUR}
    for h, packet in by_hour.items():
        flags = [expected[t]["a34002"] for t in sent if h <= t < h + HOUR]
        assert packet.cp.get("a34002-Flag") == hour_flag(flags), (time_text(h, TZ), Counter(flags))
        assert packet.cp.get("a34002-Avg") == "0.085" and packet.cp.get("LA-Avg") == "62.5"
    # the history replies: 9011/9012 with the request's QN, the live packets again, each with its own QN
    for h_ex, live in ((hist, minutes), (hist_h, hours)):
        assert (h_ex.qn_rtn, h_ex.exe_rtn) == (1, 1) and h_ex.data
        qns = [d.qn for d in h_ex.data]
        assert len(set(qns)) == len(qns) and h_ex.qn not in qns
        assert [d.cp.get("DataTime") for d in h_ex.data] == [p.cp.get("DataTime") for p in live]
        assert [d.cp for d in h_ex.data] == [p.cp for p in live]
