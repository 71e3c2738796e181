"""Issue #11, finding 7: the converted (Zs) average of a window is the window's mean concentration converted with
the window's mean O2 (gateway/processing/README.md cites the clauses), not the mean of instantaneous Zs values;
`zs_window_average: of_values` keeps the other way."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.processing.cems import StackConfig, StackDeriver
from gateway.processing.windows import WindowEngine, WindowsConfig
from gateway.processing.zs_windows import ZsFromMeans

S = 1000
MIN = 60 * S
HOUR = 60 * MIN
T = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)


def stack(**kw: object) -> StackConfig:
    return StackConfig.model_validate({"device": "stack-1", "boiler": "coal", "o2": "o2",
                                       "pollutants": {"so2": {"channel": "so2"}}, **kw})


def run(cfg: StackConfig, o2_of, minutes: int = 60, step_s: int = 5, so2=lambda i, s: 100.0):
    deriver = StackDeriver([cfg])
    e = WindowEngine(WindowsConfig(), "site", "UTC", history_from=T - HOUR, sampling={"stack-1": step_s},
                     finish=ZsFromMeans([cfg]))
    out = []
    for i in range(minutes):
        for s in range(0, 60, step_s):
            o2 = o2_of(i, s)
            r = DeviceReading("site", "stack-1", "cems", T + i * MIN + s * S, {
                "so2": ChannelValue(so2(i, s), "mg/m3"),
                "o2": ChannelValue(o2, "%", Flag.N) if isinstance(o2, float) else o2})
            deriver.apply(r)
            out += e.feed(r)
    return out + e.advance(T + minutes * MIN + HOUR)


def by(aggs, window):
    return [a for a in aggs if a.window == window]


def test_the_hourly_zs_average_converts_the_hourly_means():
    """SO2 100 mg/m3 (dry, standard), O2 alternating 6 % / 16 % by minute, coal boiler (reference 9 %).
    Instantaneous Zs: 100 x 12 / 15 = 80 and 100 x 12 / 5 = 240, mean 160. The hour's means: SO2 100, O2 11 %:
    100 x 12 / 10 = 120 -- what the standards compute and what GB 13271 judges."""
    out = run(stack(), lambda i, s: 6.0 if i % 2 == 0 else 16.0)
    (h,) = by(out, "1h")
    zs = h.channels["so2_zs"]
    assert (h.channels["o2"].avg, h.channels["so2_std"].avg) == (pytest.approx(11.0), pytest.approx(100.0))
    assert (zs.avg, zs.flag, zs.n, zs.valid) == (pytest.approx(120.0), Flag.N, 60, 60)
    assert (zs.min, zs.max) == (pytest.approx(80.0), pytest.approx(240.0))  # the extremes of the minutes
    m0, m1 = by(out, "1m")[:2]
    assert (m0.channels["so2_zs"].avg, m1.channels["so2_zs"].avg) == (pytest.approx(80.0), pytest.approx(240.0))


def test_a_minute_converts_its_own_means_too():
    # O2 alternating every 5 s within each minute: each minute's mean O2 is 11 % -> 120 (not 160)
    out = run(stack(), lambda i, s: 6.0 if (s // 5) % 2 == 0 else 16.0, minutes=2)
    assert [m.channels["so2_zs"].avg for m in by(out, "1m")] == [pytest.approx(120.0)] * 2


def test_the_mean_of_instantaneous_values_stays_selectable():
    out = run(stack(zs_window_average="of_values"), lambda i, s: 6.0 if i % 2 == 0 else 16.0)
    (h,) = by(out, "1h")
    assert h.channels["so2_zs"].avg == pytest.approx(160.0)


def test_wet_o2_converts_with_the_mean_dry_o2():
    # O2 8.1 % wet at 10 % moisture = 9 % dry: at the reference, Zs = the dry concentration (100 / 0.9 = 111.1)
    cfg = stack(o2_basis="wet", moisture=10.0, pollutants={"so2": {"channel": "so2", "basis": "wet"}})
    out = run(cfg, lambda i, s: 8.1, minutes=1)
    (m,) = by(out, "1m")
    assert m.channels["so2_zs"].avg == pytest.approx(100 / 0.9)
    assert m.channels["o2_dry"].avg == pytest.approx(9.0)


def test_an_hour_whose_mean_o2_is_at_the_guard_has_no_zs_average():
    # burner off for most of the hour: mean O2 20.2 % >= guard 19 %: no converted value, flag F (stopped)
    out = run(stack(), lambda i, s: 20.9 if i < 50 else 16.0)
    (h,) = by(out, "1h")
    zs = h.channels["so2_zs"]
    assert (zs.avg, zs.flag) == (None, Flag.F)
