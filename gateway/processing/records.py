"""Closed windows in the durable log: the `aggregate` record type and its row codec (pure; registered with the
store when this module is imported), and how to pick windows out of the records the log returns.

A row stores the channel names and units as a schema (like a reading's), the flags one letter per channel, and the
numbers as JSON arrays `[window, start, expected, partial, min[], avg[], max[], n[], valid[], cou[] | null,
cou_unit[] | null]`; its `ts` is the window's end (when it became true), so row times stay close to log order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from gateway.core.model import Flag
from gateway.processing.windows import ChannelAggregate, WindowAggregate
from gateway.store.records import AGGREGATE, Encoded, LogRecord, PayloadRecord, RecordType, SchemaKey, register

_FLAGS: dict[str, Flag] = {f.value: f for f in Flag}
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(slots=True)
class AggregateRecord(PayloadRecord[WindowAggregate]):
    """A closed window of one device (row ts = the window's end)."""

    kind: ClassVar[str] = AGGREGATE


def encode_aggregate(agg: WindowAggregate, ts: int) -> Encoded:
    chans = list(agg.channels.values())
    flags = "".join([a.flag.value for a in chans])
    cous = [a.cou for a in chans]
    has_cou = any(c is not None for c in cous)
    vals = _dumps([agg.window, agg.start, agg.expected, agg.partial, [a.min for a in chans], [a.avg for a in chans],
                   [a.max for a in chans], [a.n for a in chans], [a.valid for a in chans],
                   cous if has_cou else None, [a.cou_unit for a in chans] if has_cou else None])
    layout = (agg.site, agg.device, agg.kind, tuple(agg.channels), tuple(a.unit for a in chans))
    return Encoded(agg.end, flags, vals, layout)


def decode_aggregate(layout: SchemaKey | None, end: int, flags: str, vals: str) -> WindowAggregate:
    assert layout is not None, "an aggregate row has a schema"
    site, device, kind, names, units = layout
    window, start, expected, partial, mins, avgs, maxs, ns, valids, cous, cou_units = json.loads(vals)
    channels = {
        ch: ChannelAggregate(units[i], mins[i], avgs[i], maxs[i], ns[i], valids[i], _FLAGS[flags[i]],
                             cous[i] if cous else None, cou_units[i] if cou_units else "")
        for i, ch in enumerate(names)
    }
    return WindowAggregate(site, device, kind, window, start, end, expected, partial, channels)


register(RecordType(AGGREGATE, AggregateRecord, encode_aggregate, decode_aggregate, lambda agg: agg.site))


def aggregate_ts_range(start_from: int, start_to: int | None = None) -> tuple[int, int | None]:
    """The row times (window ends) to ask the log for, to find the windows starting in [start_from, start_to]: a
    day is at most 25 hours."""
    return start_from, None if start_to is None else start_to + 25 * 3_600_000


def select_aggregates(records: Iterable[LogRecord], window: str | None, start_from: int,
                      start_to: int | None = None) -> list[WindowAggregate]:
    """The aggregates among `records` of `window` (None: all) with start_from <= start (<= start_to), in order."""
    found: list[WindowAggregate] = []
    for r in records:
        if isinstance(r, AggregateRecord):
            a = r.payload
            if (window is None or a.window == window) and a.start >= start_from and (
                    start_to is None or a.start <= start_to):
                found.append(a)
    return found
