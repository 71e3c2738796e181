"""Builders shared by the alarm tests."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import TypeAdapter

from gateway.alarms.rules import Rule
from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.processing.windows import ChannelAggregate, WindowAggregate

RULE: TypeAdapter[Rule] = TypeAdapter(Rule)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


T = ms("2026-03-02T00:00:00")  # 08:00 in Shanghai


def rule(**kw: object) -> Rule:
    data = {"id": "r", "type": "threshold", **kw}
    return RULE.validate_python(data)


def reading(ts: int, device: str = "dust-1", ok: bool = True, kind: str = "dust", **values: object) -> DeviceReading:
    vals = {}
    for ch, v in values.items():
        if isinstance(v, ChannelValue):
            vals[ch] = v
        elif isinstance(v, tuple):
            vals[ch] = ChannelValue(v[0], v[1], v[2] if len(v) > 2 else Flag.N)
        else:
            vals[ch] = ChannelValue(v, "ug/m3")  # type: ignore[arg-type]
    return DeviceReading("site", device, kind, ts, vals, ok)


def agg(start: int, window: str, device: str = "dust-1", kind: str = "dust", partial: bool = False,
        length_ms: int | None = None, **channels: object) -> WindowAggregate:
    lengths = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "20m": 1_200_000, "1h": 3_600_000, "1d": 86_400_000}
    chans = {}
    for ch, v in channels.items():
        value, unit, flag = (*v, Flag.N)[:3] if isinstance(v, tuple) else (v, "ug/m3", Flag.N)
        chans[ch] = ChannelAggregate(unit, value, value, value, 15, 15 if flag is Flag.N else 0, flag)
    return WindowAggregate("site", device, kind, window, start, start + (length_ms or lengths[window]), 15, partial,
                           chans)
