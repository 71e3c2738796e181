"""Issue #11, findings 1 and 2, against hand-built series with their expected minute and hour flags and averages.

1. A minute is judged against the samples the device's poll interval makes EXPECTED, not against what arrived
   (HJ 212-2017 appendix D2.2: a minute from instantaneous values at most 5 s apart, n >= 12; table C.16 note:
   75 % of them normal). A minute with one sample, the first 16 s after start-up, 44 s before a crash: not N.
2. Over-range values (T) are measurements above the instrument's range: they take part in averages, minimum and
   maximum, the window carries the flag, and a rule that accepts T judges them (never under-reported).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.alarms.engine import AlarmEngine
from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.processing.windows import WindowEngine, WindowsConfig
from tests.alarms.helpers import rule

S = 1000
MIN = 60 * S
HOUR = 60 * MIN


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


T = ms("2026-03-02T00:00:00")


def engine(sampling: dict[str, float], **cfg: object) -> WindowEngine:
    return WindowEngine(WindowsConfig(**cfg), "site", "UTC", history_from=T - HOUR,  # type: ignore[arg-type]
                        sampling=sampling)


def cems(ts: int, so2: float, flag: Flag = Flag.N) -> DeviceReading:
    return DeviceReading("site", "stack-1", "cems", ts, {"so2": ChannelValue(so2, "mg/m3", flag)})


def dust(ts: int, pm10: float, flag: Flag = Flag.N) -> DeviceReading:
    return DeviceReading("site", "dust-1", "dust", ts, {"pm10": ChannelValue(pm10, "ug/m3", flag)})


def by(aggs, window):
    return [a for a in aggs if a.window == window]


def seconds(e: WindowEngine, make, minute_start: int, secs, value=100.0, flag=Flag.N):
    out = []
    for s in secs:
        out += e.feed(make(minute_start + s * S, value, flag))
    return out


# --- finding 1: the minute against the expected samples ---------------------------------------------------------
@pytest.mark.parametrize(
    ("secs", "flag", "n", "valid"),
    [
        (range(60), Flag.N, 60, 60),          # every second of the minute
        (range(15, 60), Flag.N, 45, 45),      # 45 of 60 expected = 75 %: N
        (range(44), Flag.B, 44, 44),          # 44 s, then the gateway crashed: 73 % < 75 %
        (range(44, 60), Flag.B, 16, 16),      # the first minute after start-up: 16 s of data
        ([30], Flag.B, 1, 1),                 # one sample
    ],
)
def test_a_cems_minute_polled_every_second_needs_45_of_its_60_samples(secs, flag, n, valid):
    e = engine({"stack-1": 1.0})
    seconds(e, cems, T, secs)
    (m,) = by(e.advance(T + MIN), "1m")
    a = m.channels["so2"]
    assert (a.n, a.valid, a.flag, a.avg, m.expected) == (n, valid, flag, 100.0, 60)


def test_a_cems_minute_polled_every_5_s_needs_all_12_instantaneous_values():
    e = engine({"stack-1": 5.0})
    out = seconds(e, cems, T, range(0, 60, 5))                       # 12 values: HJ 212 D2.2 n >= 12
    out += seconds(e, cems, T + MIN, range(0, 55, 5))                # 11 values
    out += seconds(e, cems, T + 2 * MIN, [0, 5, 10], flag=Flag.C)    # 3 calibrating + 9 normal: 12, 75 % N
    out += seconds(e, cems, T + 2 * MIN, range(15, 60, 5))
    m0, m1, m2 = by(out + e.advance(T + 3 * MIN), "1m")
    assert [(m.channels["so2"].n, m.channels["so2"].flag) for m in (m0, m1, m2)] == [
        (12, Flag.N), (11, Flag.B), (12, Flag.N)]
    assert m0.expected == 12


def test_a_cems_device_polled_every_10_s_never_makes_a_valid_minute():
    e = engine({"stack-1": 10.0})
    seconds(e, cems, T, range(0, 60, 10))  # all 6 polls arrived, all normal, but n < 12
    (m,) = by(e.advance(T + MIN), "1m")
    assert (m.channels["so2"].n, m.channels["so2"].valid, m.channels["so2"].flag, m.expected) == (6, 6, Flag.B, 12)


def test_a_dust_minute_is_judged_against_its_poll_interval():
    # dust monitors are not bound by the CEMS n >= 12: a 10 s poll expects 6 samples, 5 of them make 75 %
    e = engine({"dust-1": 10.0})
    out = seconds(e, dust, T, range(0, 60, 10), value=50.0)
    out += seconds(e, dust, T + MIN, range(0, 50, 10), value=50.0)
    out += seconds(e, dust, T + 2 * MIN, range(0, 40, 10), value=50.0)
    m0, m1, m2 = by(out + e.advance(T + 3 * MIN), "1m")
    assert [(m.channels["pm10"].n, m.channels["pm10"].flag) for m in (m0, m1, m2)] == [
        (6, Flag.N), (5, Flag.N), (4, Flag.B)]


def test_hours_count_the_minutes_short_of_samples_against_them():
    """A stack polled every 2 s (30 samples a minute, 23 needed). Hour 0: 45 full minutes, then 15 minutes of 22
    samples (the link drops every fourth poll and some) -> 45 valid minutes: N. Hour 1: 44 full, 16 short -> B.
    The hour averages the valid minutes only: hour 0 at 100 mg/m3 (full) while the short minutes read 400."""
    e = engine({"stack-1": 2.0})
    out = []
    for h, full in ((0, 45), (1, 44)):
        for i in range(60):
            start = T + h * HOUR + i * MIN
            secs = range(0, 60, 2) if i < full else range(0, 44, 2)
            out += seconds(e, cems, start, secs, value=100.0 if i < full else 400.0)
    out += e.advance(T + 2 * HOUR)
    minutes = by(out, "1m")
    assert len(minutes) == 120
    assert {(m.channels["so2"].n, m.channels["so2"].flag) for m in minutes} == {(30, Flag.N), (22, Flag.B)}
    h0, h1 = by(out, "1h")
    a0, a1 = h0.channels["so2"], h1.channels["so2"]
    assert (a0.n, a0.valid, a0.flag, a0.avg) == (60, 45, Flag.N, 100.0)
    assert (a1.n, a1.valid, a1.flag, a1.avg) == (60, 44, Flag.B, 100.0)


def test_without_a_known_poll_interval_a_minute_is_judged_on_what_arrived():
    # tools that aggregate a log without the site file: the previous rule, said in the docs
    e = WindowEngine(WindowsConfig(), "site", "UTC", history_from=T - HOUR)
    seconds(e, cems, T, [30])
    (m,) = by(e.advance(T + MIN), "1m")
    assert (m.channels["so2"].flag, m.expected) == (Flag.N, 0)


# --- finding 2: over-range values are measured values -------------------------------------------------------
def test_over_range_minutes_take_part_in_the_15_minute_average_and_the_rule_judges_it():
    """11 minutes at 6000 mg/m3 flagged T (over the analyzer's range) and 4 at 50 (N): the 15-minute average is
    (11 x 6000 + 4 x 50) / 15 = 4413.33, min 50, max 6000, flag T (4 of 15 N < 75 %), and the rule (which accepts
    T) raises an alarm on it."""
    e = engine({"stack-1": 5.0}, periods=["1m", "15m", "1h", "1d"])
    out = []
    for i in range(15):
        value, flag = (6000.0, Flag.T) if i < 11 else (50.0, Flag.N)
        out += seconds(e, cems, T + i * MIN, range(0, 60, 5), value=value, flag=flag)
    out += e.advance(T + 15 * MIN)
    (w,) = by(out, "15m")
    a = w.channels["so2"]
    assert (a.n, a.valid, a.flag, a.min, a.max) == (15, 4, Flag.T, 50.0, 6000.0)
    assert a.avg == pytest.approx((11 * 6000 + 4 * 50) / 15)
    alarms = AlarmEngine([rule(id="so2-15m", kind="cems", channel="so2", window="15m", unit="mg/m3", limit=400)],
                         "site", "UTC")
    (raised,) = alarms.on_aggregate(w)
    assert (raised.type.value, raised.value) == ("raised", pytest.approx(4413.333, abs=1e-3))


def test_an_over_range_sample_counts_in_a_normal_minute():
    """5 samples at 100 (N), one at 6000 (T): 5 of 6 N -> the minute is N, its average (5 x 100 + 6000) / 6 =
    1083.33 and its max 6000; an over-range peak is never averaged away."""
    e = engine({"dust-1": 10.0})
    seconds(e, dust, T, range(0, 50, 10), value=100.0)
    seconds(e, dust, T, [50], value=6000.0, flag=Flag.T)
    (m,) = by(e.advance(T + MIN), "1m")
    a = m.channels["pm10"]
    assert (a.n, a.valid, a.flag, a.max) == (6, 5, Flag.N, 6000.0)
    assert a.avg == pytest.approx(6500 / 6)


def test_calibration_values_still_stay_out_of_a_valid_average():
    e = engine({"dust-1": 10.0})
    seconds(e, dust, T, range(0, 50, 10), value=100.0)
    seconds(e, dust, T, [50], value=6000.0, flag=Flag.C)
    (m,) = by(e.advance(T + MIN), "1m")
    assert (m.channels["pm10"].flag, m.channels["pm10"].avg, m.channels["pm10"].max) == (Flag.N, 100.0, 100.0)
