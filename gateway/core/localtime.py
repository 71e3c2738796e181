"""The site's local clock: window alignment and local days, DST-safe.

Regulators count by local wall periods (a "day" starts at local midnight; an hour at the local full hour). Inside,
time stays UTC epoch ms; this module maps an instant to the local period containing it:
- periods up to an hour are floored on the local wall clock using the instant's own UTC offset, so in a zone with a
  +05:45 offset hours start at :15 UTC, and on a DST fall-back night the repeated 01:00-02:00 is two distinct hours
  (each one real hour long), while the skipped hour of a spring-forward night simply never occurs;
- a day runs from local midnight to the next local midnight: 23, 24 or 25 real hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
_PERIOD = re.compile(r"^(\d+)(m|h|d)$")
ALLOWED_MINUTES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)


@dataclass(frozen=True, slots=True)
class Period:
    """A window length: N minutes dividing an hour, one hour, or one local day (`ms` None)."""

    name: str
    ms: int | None

    @property
    def is_day(self) -> bool:
        return self.ms is None

    @property
    def minutes(self) -> int:
        return 1440 if self.ms is None else self.ms // MINUTE_MS


@lru_cache(maxsize=64)
def parse_period(name: str) -> Period:
    """`1m`, `5m`, `15m`, `20m`, `1h`, `1d`... (minutes must divide an hour, so windows nest)."""
    m = _PERIOD.match(name.strip())
    if not m:
        raise ValueError(f"window {name!r}: use minutes, 1h or 1d (e.g. 1m, 5m, 15m, 1h, 1d)")
    n, u = int(m.group(1)), m.group(2)
    if u == "m":
        if n == 60:
            return Period("1h", HOUR_MS)
        if n not in ALLOWED_MINUTES:
            raise ValueError(f"window {name!r}: minutes must divide an hour ({', '.join(map(str, ALLOWED_MINUTES))})")
        return Period(f"{n}m", n * MINUTE_MS)
    if u == "h":
        if n != 1:
            raise ValueError(f"window {name!r}: only 1h (longer windows: 1d)")
        return Period("1h", HOUR_MS)
    if n != 1:
        raise ValueError(f"window {name!r}: only 1d")
    return Period("1d", None)


@lru_cache(maxsize=16)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local(ts: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts / 1000, UTC).astimezone(tz)


def offset_ms(ts: int, tz: ZoneInfo) -> int:
    off = local(ts, tz).utcoffset()
    return int(off.total_seconds() * 1000) if off is not None else 0


def _midnight_ms(d: date, tz: ZoneInfo) -> int:
    return int(datetime.combine(d, time(0), tzinfo=tz).timestamp() * 1000)


def day_start(ts: int, tz: ZoneInfo) -> int:
    """UTC ms of the local midnight that starts the local day containing `ts`."""
    return _midnight_ms(local(ts, tz).date(), tz)


def day_bounds(ts: int, tz: ZoneInfo) -> tuple[int, int]:
    d = local(ts, tz).date()
    return _midnight_ms(d, tz), _midnight_ms(d + timedelta(days=1), tz)


def local_date(ts: int, tz: ZoneInfo) -> date:
    return local(ts, tz).date()


def window_bounds(ts: int, period: Period, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) in UTC ms of the local window of `period` that contains `ts`."""
    if period.ms is None:
        return day_bounds(ts, tz)
    off = offset_ms(ts, tz)
    start = (ts + off) // period.ms * period.ms - off
    return start, start + period.ms


def minute_of_day(ts: int, tz: ZoneInfo) -> int:
    t = local(ts, tz)
    return t.hour * 60 + t.minute


def parse_daily(text: str) -> tuple[int, int]:
    """`"06:00-22:00"` -> (360, 1320) minutes of the local day; an end before the start wraps past midnight."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not m:
        raise ValueError(f"{text!r}: use HH:MM-HH:MM (local time), e.g. 22:00-06:00")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if not (0 <= h1 <= 24 and 0 <= h2 <= 24 and m1 < 60 and m2 < 60) or h1 * 60 + m1 > 1440 or h2 * 60 + m2 > 1440:
        raise ValueError(f"{text!r}: hours 00..24, minutes 00..59")
    a, b = h1 * 60 + m1, h2 * 60 + m2
    if a == b:
        raise ValueError(f"{text!r}: start and end are the same time")
    return a, b


def in_daily(minute: int, span: tuple[int, int]) -> bool:
    """Is the local minute-of-day inside [start, end) of a daily span (wrapping past midnight)?"""
    a, b = span
    return a <= minute < b if a < b else (minute >= a or minute < b)


def utc_offset_label(ts: int, tz: ZoneInfo) -> str:
    """`UTC+08:00`, `UTC+05:45`, `UTC-05:00`, or `UTC`: the zone mark on every time a person reads."""
    off = offset_ms(ts, tz) // 60_000
    if off == 0:
        return "UTC"
    sign = "+" if off > 0 else "-"
    return f"UTC{sign}{abs(off) // 60:02d}:{abs(off) % 60:02d}"


def clock_time(ts: int, tz: ZoneInfo) -> str:
    """`21:42:57`: the local wall clock time (for a table whose header carries the zone)."""
    return local(ts, tz).strftime("%H:%M:%S")


def local_stamp(ts: int, tz: ZoneInfo, seconds: bool = False) -> str:
    """`2026-12-02 21:42 UTC+08:00`: a local time with its zone, for a message read on its own."""
    return local(ts, tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " " + utc_offset_label(ts, tz)
