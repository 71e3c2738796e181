"""2011 real-time data from the raw readings in the log: one packet per RtdInterval, carrying the latest value of
every mapped code in that interval.

Windows are (B - interval, B] on the site's local clock and the packet's DataTime is B. A window is complete
once the log shows a reading at or after B + grace (polls are stamped when they start and committed when they
end, so a slow device's reading can land a little after a faster one's). Readings for a window that is already
complete are late: counted, not sent. Everything here is a function of the log order, so the same records fed
again after a restart give the same packets.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.hj212.codec import Cp, Group
from gateway.hj212.routes import Route, convert, impossible, number
from gateway.hj212.sources import Outgoing
from gateway.hj212.timefmt import time_text, utc_offset_ms
from gateway.store.records import LogRecord, ReadingRecord

log = logging.getLogger("plume.hj212")


def window_end(ts: int, interval_ms: int, tz: ZoneInfo) -> int:
    """B of the window (B - interval, B] holding `ts`, aligned to the local clock."""
    off = utc_offset_ms(ts, tz)
    local = ts + off
    return -(-local // interval_ms) * interval_ms - off


@dataclass(slots=True)
class _Window:
    end: int
    first_id: int
    values: dict[str, tuple[int, ChannelValue | None, ChannelValue | None]] = field(default_factory=dict)


class RealtimeSource:
    """Builds 2011 packets. `already_sent`: DataTime of the last 2011 the platform acknowledged (skip up to it);
    `not_before`: windows ending before this are too old to back-fill."""

    cn = "2011"

    def __init__(self, routes: list[Route], *, interval_s: int, grace_s: float, tz: ZoneInfo, flags: bool = True,
                 already_sent: int | None = None, not_before: int | None = None):
        self.routes = routes
        self.by_device: dict[str, list[Route]] = {}
        for r in routes:
            self.by_device.setdefault(r.device, []).append(r)
        self.interval_ms = interval_s * 1000
        self.grace_ms = int(grace_s * 1000)
        self.tz = tz
        self.flags = flags
        self.closed_through = already_sent if already_sent is not None else -1
        self.not_before = not_before
        self._open: dict[int, _Window] = {}
        self._max_ts = -1
        self.late = 0
        self.expired = 0
        self._warned: set[str] = set()

    def set_interval(self, interval_s: int) -> None:
        """A new RtdInterval (1062) applies to windows not opened yet."""
        self.interval_ms = interval_s * 1000

    def feed(self, rec: LogRecord) -> list[Outgoing]:
        if isinstance(rec, ReadingRecord):  # every record's time moves the windows on
            self._take(rec.id, rec.reading)
        self._max_ts = max(self._max_ts, rec.ts)
        out: list[Outgoing] = []
        for end in sorted(self._open):
            if end + self.grace_ms > self._max_ts:
                break
            w = self._open.pop(end)
            self.closed_through = end
            if w.values:
                out.append(Outgoing(self.cn, end, self._cp(w), w.first_id))
        return out

    def _take(self, rid: int, r: DeviceReading) -> None:
        """Keep the newest value of each routed channel of this reading in the window it falls in."""
        routes = self.by_device.get(r.device)
        if routes:
            end = window_end(r.ts, self.interval_ms, self.tz)
            if end <= self.closed_through:
                self.late += 1
            elif self.not_before is not None and end < self.not_before:
                self.expired += 1
            else:
                w = self._open.get(end)
                if w is None:
                    w = self._open[end] = _Window(end, rid)
                for route in routes:
                    cv = r.values.get(route.channel)
                    zs = r.values.get(route.zs_channel) if route.zs_channel else None
                    if cv is None and zs is None:
                        continue
                    prev = w.values.get(route.code)
                    if prev is None or prev[0] <= r.ts:
                        w.values[route.code] = (r.ts, cv, zs)

    def low_water(self) -> int | None:
        return min((w.first_id for w in self._open.values()), default=None)

    def _cp(self, w: _Window) -> Cp:
        groups: list[Group] = [(("DataTime", time_text(w.end, self.tz)),)]
        for route in self.routes:
            entry = w.values.get(route.code)
            if entry is None:  # no reading of its device in this interval (not polled yet, silent): say so
                if self.flags:
                    groups.append(((f"{route.code}-Flag", Flag.B.value),))
                continue
            _, cv, zs = entry
            fields: list[tuple[str, str]] = []
            flag = cv.flag if cv is not None else Flag.N
            if cv is not None:
                text, flag = self._value(route, route.channel, cv)
                if text is not None:
                    fields.append((f"{route.code}-Rtd", text))
            if zs is not None:
                ztext, zflag = self._value(route, route.zs_channel or "", zs)
                if ztext is not None:
                    fields.append((f"{route.code}-ZsRtd", ztext))
                if cv is None:
                    flag = zflag
            if self.flags and cv is not None:
                fields.append((f"{route.code}-Flag", flag.value))
            if fields:
                groups.append(tuple(fields))
        return Cp(tuple(groups))

    def _value(self, route: Route, channel: str, cv: ChannelValue) -> tuple[str | None, Flag]:
        """The value as the platform wants it, or None (and flag D) when there is no usable number."""
        v = cv.value
        if v is None:
            return None, cv.flag
        if isinstance(v, str) or not math.isfinite(v):
            self._warn(f"{route.code}: channel {channel} is not a finite number ({v!r}); sent as flag D")
            return None, Flag.D
        conv = convert(v if type(v) is int else float(v), cv.unit, route.unit)  # an exact integer stays one
        if conv is None:
            self._warn(f"{route.code}: cannot convert {channel} from {cv.unit} to {route.unit}; sent as flag D")
            return None, Flag.D
        if impossible(route.code, conv):
            self._warn(f"{route.code}: channel {channel} is below zero ({v!r}); sent as flag D")
            return None, Flag.D
        return number(conv, route.decimals), cv.flag

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("hj212: %s", message)
