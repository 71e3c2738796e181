"""What the durable log holds: a tagged union of record types, one class per kind, in one id sequence.

    LogRecord (id, ts, site)
      ReadingRecord    kind 0  a device's poll (DeviceReading) and its per-device sequence number
      StoredReading    kind 0  the same poll as its database row, undecoded (only for a reader that asks for rows)
      PayloadRecord    kinds 1.. one payload each; each kind's codec is registered by the module that owns the
                       payload type, so the store imports no domain module:
        aggregate  1   gateway.processing.records (WindowAggregate)
        alarm      2   gateway.alarms.records (AlarmEntry: an AlarmEvent and the alarm's state after it)
        actuation  3   here (a JSON object: the Modbus write and its outcome)
        command    4   here (a JSON object: an operator's command)
        audit      5   gateway.audit.trail (who asked what, from where, and the result)
        snapshot   6   gateway.alarms.snapshots (an alarm event's camera picture, or why there is none)
      UnknownRecord    a row of a kind no loaded module registered (kept, never dropped; its text as payload)

Consumers dispatch on the record's type (`isinstance(rec, ReadingRecord)`); `kind` names the type for logs and
queries. The codes are the on-disk format (column `kind`): they never change meaning.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from gateway.core.model import DeviceReading

P = TypeVar("P")

READING = "reading"
AGGREGATE = "aggregate"
ALARM = "alarm"
ACTUATION = "actuation"
COMMAND = "command"
AUDIT = "audit"
SNAPSHOT = "snapshot"
KIND_CODES: dict[str, int] = {READING: 0, AGGREGATE: 1, ALARM: 2, ACTUATION: 3, COMMAND: 4, AUDIT: 5, SNAPSHOT: 6}
# kinds the disk cap copies forward instead of dropping them with the readings of their time (the audit trail)
KEPT_KINDS: tuple[str, ...] = (AUDIT,)

# (site, device, kind, channel names, units): a layout stored once in the schemas table
SchemaKey = tuple[str, str, str, tuple[str, ...], tuple[str, ...]]


@dataclass(slots=True)
class LogRecord:
    """A committed (or buffered) record: its position in the log, its row time (epoch ms) and its site."""

    id: int
    ts: int
    site: str
    kind: ClassVar[str] = ""


@dataclass(slots=True)
class ReadingRecord(LogRecord):
    """One poll of one device; `seq` counts that device's readings (gap and duplicate detection downstream)."""

    seq: int
    reading: DeviceReading
    kind: ClassVar[str] = READING


@dataclass(slots=True)
class StoredReading(LogRecord):
    """A reading read back from the database as its row: the layout (a gateway.store.codec.Schema: site, device,
    kind, channels, units), one flag letter per channel, the values as stored (a JSON list whose floats are their
    repr()) and the extra (error, notes). Given only to a reader that asks for rows (`DurableLog.read(rows=True)`):
    the InfluxDB and MQTT sinks write the usual poll's line and message from the stored texts, so a backlog is
    drained without making a ChannelValue per value; `gateway.store.codec.decode_stored` makes the ReadingRecord
    when one is needed."""

    seq: int
    layout: Any
    flags: str
    vals: str
    extra: str | None
    kind: ClassVar[str] = READING


@dataclass(slots=True)
class PayloadRecord(LogRecord, Generic[P]):
    """A record the stages write back to the log (not a reading)."""

    payload: P


@dataclass(slots=True)
class ActuationRecord(PayloadRecord[dict[str, Any]]):
    """A Modbus write an alarm or an operator caused, and its outcome: {site, command, ok, error}."""

    kind: ClassVar[str] = ACTUATION


@dataclass(slots=True)
class CommandRecord(PayloadRecord[dict[str, Any]]):
    """An operator's command (acknowledge, maintenance switch, actuator override) as it was accepted."""

    kind: ClassVar[str] = COMMAND


@dataclass(slots=True)
class UnknownRecord(PayloadRecord[str]):
    """A row whose kind no loaded module registered: its stored text, so nothing is silently lost."""

    kind: ClassVar[str] = "unknown"


@dataclass(slots=True, frozen=True)
class Encoded:
    """A payload as the columns of its row: `layout` (or None) goes to the schemas table once, `flags` and `vals`
    are text, `ts` the row time (an aggregate's is its end, whatever the caller said)."""

    ts: int
    flags: str
    vals: str
    layout: SchemaKey | None = None


@dataclass(slots=True, frozen=True)
class RecordType:
    """How one kind of payload record is stored: its code, its class and its codec (pure functions)."""

    name: str
    record: type[PayloadRecord[Any]]
    encode: Callable[[Any, int], Encoded]  # (payload, ts) -> columns
    decode: Callable[[SchemaKey | None, int, str, str], Any]  # (layout, ts, flags, vals) -> payload
    site_of: Callable[[Any], str]

    @property
    def code(self) -> int:
        return KIND_CODES[self.name]


def value_count(records: Iterable[LogRecord]) -> int:
    """How many channel values the readings among `records` carry (what sinks count as delivered values)."""
    return sum(len(r.reading.values) if isinstance(r, ReadingRecord) else len(r.flags)
               for r in records if isinstance(r, (ReadingRecord, StoredReading)))


_BY_NAME: dict[str, RecordType] = {}
_BY_CODE: dict[int, RecordType] = {}


def register(rt: RecordType) -> None:
    """Called by the module that owns a payload type, when it is imported."""
    if rt.name not in KIND_CODES or rt.name == READING:
        raise ValueError(f"record kind {rt.name!r} has no code in gateway.store.records.KIND_CODES")
    _BY_NAME[rt.name] = rt
    _BY_CODE[rt.code] = rt


def record_type(name: str) -> RecordType:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown record kind {name!r} (registered: {', '.join(sorted(_BY_NAME))})") from None


def record_type_of(code: int) -> RecordType | None:
    return _BY_CODE.get(code)


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _json_type(name: str, record: type[PayloadRecord[Any]]) -> RecordType:
    return RecordType(name, record, lambda body, ts: Encoded(ts, "", _dumps(body)),
                      lambda layout, ts, flags, vals: json.loads(vals),
                      lambda body: str(body.get("site", "")) if isinstance(body, dict) else "")


register(_json_type(ACTUATION, ActuationRecord))
register(_json_type(COMMAND, CommandRecord))
