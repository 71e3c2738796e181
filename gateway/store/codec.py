"""How a DeviceReading becomes a row of the durable log, and back.

A device sends the same channels with the same units in every poll, so that layout (site, device, kind, channel
names, units) is stored once as a *schema* and each row carries only the flags (one letter per channel), the values
as a JSON list, and, when there is any, the error and per-channel notes. That is ~100 bytes for a 10-channel poll
instead of ~400, which is what lets weeks of history fit the disk cap of an SD card.

Records of other kinds (aggregates, alarm events, actuations, commands) share the table and the id sequence;
their types and codecs are in gateway.store.records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.store.records import LogRecord, ReadingRecord, SchemaKey, StoredReading

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


Row = tuple[int, int, int, int, str, str, str | None]  # id, ts, seq, schema, flags, vals, extra
KindRow = tuple[int, int, int, int, str, str, str | None, int]  # the same + kind


# Finite non-zero float -> its repr(), shared by the log row, the MQTT data message and the InfluxDB line, which
# all write a value as repr() writes it: the shortest repr of a float costs more than the rest of a value's
# encoding, and a device's values repeat (a register of a scale-0.1 channel has at most 65,536 of them). 0.0 and
# -0.0 are one key with two texts, so zero is never kept; emptied when full (about 0.4 MB), so it follows drift.
FLOAT_TEXT: dict[float, str] = {}
FLOAT_TEXT_MAX = 4096


def float_text(v: float) -> str:
    """repr(v) of a finite float, kept in FLOAT_TEXT (look it up there first: `FLOAT_TEXT.get(v) or float_text(v)`)."""
    text = repr(v)
    if v:
        if len(FLOAT_TEXT) >= FLOAT_TEXT_MAX:
            FLOAT_TEXT.clear()
        FLOAT_TEXT[v] = text
    return text


def schema_key(reading: DeviceReading) -> SchemaKey:
    values = reading.values
    return (reading.site, reading.device, reading.kind, tuple(values), tuple(cv.unit for cv in values.values()))


def encode(record_id: int, seq: int, schema_id: int, reading: DeviceReading) -> Row:
    values = reading.values.values()
    flags = "".join([cv.flag for cv in values])  # Flag is a StrEnum: its members are their letters
    ft = FLOAT_TEXT
    texts = [(ft.get(v) or float_text(v)) if type(v) is float and v - v == 0.0 else None  # finite: inf - inf is NaN
             for v in [cv.value for cv in values]]
    # json writes a finite float as repr() does; anything else (None, NaN, text, int) takes json itself
    vals = "[" + ",".join(texts) + "]" if None not in texts else _dumps([cv.value for cv in values])  # type: ignore[arg-type]
    extra: str | None = None
    if not reading.ok or reading.error or any([cv.note for cv in values]):
        notes = {ch: cv.note for ch, cv in reading.values.items() if cv.note}
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


def decode_stored(rec: StoredReading) -> ReadingRecord:
    """The ReadingRecord of a reading read back as its row."""
    reading = decode(rec.layout, rec.ts, rec.flags, rec.vals, rec.extra)
    return ReadingRecord(rec.id, rec.ts, reading.site, rec.seq, reading)


def decoded(records: list[LogRecord]) -> list[LogRecord]:
    """`records` with every StoredReading decoded (for hooks that expect readings)."""
    return [decode_stored(r) if isinstance(r, StoredReading) else r for r in records]


# a stored values list of finite floats only, each as repr() writes it (a '.' or an exponent: never an int, null,
# NaN, Infinity, text or a boolean)
_FLOAT_LIST = re.compile(r"\[-?\d+(?:\.\d+(?:e[+-]\d+)?|e[+-]\d+)(?:,-?\d+(?:\.\d+(?:e[+-]\d+)?|e[+-]\d+))*\]")


def usual_texts(rec: StoredReading) -> list[str] | None:
    """The value texts of a stored reading that is the usual poll - every channel a finite float with flag N, no
    error and no note - in channel order; None for any other row. They are repr() of each value, what the MQTT
    message and the InfluxDB line write, so a sink draining a backlog can use them without decoding the row."""
    flags = rec.flags
    if rec.extra is not None or not flags or flags.count("N") != len(flags) or _FLOAT_LIST.fullmatch(rec.vals) is None:
        return None
    return rec.vals[1:-1].split(",")
