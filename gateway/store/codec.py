"""How a DeviceReading becomes a row of the durable log, and back.

A device sends the same channels with the same units in every poll, so that layout (site, device, kind, channel
names, units) is stored once as a *schema* and each row carries only the flags (one letter per channel), the values
as a JSON list, and, when there is any, the error and per-channel notes. That is ~100 bytes for a 10-channel poll
instead of ~400, which is what lets weeks of history fit the disk cap of an SD card.

Besides readings the log holds the records the processing and alarm stages write back, in the same id sequence
(column `kind`, 0 for readings):
- `aggregate` (1): a closed window (WindowAggregate), stored like a reading: the channel names and units as a
  schema, the flags one letter per channel, and the numbers as JSON arrays
  `[window, start, expected, partial, min[], avg[], max[], n[], valid[], cou[] | null, cou_unit[] | null]`;
  its row `ts` is the window's end (when it became true), so row times stay close to log order.
- `alarm` (2): an alarm lifecycle event (AlarmEvent as JSON) plus the alarm's current state for the retained
  MQTT topic; `flags` "K" marks a checkpoint (events of a long alarm written again so that retention keeps them).
- `actuation` (3): a Modbus write (WriteCommand) and its outcome, as JSON.
- `command` (4): an operator's command (acknowledge, maintenance switch, actuator override), as JSON.
Records other than readings carry an envelope DeviceReading (device "", no values, kind = the record kind, ts =
the row ts), so code that only knows readings sees an empty reading and skips it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gateway.core.model import ChannelValue, DeviceReading, Flag

SchemaKey = tuple[str, str, str, tuple[str, ...], tuple[str, ...]]
_FLAGS: dict[str, Flag] = {f.value: f for f in Flag}
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads


@dataclass(slots=True, frozen=True)
class Schema:
    """The layout of one device's readings."""

    id: int
    site: str
    device: str
    kind: str
    channels: tuple[str, ...]
    units: tuple[str, ...]

    @property
    def key(self) -> SchemaKey:
        return (self.site, self.device, self.kind, self.channels, self.units)

    def to_json(self) -> str:
        return _dumps([self.site, self.device, self.kind, list(self.channels), list(self.units)])

    @staticmethod
    def from_json(schema_id: int, text: str) -> Schema:
        site, device, kind, channels, units = _loads(text)
        return Schema(schema_id, site, device, kind, tuple(channels), tuple(units))


READING = "reading"
AGGREGATE = "aggregate"
ALARM = "alarm"
ACTUATION = "actuation"
COMMAND = "command"
KIND_CODES: dict[str, int] = {READING: 0, AGGREGATE: 1, ALARM: 2, ACTUATION: 3, COMMAND: 4}
KIND_NAMES: dict[int, str] = {v: k for k, v in KIND_CODES.items()}


@dataclass(slots=True)
class AlarmRecord:
    """The payload of an `alarm` record: the event, the alarm's state after it (None once cleared) for the retained
    MQTT topic, and whether this is a checkpoint (an event written again; sinks do not notify it again)."""

    event: Any  # gateway.alarms.events.AlarmEvent
    active: dict[str, Any] | None = None
    checkpoint: bool = False


@dataclass(slots=True)
class LogRecord:
    """A committed record: its position in the log and, for readings, the device's sequence number
    (gap/duplicate detection). `kind` says what it is; `payload` holds what is not a reading (a WindowAggregate,
    an AlarmRecord, or a dict for actuations and commands), `reading` is then an empty envelope."""

    id: int
    seq: int
    reading: DeviceReading
    kind: str = READING
    payload: Any = field(default=None)


Row = tuple[int, int, int, int, str, str, str | None]  # id, ts, seq, schema, flags, vals, extra
KindRow = tuple[int, int, int, int, str, str, str | None, int]  # the same + kind


def schema_key(reading: DeviceReading) -> SchemaKey:
    values = reading.values
    return (reading.site, reading.device, reading.kind, tuple(values), tuple(cv.unit for cv in values.values()))


