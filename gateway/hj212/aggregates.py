"""2051 / 2061 / 2031 (minute, hour, day data) from the processing stage's window aggregates.

One packet per window start, DataTime = the start (HJ 212: start of the period), combining every mapped code:
`code-Min,code-Avg,code-Max[,code-Cou][,code-ZsMin,code-ZsAvg,code-ZsMax],code-Flag`. A start's packet is built
when every device feeding a code has delivered its aggregate of that window, or as soon as any aggregate ending
later comes through (the processing stage closes the windows of all devices in end order, so nothing more can
come for that start; a silent device's codes are then left out). The aggregates come through an
`AggregateFeed` (see sources.py) that the processing stage provides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from gateway.hj212.codec import Cp, Group
from gateway.hj212.routes import Route, convert, impossible, number
from gateway.hj212.sources import Aggregate, AggregateFeed, ChannelAggregate, Outgoing
from gateway.hj212.timefmt import time_text
from gateway.store.records import LogRecord

WINDOW_CN = {"2051": "minute", "2061": "1h", "2031": "1d"}


@dataclass(slots=True)
class _Pending:
    start: int
    end: int
    first_id: int
    by_device: dict[str, Aggregate] = field(default_factory=dict)


def aggregate_cp(start: int, aggs: Iterable[Aggregate], routes: Sequence[Route], tz: ZoneInfo, flags: bool) -> Cp:
    """The CP of one window start from the aggregates of the devices that feed it."""
    by_device = {a.device: a for a in aggs}
    groups: list[Group] = [(("DataTime", time_text(start, tz)),)]
    for route in routes:
        agg = by_device.get(route.device)
        if agg is None:
            continue
        ch = agg.channels.get(route.channel)
        zs = agg.channels.get(route.zs_channel) if route.zs_channel else None
        fields: list[tuple[str, str]] = []
        flag = ch.flag.value if ch is not None else ""
        for prefix, a in (("", ch), ("Zs", zs)):
            if a is None:
                continue
            stats = _stats(route, prefix, a, cou=not prefix)
            if any(impossible(route.code, float(v)) for _, v in stats):
                flag = "D"  # below zero where no value can be: no measurement (a strict platform refuses it)
                continue
            fields += stats
        if flags and ch is not None:
            fields.append((f"{route.code}-Flag", flag))
        if fields:
            groups.append(tuple(fields))
    return Cp(tuple(groups))


def _stats(route: Route, prefix: str, a: ChannelAggregate, cou: bool = True) -> list[tuple[str, str]]:
    out = []
    for name, v in (("Min", a.min), ("Avg", a.avg), ("Max", a.max)):
        if v is not None:
            conv = convert(v, a.unit, route.unit)
            if conv is not None:
                out.append((f"{route.code}-{prefix}{name}", number(conv, route.decimals)))
    if cou and a.cou is not None:
        out.append((f"{route.code}-Cou", number(a.cou, route.decimals)))
    return out


class AggregateSources:
    """The record source for every aggregate kind of one uplink: asks the feed once per record and hands the
    aggregates to each kind (a feed need not be idempotent)."""

    cn = "aggregates"

    def __init__(self, feed: AggregateFeed, kinds: Sequence[AggregateSource]):
        self.feed_ = feed
        self.kinds = list(kinds)

    def feed(self, rec: LogRecord) -> list[Outgoing]:
        aggs = self.feed_.aggregates(rec)
        out: list[Outgoing] = []
        for k in self.kinds:
            out += k.take(aggs, rec.id)
        return out

    def low_water(self) -> int | None:
        return min((w for w in (k.low_water() for k in self.kinds) if w is not None), default=None)


class AggregateSource:
    """Builds one of 2051/2061/2031 from the aggregates of `window` ("10m", "1h", "1d")."""

    def __init__(self, cn: str, window: str, routes: list[Route], feed: AggregateFeed, *, tz: ZoneInfo,
                 flags: bool = True, already_sent: int | None = None, not_before: int | None = None):
        self.cn = cn
        self.window = window
        self.routes = routes
        self.feed_ = feed
        self.devices = {r.device for r in routes}
        self.tz = tz
        self.flags = flags
        self.closed_through = already_sent if already_sent is not None else -1
        self.not_before = not_before
        self._pending: dict[int, _Pending] = {}
        self._latest_end = -1

    def take(self, aggs: Sequence[Aggregate], rec_id: int) -> list[Outgoing]:
        """The aggregates one log record brought; returns the packets they completed, oldest first."""
        for a in aggs:
            self._latest_end = max(self._latest_end, a.end)
            if a.window != self.window or a.device not in self.devices:
                continue
            if a.start <= self.closed_through or (self.not_before is not None and a.start < self.not_before):
                continue
            p = self._pending.get(a.start)
            if p is None:
                p = self._pending[a.start] = _Pending(a.start, a.end, rec_id)
            p.by_device[a.device] = a
        out: list[Outgoing] = []
        for start in sorted(self._pending):
            p = self._pending[start]
            if not set(p.by_device) >= self.devices and self._latest_end <= p.end:
                break  # keep DataTime order: nothing newer goes before this one
            del self._pending[start]
            self.closed_through = start
            out.append(Outgoing(self.cn, start, aggregate_cp(start, p.by_device.values(), self.routes, self.tz,
                                                             self.flags), p.first_id))
        return out

    def low_water(self) -> int | None:
        return min((p.first_id for p in self._pending.values()), default=None)

    async def history(self, begin_ms: int, end_ms: int) -> list[Cp]:
        """CPs of every window start in [begin_ms, end_ms] (a platform's history request)."""
        by_start: dict[int, list[Aggregate]] = {}
        for a in await self.feed_.history(self.window, begin_ms, end_ms):
            if a.device in self.devices:
                by_start.setdefault(a.start, []).append(a)
        return [aggregate_cp(s, aggs, self.routes, self.tz, self.flags) for s, aggs in sorted(by_start.items())]
