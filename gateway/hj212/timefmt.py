"""HJ 212 time stamps: QN (YYYYMMDDhhmmsszzz) and DataTime/SystemTime/BeginTime (YYYYMMDDhhmmss).

Inside Plume time is UTC epoch milliseconds; on the wire it is the site's local clock (site.timezone). These are
the only conversions between the two.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo


def _local(ms: int, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)


def qn_text(ms: int, tz: tzinfo) -> str:
    """QN for an instant: local time to the millisecond."""
    return _local(ms, tz).strftime("%Y%m%d%H%M%S") + f"{ms % 1000:03d}"


def time_text(ms: int, tz: tzinfo) -> str:
    """DataTime / SystemTime for an instant: local time to the second."""
    return _local(ms, tz).strftime("%Y%m%d%H%M%S")


def parse_time(text: str, tz: tzinfo) -> int:
    """Epoch ms of a 14-digit local time; ValueError names what is wrong."""
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        raise ValueError(f"{text!r} is not YYYYMMDDhhmmss")
    try:
        dt = datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        raise ValueError(f"{text!r} is not a valid date and time") from None
    return int(dt.replace(tzinfo=tz).timestamp() * 1000)


def parse_qn(text: str, tz: tzinfo) -> int:
    """Epoch ms of a 17-digit QN."""
    if len(text) != 17 or not text.isascii() or not text.isdigit():
        raise ValueError(f"{text!r} is not YYYYMMDDhhmmsszzz")
    return parse_time(text[:14], tz) + int(text[14:])


def valid_clock(text: str) -> bool:
    """True when the 14 leading digits are a real calendar date and time."""
    try:
        datetime.strptime(text[:14], "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


def utc_offset_ms(ms: int, tz: tzinfo) -> int:
    """Offset of the local clock from UTC at that instant (for aligning windows to local time)."""
    off = _local(ms, tz).utcoffset() or timedelta(0)
    return int(off.total_seconds() * 1000)