def encode(record_id: int, seq: int, schema_id: int, reading: DeviceReading) -> Row:
    values = reading.values.values()
    flags = "".join([cv.flag.value for cv in values])
    vals = _dumps([cv.value for cv in values])
    extra: str | None = None
    notes = {ch: cv.note for ch, cv in reading.values.items() if cv.note}
    if not reading.ok or reading.error or notes:
        extra = _dumps({"ok": reading.ok, "error": reading.error, "notes": notes})
    return (record_id, reading.ts, seq, schema_id, flags, vals, extra)


def decode(schema: Schema, ts: int, flags: str, vals: str, extra: str | None) -> DeviceReading:
    values = _loads(vals)
    units = schema.units
    cvs = {
        ch: ChannelValue(values[i], units[i], _FLAGS[flags[i]]) for i, ch in enumerate(schema.channels)
    }
    reading = DeviceReading(schema.site, schema.device, schema.kind, ts, cvs)
    if extra is not None:
        info = _loads(extra)
        reading.ok = bool(info.get("ok", True))
        reading.error = str(info.get("error", ""))
        for ch, note in info.get("notes", {}).items():
            if ch in cvs:
                cvs[ch].note = note
    return reading


def envelope(site: str, kind: str, ts: int) -> DeviceReading:
    """The reading a non-reading record carries: no device, no values."""
    return DeviceReading(site, "", kind, ts, {})


def aggregate_schema_key(agg: Any) -> SchemaKey:
    chans = agg.channels
    return (agg.site, agg.device, agg.kind, tuple(chans), tuple(a.unit for a in chans.values()))


def encode_aggregate(record_id: int, schema_id: int, agg: Any) -> KindRow:
    """A WindowAggregate as a row (kind 1): ts = its end."""
    chans = list(agg.channels.values())
    flags = "".join([a.flag.value for a in chans])
    cous = [a.cou for a in chans]
    has_cou = any(c is not None for c in cous)
    vals = _dumps([agg.window, agg.start, agg.expected, agg.partial, [a.min for a in chans], [a.avg for a in chans],
                   [a.max for a in chans], [a.n for a in chans], [a.valid for a in chans],
                   cous if has_cou else None, [a.cou_unit for a in chans] if has_cou else None])
    return (record_id, agg.end, 0, schema_id, flags, vals, None, KIND_CODES[AGGREGATE])


def decode_aggregate(schema: Schema, end: int, flags: str, vals: str) -> Any:
    from gateway.processing.windows import ChannelAggregate, WindowAggregate

    window, start, expected, partial, mins, avgs, maxs, ns, valids, cous, cou_units = _loads(vals)
    channels = {
        ch: ChannelAggregate(schema.units[i], mins[i], avgs[i], maxs[i], ns[i], valids[i], _FLAGS[flags[i]],
                             cous[i] if cous else None, cou_units[i] if cou_units else "")
        for i, ch in enumerate(schema.channels)
    }
    return WindowAggregate(schema.site, schema.device, schema.kind, window, start, end, expected, partial, channels)


def encode_alarm(record_id: int, ts: int, rec: AlarmRecord) -> KindRow:
    body = rec.event.to_json()
    if rec.active is not None:
        body["active"] = rec.active
    return (record_id, ts, 0, 0, "K" if rec.checkpoint else "", _dumps(body), None, KIND_CODES[ALARM])


def decode_alarm(flags: str, vals: str) -> AlarmRecord:
    from gateway.alarms.events import AlarmEvent

    body = _loads(vals)
    active = body.pop("active", None)
    return AlarmRecord(AlarmEvent.from_json(body), active, flags == "K")


def encode_json(record_id: int, ts: int, kind: str, body: dict[str, Any]) -> KindRow:
    return (record_id, ts, 0, 0, "", _dumps(body), None, KIND_CODES[kind])


def site_of(payload: Any) -> str:
    return str(getattr(payload, "site", "") or getattr(getattr(payload, "event", None), "site", "") or "")
