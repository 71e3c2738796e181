"""What the uplink sends is built by record sources: each turns log records into HJ 212 data packets of one
kind (2011 from raw readings here; 2051/2061/2031 from the processing stage's aggregates), in DataTime order.

The uplink owns one cursor in the durable log and feeds every record to every source. A source says which log
id its unsent packets still depend on (`low_water`), so the cursor never passes data that the platform has not
acknowledged; after a restart, records are fed again from the cursor and `already_sent` (the DataTime of the last
packet of that kind the platform acknowledged, kept in the uplink's state file) keeps a source from rebuilding a
packet that was acknowledged before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.core.model import Flag
from gateway.hj212.codec import Cp
from gateway.processing.records import AggregateRecord, aggregate_ts_range, select_aggregates
from gateway.store.records import AGGREGATE, LogRecord


@dataclass(slots=True)
class Outgoing:
    """A data packet waiting to be sent: its command, DataTime (UTC ms), CP, and the lowest log id it uses."""

    cn: str
    data_time: int
    cp: Cp
    first_id: int


class RecordSource(Protocol):
    """Builds one kind of data packet from log records."""

    cn: str

    def feed(self, rec: LogRecord) -> list[Outgoing]:
        """Take one record (in log order); return the packets it completed, oldest first."""
        ...

    def low_water(self) -> int | None:
        """The lowest log id still held by packets not yet returned by `feed` (None: holds nothing)."""
        ...


# --- what the processing stage has to provide for 2051 / 2061 / 2031 --------------------------------------------

class ChannelAggregate(Protocol):
    """One channel over one window (gateway.processing.windows.ChannelAggregate has this shape)."""

    unit: str
    min: float | None
    avg: float | None
    max: float | None
    flag: Flag
    cou: float | None


class Aggregate(Protocol):
    """One closed window of one device: `start`/`end` UTC ms, `window` like "10m", "1h", "1d"."""

    device: str
    window: str
    start: int
    end: int

    @property
    def channels(self) -> Mapping[str, ChannelAggregate]: ...


class AggregateFeed(Protocol):
    """The plug the processing stage fills: aggregates carried by a log record, and history by time range."""

    def aggregates(self, rec: LogRecord) -> Sequence[Aggregate]:
        """Aggregates closed by / stored in this log record (empty for most records)."""
        ...

    async def history(self, window: str, begin_ms: int, end_ms: int) -> Sequence[Aggregate]:
        """Closed aggregates of `window` with begin_ms <= start <= end_ms, oldest first (2051/2061/2031
        history requests)."""
        ...


class LogAggregateFeed:
    """The AggregateFeed of `plume run`: the processing stage writes every closed window to the durable log as an
    `aggregate` record; the uplink reads them there (live, with its cursor) and asks the log for history.
    `log` is a callable giving the gateway's open log (the feed is built before the log is opened)."""

    def __init__(self, log: Callable[[], Any]):
        self._log = log

    def aggregates(self, rec: LogRecord) -> Sequence[Aggregate]:
        if isinstance(rec, AggregateRecord):
            return [rec.payload]
        return ()

    async def history(self, window: str, begin_ms: int, end_ms: int) -> Sequence[Aggregate]:
        lg = self._log()
        if lg is None:
            return []
        found: Sequence[Aggregate] = select_aggregates(
            await lg.records_of_kind(AGGREGATE, *aggregate_ts_range(begin_ms, end_ms)), window, begin_ms, end_ms)
        return sorted(found, key=lambda a: (a.start, a.device))
