"""Maintenance (M) and stuck-value flags, as a site manager configures them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.processing.quality import MaintenanceConfig, QualityProcessor, StuckRule


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def reading(ts, device="dust-1", **values):
    vals = {ch: v if isinstance(v, ChannelValue) else ChannelValue(v, "ug/m3") for ch, v in values.items()}
    return DeviceReading("s", device, "dust", ts, vals)


def flags(r):
    return {ch: cv.flag for ch, cv in r.values.items()}


def test_site_switch_flags_every_channel_m_and_keeps_worse_flags():
    q = QualityProcessor(MaintenanceConfig(active=True))
    r = q.apply(reading(0, pm10=40.0, pm25=ChannelValue(None, "ug/m3", Flag.B, "timeout")))
    assert flags(r) == {"pm10": Flag.M, "pm25": Flag.B}  # a communication fault stays B
    assert r.values["pm10"].value == 40.0 and r.values["pm10"].note == "maintenance switch"


def test_runtime_switch_per_device_and_back_to_the_site_file():
    q = QualityProcessor(MaintenanceConfig(active=False))
    q.set_maintenance(True, "dust-2")
    assert flags(q.apply(reading(0, "dust-1", pm10=1.0))) == {"pm10": Flag.N}
    assert flags(q.apply(reading(0, "dust-2", pm10=1.0))) == {"pm10": Flag.M}
    q.set_maintenance(None, "dust-2")
    assert flags(q.apply(reading(1, "dust-2", pm10=1.0))) == {"pm10": Flag.N}
    q.set_maintenance(True)  # site-wide
    assert flags(q.apply(reading(2, "dust-1", pm10=1.0))) == {"pm10": Flag.M}


def test_planned_window_is_in_site_local_time():
    cfg = MaintenanceConfig.model_validate({"windows": [
        {"start": "2026-03-02T08:00:00", "end": "2026-03-02T12:00:00", "devices": ["stack-*"],
         "channels": ["so2"], "reason": "annual calibration"}]})
    q = QualityProcessor(cfg, tz="Asia/Shanghai")  # 08:00-12:00 Shanghai = 00:00-04:00 UTC
    assert flags(q.apply(reading(ms("2026-03-01T23:59:59"), "stack-1", so2=1.0))) == {"so2": Flag.N}
    r = q.apply(reading(ms("2026-03-02T00:00:00"), "stack-1", so2=1.0, o2=1.0))
    assert flags(r) == {"so2": Flag.M, "o2": Flag.N}
    assert r.values["so2"].note == "annual calibration"
    assert flags(q.apply(reading(ms("2026-03-02T03:59:59"), "stack-1", so2=1.0))) == {"so2": Flag.M}
    assert flags(q.apply(reading(ms("2026-03-02T04:00:00"), "stack-1", so2=1.0))) == {"so2": Flag.N}
    assert flags(q.apply(reading(ms("2026-03-02T01:00:00"), "dust-1", so2=1.0))) == {"so2": Flag.N}


def test_daily_window_across_midnight():
    cfg = MaintenanceConfig.model_validate({"windows": [{"daily": "23:30-00:30"}]})
    q = QualityProcessor(cfg, tz="Asia/Shanghai")  # 23:30 local = 15:30 UTC
    assert flags(q.apply(reading(ms("2026-03-02T15:29:59"), pm10=1.0))) == {"pm10": Flag.N}
    assert flags(q.apply(reading(ms("2026-03-02T15:30:00"), pm10=1.0))) == {"pm10": Flag.M}
    assert flags(q.apply(reading(ms("2026-03-02T16:29:59"), pm10=1.0))) == {"pm10": Flag.M}
    assert flags(q.apply(reading(ms("2026-03-02T16:30:00"), pm10=1.0))) == {"pm10": Flag.N}


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"start": "2026-03-02T08:00:00"}, "needs both start and end"),
        ({"start": "2026-03-02T08:00:00", "end": "2026-03-02T07:00:00"}, "end must be after start"),
        ({"daily": "25:00-01:00"}, "hours 00..24"),
        ({"daily": "8-9"}, "HH:MM-HH:MM"),
        ({}, "either start and end, or daily"),
    ],
)
def test_maintenance_window_errors(window, message):
    with pytest.raises(ValidationError, match=message):
        MaintenanceConfig.model_validate({"windows": [window]})


def test_stuck_value_flagged_from_the_nth_identical_value():
    q = QualityProcessor(stuck=[StuckRule(channels=["pm*"], count=3)])
    got = [flags(q.apply(reading(i * 10_000, pm10=v, tsp=v)))["pm10"] for i, v in enumerate([5, 5, 5, 5, 6, 6])]
    assert got == [Flag.N, Flag.N, Flag.D, Flag.D, Flag.N, Flag.N]
    # tsp matches no rule: a repeated value is fine there
    assert flags(q.apply(reading(70_000, pm10=6, tsp=5)))["tsp"] is Flag.N


def test_stuck_needs_both_count_and_duration_when_both_given():
    q = QualityProcessor(stuck=[StuckRule(channels=["so2"], count=3, duration_s=60, flag=Flag.C)])
    seq = [(0, 7.0), (10_000, 7.0), (20_000, 7.0), (59_000, 7.0), (60_000, 7.0)]
    got = [flags(q.apply(reading(ts, "stack-1", so2=v)))["so2"] for ts, v in seq]
    assert got == [Flag.N, Flag.N, Flag.N, Flag.N, Flag.C]  # 3 values at 20 s, but 60 s only at the 5th


def test_stuck_tolerance_and_values_without_number():
    q = QualityProcessor(stuck=[StuckRule(channels=["o2"], count=3, tolerance=0.05)])
    seq: list[float | ChannelValue] = [20.90, ChannelValue(None, "%", Flag.B), 20.93, 20.88, 21.0]
    got = [flags(q.apply(reading(i, "stack-1", o2=v if isinstance(v, ChannelValue) else ChannelValue(v, "%"))))
           for i, v in enumerate(seq)]
    # the B value neither extends nor breaks the run; 20.93 and 20.88 are within 0.05 of 20.90
    assert [f["o2"] for f in got] == [Flag.N, Flag.B, Flag.N, Flag.D, Flag.N]


def test_stuck_rule_needs_a_condition():
    with pytest.raises(ValidationError, match="count and/or duration_s"):
        StuckRule(channels=["x"])
