"""Alarm events in the durable log: the `alarm` record type and its row codec (registered with the store when
this module is imported).

A row holds the AlarmEvent as JSON plus the alarm's state after it (for the retained MQTT topic); flags "K" marks
a checkpoint (the events of a long alarm written again so that retention keeps them; sinks do not notify it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.alarms.events import AlarmEvent
from gateway.store.records import ALARM, Encoded, PayloadRecord, RecordType, SchemaKey, register

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(slots=True)
class AlarmEntry:
    """The payload of an alarm record: the event, the alarm's state after it (None once cleared) and whether this
    is a checkpoint (an event written again)."""

    event: AlarmEvent
    active: dict[str, Any] | None = None
    checkpoint: bool = False


@dataclass(slots=True)
class AlarmRecord(PayloadRecord[AlarmEntry]):
    """An alarm lifecycle event as committed (row ts = the event's time, a checkpoint's: when it was written)."""

    kind: ClassVar[str] = ALARM


def encode_alarm(entry: AlarmEntry, ts: int) -> Encoded:
    body = entry.event.to_json()
    if entry.active is not None:
        body["active"] = entry.active
    return Encoded(ts, "K" if entry.checkpoint else "", _dumps(body))


def decode_alarm(layout: SchemaKey | None, ts: int, flags: str, vals: str) -> AlarmEntry:
    body = json.loads(vals)
    active = body.pop("active", None)
    return AlarmEntry(AlarmEvent.from_json(body), active, flags == "K")


register(RecordType(ALARM, AlarmRecord, encode_alarm, decode_alarm, lambda entry: entry.event.site))
