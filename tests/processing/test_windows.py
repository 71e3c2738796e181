"""Window aggregates: the numbers a regulator recomputes, HJ 212 validity, the site's local clock (DST), partial
windows, and — property-tested — independence from batching, from timer ticks and from a restart."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.processing.windows import WindowAggregate, WindowEngine, WindowsConfig

MIN = 60_000
HOUR = 3_600_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


T = ms("2026-03-02T00:00:00")


def r(ts, device="dust-1", kind="dust", **values):
    vals = {}
    for ch, v in values.items():
        if isinstance(v, ChannelValue):
            vals[ch] = v
        elif isinstance(v, tuple):
            vals[ch] = ChannelValue(v[0], v[1], v[2] if len(v) > 2 else Flag.N)
        else:
            vals[ch] = ChannelValue(v, "ug/m3")
    return DeviceReading("site", device, kind, ts, vals)


def engine(tz="UTC", history_from=T - HOUR, **cfg):
    return WindowEngine(WindowsConfig(**cfg), "site", tz, history_from=history_from)


def by(aggs, window):
    return [a for a in aggs if a.window == window]


def per_minute(e, start, minutes, value=10.0, flag=Flag.N, ch="pm10", unit="ug/m3", device="dust-1"):
    """One reading per minute (at :30) for `minutes` minutes."""
    out = []
    for i in range(minutes):
        out += e.feed(r(start + i * MIN + 30_000, device, **{ch: (value, unit, flag)}))
    return out


# --- the minute --------------------------------------------------------------------------------------------
def test_minute_from_raw_values():
    e = engine()
    for i, v in enumerate([10, 20, 30, 40, 50, 60]):
        assert e.feed(r(T + i * 10_000, pm10=float(v))) == []
    (m,) = e.feed(r(T + MIN, pm10=1.0))  # the first reading of the next minute closes it
    a = m.channels["pm10"]
    # (10 + 20 + 30 + 40 + 50 + 60) / 6 = 35
    assert (m.window, m.start, m.end, m.partial) == ("1m", T, T + MIN, False)
    assert (a.min, a.avg, a.max, a.n, a.valid, a.flag, a.unit) == (10, 35, 60, 6, 6, Flag.N, "ug/m3")


@pytest.mark.parametrize(
    ("flags", "expected_flag", "expected_avg"),
    [
        # 5 of 6 N = 83 % >= 75 %: N; the average is over the N values only: (10+20+30+40+50)/5 = 30
        ("NNNNNC", Flag.N, 30.0),
        # 4 of 6 = 67 % < 75 %: not N; the most frequent other flag (C) names it; avg still over N: 25
        ("NNNNCC", Flag.C, 25.0),
        # nothing valid: the average of everything measured, flagged: (10+...+60)/6 = 35
        ("CCCMMM", Flag.M, 35.0),  # 3 C and 3 M: a tie goes to the more severe (M)
    ],
)
def test_minute_validity_is_75_percent_of_values(flags, expected_flag, expected_avg):
    e = engine()
    for i, (f, v) in enumerate(zip(flags, [10, 20, 30, 40, 50, 60], strict=True)):
        e.feed(r(T + i * 10_000, pm10=(float(v), "ug/m3", Flag(f))))
    (m,) = e.feed(r(T + MIN, pm10=1.0))
    a = m.channels["pm10"]
    assert (a.flag, a.avg, a.valid, a.n) == (expected_flag, pytest.approx(expected_avg), flags.count("N"), 6)


def test_values_without_number_count_but_do_not_average():
    e = engine()
    e.feed(r(T, pm10=20.0))
    e.feed(r(T + 20_000, pm10=ChannelValue(None, "ug/m3", Flag.B, "timeout")))
    e.feed(r(T + 40_000, pm10=ChannelValue(None, "ug/m3", Flag.B, "timeout")))
    (m,) = e.feed(r(T + MIN, pm10=1.0))
    a = m.channels["pm10"]
    assert (a.avg, a.n, a.valid, a.flag) == (20.0, 3, 1, Flag.B)


def test_text_and_excluded_channels_are_not_aggregated():
    e = engine(exclude=["run_*"])
    e.feed(r(T, pm10=1.0, serial=("AB12", ""), run_hours=(5.0, "h")))
    (m,) = e.feed(r(T + MIN, pm10=1.0))
    assert list(m.channels) == ["pm10"]


# --- windows built from minutes ----------------------------------------------------------------------------
@pytest.mark.parametrize(("bad", "flag"), [(1, Flag.N), (2, Flag.C)])
def test_5_minute_window_needs_4_valid_minutes(bad, flag):
    e = engine()
    out = []
    for i in range(5):
        f = Flag.C if i < bad else Flag.N
        out += e.feed(r(T + i * MIN, pm10=(float(10 * (i + 1)), "ug/m3", f)))
    out += e.feed(r(T + 5 * MIN, pm10=1.0))
    (w,) = by(out, "5m")
    a = w.channels["pm10"]
    assert (w.start, w.end, w.expected, a.n, a.valid, a.flag) == (T, T + 5 * MIN, 5, 5, 5 - bad, flag)
    # average of the valid minutes' averages: bad=1 -> (20+30+40+50)/4 = 35; bad=2 -> (30+40+50)/3 = 40
    assert a.avg == pytest.approx({1: 35.0, 2: 40.0}[bad])
    assert (a.min, a.max) == ({1: 20.0, 2: 30.0}[bad], 50.0)


def test_15_minute_window_needs_12_valid_minutes():
    e = engine()
    out = per_minute(e, T, 12) + e.advance(T + 15 * MIN)  # 12 minutes, then silence
    (w,) = by(out, "15m")
    assert (w.channels["pm10"].valid, w.channels["pm10"].flag) == (12, Flag.N)
    e = engine()
    out = per_minute(e, T, 11) + e.advance(T + 15 * MIN)
    (w,) = by(out, "15m")
    # 11 of 15: short of data without any flagged value -> B (nothing arrived)
    assert (w.channels["pm10"].valid, w.channels["pm10"].n, w.channels["pm10"].flag) == (11, 11, Flag.B)


@pytest.mark.parametrize(("valid", "calibrating", "flag"), [(45, 0, Flag.N), (44, 0, Flag.B), (44, 16, Flag.C)])
def test_valid_hour_needs_45_valid_minutes(valid, calibrating, flag):
    e = engine()
    per_minute(e, T, valid)
    per_minute(e, T + valid * MIN, calibrating, flag=Flag.C)
    (h,) = by(e.advance(T + HOUR), "1h")
    a = h.channels["pm10"]
    assert (h.expected, a.n, a.valid, a.flag) == (60, valid + calibrating, valid, flag)


@pytest.mark.parametrize(("valid_hours", "flag"), [(20, Flag.N), (19, Flag.M)])
def test_valid_day_needs_20_valid_hours(valid_hours, flag):
    e = engine()
    out = []
    for h in range(24):
        out += per_minute(e, T + h * HOUR, 60, value=float(h), flag=Flag.N if h < valid_hours else Flag.M)
    out += e.advance(T + 24 * HOUR)
    (d,) = by(out, "1d")
    a = d.channels["pm10"]
    assert (d.start, d.end, d.expected, a.n, a.valid, a.flag) == (T, T + 24 * HOUR, 24, 24, valid_hours, flag)
    # the average of the valid hours' averages: hours 0..19 -> 9.5; 0..18 -> 9.0
    assert a.avg == pytest.approx((valid_hours - 1) / 2)
    assert len(by(out, "1h")) == 24 and len(by(out, "1m")) == 1440 and len(by(out, "15m")) == 96


# --- how values are averaged -------------------------------------------------------------------------------
def test_wind_direction_is_averaged_as_a_vector():
    e = engine()
    e.feed(r(T, wind_dir=(350.0, "deg")))
    e.feed(r(T + 10_000, wind_dir=(10.0, "deg")))
    (m,) = e.feed(r(T + MIN, wind_dir=(0.0, "deg")))
    a = m.channels["wind_dir"]
    assert min(a.avg, 360 - a.avg) == pytest.approx(0.0, abs=1e-9)  # north, not 180 (south)
    assert (a.min, a.max) == (10.0, 350.0)


def test_noise_is_averaged_as_energy_leq():
    e = engine()
    e.feed(r(T, noise=(60.0, "dB(A)")))
    e.feed(r(T + 10_000, noise=(70.0, "dB(A)")))
    (m,) = e.feed(r(T + MIN, noise=(0.0, "dB(A)")))
    # 10 * log10((10^6 + 10^7) / 2) = 10 * log10(5.5e6) = 67.40 dB(A), not 65
    assert m.channels["noise"].avg == pytest.approx(67.4036, abs=1e-4)


@pytest.mark.parametrize("levels", [(5000.0, 5000.0), (-5000.0, -5000.0), (3100.0, 3090.0), (1e300, 1e300)])
def test_sound_levels_of_any_size_average_as_energy_without_breaking_the_engine(levels):
    """A garbled noise register (no max in its profile) can say 5,000 dB: 10^(L/10) overflowed (OverflowError) and
    -5,000 dB underflowed to log10(0) (ValueError), out of the window engine, for every channel of the stage."""
    e = engine()
    e.feed(r(T, noise=(levels[0], "dB(A)"), pm10=(10.0, "ug/m3")))
    e.feed(r(T + 10_000, noise=(levels[1], "dB(A)"), pm10=(20.0, "ug/m3")))
    (m,) = e.feed(r(T + MIN, noise=(0.0, "dB(A)"), pm10=(0.0, "ug/m3")))
    hi, lo = max(levels), min(levels)
    # 10 log10((10^(hi/10) + 10^(lo/10)) / 2), written so that neither power is ever formed
    want = hi + 10 * math.log10((1 + 10 ** ((lo - hi) / 10)) / 2)
    assert m.channels["noise"].avg == pytest.approx(want)
    assert m.channels["pm10"].avg == 15.0


def test_emission_rate_gets_a_cumulative_mass():
    e = engine()
    out = per_minute(e, T, 60, value=6.0, ch="so2_rate", unit="kg/h", device="stack-1")
    out += e.advance(T + HOUR)
    m = by(out, "1m")[0].channels["so2_rate"]
    h = by(out, "1h")[0].channels["so2_rate"]
    # 6 kg/h for a minute = 0.1 kg; sixty of them = 6 kg
    assert (m.cou, m.cou_unit) == (pytest.approx(0.1), "kg")
    assert (h.cou, h.cou_unit, h.avg) == (pytest.approx(6.0), "kg", pytest.approx(6.0))
    assert "so2_rate_cou" in by(out, "1h")[0].fields()


def test_speed_is_not_a_rate():
    e = engine()
    e.feed(r(T, flue_velocity=(10.0, "m/s")))
    (m,) = e.feed(r(T + MIN, flue_velocity=(10.0, "m/s")))
    assert m.channels["flue_velocity"].cou is None


# --- the local clock -----------------------------------------------------------------------------------------
def test_hours_follow_a_quarter_hour_offset_zone():
    e = engine("Asia/Kathmandu")  # UTC+05:45
    e.feed(r(ms("2026-03-02T00:20:00"), pm10=1.0))  # 06:05 local
    (h,) = by(e.advance(ms("2026-03-02T02:00:00")), "1h")
    assert (h.start, h.end) == (ms("2026-03-02T00:15:00"), ms("2026-03-02T01:15:00"))  # 06:00-07:00 local


def test_day_is_the_local_day():
    e = engine("Asia/Shanghai", history_from=ms("2026-03-01T00:00:00"))
    e.feed(r(ms("2026-03-02T15:59:59"), pm10=1.0))  # 23:59:59 in Shanghai
    out = e.feed(r(ms("2026-03-02T16:00:00"), pm10=1.0))  # local midnight: the day closes
    (d,) = by(out, "1d")
    assert (d.start, d.end, d.expected) == (ms("2026-03-01T16:00:00"), ms("2026-03-02T16:00:00"), 24)


def test_dst_fall_back_day_has_25_distinct_hours():
    tz = "Europe/Berlin"  # 2026-10-25 03:00 CEST -> 02:00 CET at 01:00 UTC
    e = engine(tz, history_from=ms("2026-10-24T00:00:00"))
    out = per_minute(e, ms("2026-10-24T22:00:00"), 25 * 60) + e.advance(ms("2026-10-25T23:00:00"))
    hours = by(out, "1h")
    (d,) = by(out, "1d")
    assert (d.start, d.end, d.expected) == (ms("2026-10-24T22:00:00"), ms("2026-10-25T23:00:00"), 25)
    assert len(hours) == 25 and all(h.end - h.start == HOUR for h in hours)
    assert len({h.start for h in hours}) == 25  # the repeated 02:00-03:00 is two windows
    assert d.channels["pm10"].n == 25


def test_dst_spring_forward_day_has_23_hours():
    tz = "Europe/Berlin"  # 2026-03-29 02:00 CET -> 03:00 CEST at 01:00 UTC
    e = engine(tz, history_from=ms("2026-03-28T00:00:00"))
    out = per_minute(e, ms("2026-03-28T23:00:00"), 23 * 60) + e.advance(ms("2026-03-29T22:00:00"))
    (d,) = by(out, "1d")
    assert (d.end - d.start, d.expected, d.channels["pm10"].valid, d.channels["pm10"].flag) == (
        23 * HOUR, 23, 23, Flag.N)


# --- closing, lateness, partial windows ----------------------------------------------------------------------
def test_a_silent_device_s_windows_close_on_advance():
    e = engine()
    assert per_minute(e, T, 3) != []
    assert e.advance(T + 3 * MIN - 1) == []
    out = e.advance(T + 5 * MIN)
    assert [(a.window, a.start) for a in out] == [("1m", T + 2 * MIN), ("5m", T)]
    assert by(out, "5m")[0].channels["pm10"].n == 3


def test_a_silent_device_s_windows_close_when_the_site_clock_passes_them():
    e = engine(lateness_s=60)
    e.feed(r(T + 10_000, "dust-1", pm10=1.0))
    assert e.feed(r(T + MIN + 59_999, "dust-2", pm10=1.0)) == []  # within the lateness
    out = e.feed(r(T + 2 * MIN, "dust-2", pm10=1.0))  # the site clock is 60 s past dust-1's minute
    assert [(a.device, a.window) for a in out] == [("dust-1", "1m"), ("dust-2", "1m")]
    assert e.feed(r(T + 50_000, "dust-1", pm10=1.0)) == [] and e.late == 1  # too late now


def test_late_reading_is_counted_and_not_used():
    e = engine()
    e.feed(r(T + MIN + 1, pm10=1.0))
    assert e.feed(r(T + 10, pm10=999.0)) == []
    assert e.late == 1
    (m,) = e.feed(r(T + 2 * MIN, pm10=1.0))
    assert m.channels["pm10"].max == 1.0


def test_windows_started_mid_way_are_partial_after_a_restart_without_history():
    e = WindowEngine(WindowsConfig(), "site", "UTC")  # no history: what it sees first is all it knows
    out = e.feed(r(T + 7_000, pm10=1.0)) + e.feed(r(T + MIN, pm10=1.0)) + e.feed(r(T + 2 * MIN, pm10=1.0))
    assert [(a.start, a.partial) for a in by(out, "1m")] == [(T, True), (T + MIN, False)]
    out = e.advance(T + 24 * HOUR)
    assert all(a.partial for a in out if a.window != "1m")  # 5m, 15m, hour and day all began before 00:00:07
    e = WindowEngine(WindowsConfig(), "site", "UTC", history_from=T)
    out = e.feed(r(T + 7_000, pm10=1.0)) + e.advance(T + 24 * HOUR)
    assert not any(a.partial for a in out)


def test_aggregate_json_round_trip_and_fields():
    e = engine()
    e.feed(r(T, pm10=10.0, pm25=(5.0, "ug/m3", Flag.C)))
    (m,) = e.feed(r(T + MIN, pm10=1.0))
    back = WindowAggregate.from_json(json.loads(json.dumps(m.to_json())))
    assert back == m
    assert m.measurement == "dust_1m"
    assert m.fields() == {"pm10_avg": 10.0, "pm10_min": 10.0, "pm10_max": 10.0, "pm10_n": 1, "pm10_valid": 1,
                          "pm10_flag": "N", "pm25_avg": 5.0, "pm25_min": 5.0, "pm25_max": 5.0, "pm25_n": 1,
                          "pm25_valid": 0, "pm25_flag": "C"}


@pytest.mark.parametrize(("periods", "message"), [(["5m", "1h", "1d"], "1m missing"), (["1m", "7m", "1h", "1d"],
                                                                                        "divide an hour")])
def test_windows_config_errors(periods, message):
    with pytest.raises(ValidationError, match=message):
        WindowsConfig(periods=periods)


def test_restore_continues_an_open_hour_without_emitting_twice():
    full = engine()
    a = per_minute(full, T, 50)
    a += full.advance(T + HOUR)
    first = engine()
    e1 = per_minute(first, T, 30)  # crash after 30 minutes (minute 29 still open)
    second = engine()
    since = second.restore_since(max(x.end for x in e1 if x.window == "1m"))
    assert since == T  # the local midnight of the open day
    assert second.restore([x for x in e1 if x.start >= since]) == []
    assert second.resume_from("dust-1") == T + 29 * MIN
    e2 = []
    for i in range(29, 50):
        e2 += second.feed(r(T + i * MIN + 30_000, pm10=10.0))
    e2 += second.advance(T + HOUR)
    assert sorted(x.key for x in e1 + e2) == sorted(x.key for x in a)
    assert by(e2, "1h")[0] == by(a, "1h")[0]


def test_a_device_that_read_just_before_midnight_keeps_its_windows_across_a_restart():
    day = ms("2026-10-25T00:00:00")
    readings = [r(day - 2_000, "b", pm10=5.0), r(day - 1_000, "a", pm10=1.0), r(day, "a", pm10=1.0),
                r(day + 1_000, "a", pm10=1.0)]
    full = engine()
    expected = full.feed_many(readings) + full.advance(day + 2 * 24 * HOUR)
    before = engine()
    logged = before.feed_many(readings[:3])  # crash: a's minute 23:59 is logged, b's is still open
    after = engine()
    since = after.restore_since(max(x.end for x in logged if x.window == "1m"))
    assert since == day - 24 * HOUR  # b's windows are still in the 24th
    after.restore([x for x in logged if x.start >= since])
    got = after.feed_many(x for x in readings if x.ts >= (after.resume_from(x.device) or since))
    got += after.advance(day + 2 * 24 * HOUR)
    assert sorted(x.key for x in logged + got) == sorted(x.key for x in expected)
    assert [x.channels["pm10"].avg for x in got if x.device == "b" and x.window == "1d"] == [5.0]


# --- properties ------------------------------------------------------------------------------------------------
START = ms("2026-10-24T20:00:00")  # near the Berlin fall-back night
FLAGS = [Flag.N] * 6 + [Flag.C, Flag.M, Flag.D, Flag.T]


@st.composite
def streams(draw):
    n = draw(st.integers(1, 120))
    ts = START
    out = []
    for _ in range(n):
        # mostly in order; now and then a device's poll time lags the site by up to 90 s (a slow bus)
        ts += draw(st.one_of(st.integers(1_000, 90_000), st.integers(90_000, 3 * HOUR)))
        if draw(st.integers(0, 30)) == 0:  # jump to just before a midnight (UTC or Shanghai): day boundaries
            ts = max(ts, (ts // (24 * HOUR) + 1) * 24 * HOUR - draw(st.sampled_from([0, 8 * HOUR])) - 3_000)
        lag = draw(st.sampled_from([0] * 8 + [30_000, 90_000]))
        dev = draw(st.sampled_from(["a", "b"]))
        flag = draw(st.sampled_from(FLAGS))
        missing = draw(st.integers(0, 9)) == 0
        pm = ChannelValue(None, "ug/m3", Flag.B) if missing else ChannelValue(
            draw(st.floats(0, 2000, allow_nan=False)), "ug/m3", flag)
        values = {"pm10": pm,
                  "wd": ChannelValue(draw(st.floats(0, 359.9)), "deg"),
                  "rate": ChannelValue(draw(st.floats(0, 50)), "kg/h", draw(st.sampled_from(FLAGS)))}
        out.append(DeviceReading("site", dev, "dust", ts - lag, values))
    return out


TZS = st.sampled_from(["UTC", "Asia/Shanghai", "Europe/Berlin", "Asia/Kathmandu"])
H0 = START - HOUR
END = START + 20 * 24 * HOUR


def fresh(tz):
    return WindowEngine(WindowsConfig(periods=["1m", "5m", "15m", "20m", "1h", "1d"]), "site", tz, history_from=H0)


def canon(aggs):
    return sorted(json.dumps(a.to_json(), sort_keys=True) for a in aggs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readings=streams(), tz=TZS, cuts=st.lists(st.integers(1, 30), max_size=10))
def test_result_does_not_depend_on_batching(readings, tz, cuts):
    one = fresh(tz)
    expected = [a for x in readings for a in one.feed(x)]
    batched = fresh(tz)
    got, i = [], 0
    for c in [*cuts, len(readings)]:
        got += batched.feed_many(readings[i : i + c])
        i += c
    got += batched.feed_many(readings[i:])
    assert got == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readings=streams(), tz=TZS, data=st.data())
def test_live_ticks_and_replay_give_the_same_windows(readings, tz, data):
    replay = fresh(tz)
    expected = replay.feed_many(readings) + replay.advance(END)
    live = fresh(tz)
    # a timer tick never runs ahead of a reading still to come (the app ticks at now - lateness)
    horizon = [min(x.ts for x in readings[i:]) for i in range(len(readings))]
    got, prev = [], START - HOUR
    for i, x in enumerate(readings):
        if data.draw(st.booleans()) and prev <= horizon[i]:
            prev = data.draw(st.integers(prev, horizon[i]))
            got += live.advance(prev)
        got += live.feed(x)
    got += live.advance(END)
    assert canon(got) == canon(expected)
    assert live.late == replay.late


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readings=streams(), tz=TZS, data=st.data())
def test_restart_restored_from_the_log_neither_loses_nor_duplicates_a_window(readings, tz, data):
    full = fresh(tz)
    expected = full.feed_many(readings) + full.advance(END)
    k = data.draw(st.integers(1, len(readings)))
    before = fresh(tz)
    logged = before.feed_many(readings[:k])
    if data.draw(st.booleans()):  # a timer tick just before the crash, never ahead of a reading still to come
        upper = min((x.ts for x in readings[k:]), default=readings[k - 1].ts + 5 * MIN)
        logged += before.advance(data.draw(st.integers(upper - 5 * MIN, upper)))
    logged = [WindowAggregate.from_json(json.loads(json.dumps(a.to_json()))) for a in logged]  # via the log
    after = fresh(tz)
    minutes = [a.end for a in logged if a.window == "1m"]
    since = after.restore_since(max(minutes)) if minutes else H0
    got = after.restore([a for a in logged if a.start >= since])
    replay_from = {d: after.resume_from(d) for d in ("a", "b")}
    got += after.feed_many(x for x in readings if x.ts >= (replay_from[x.device] or since))
    got += after.advance(END)
    keys = [a.key for a in logged + got]
    assert len(keys) == len(set(keys)), "a window was emitted twice"
    assert canon(logged + got) == canon(expected)


def test_minute_average_is_exact_for_simple_values():
    e = engine()
    per_minute(e, T, 1, value=math.pi)
    (m,) = e.advance(T + MIN)
    assert m.channels["pm10"].avg == math.pi
