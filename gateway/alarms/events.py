"""Alarm lifecycle events: raised -> (acknowledged) -> cleared, plus renotify while an alarm lasts and escalated
when nobody acknowledged it in time.

Every event is a durable record in the log. Its ids are stable functions of the data, so an event rebuilt by a
replay after a restart has the id of the one already logged and is recognised instead of sent twice:
- alarm_id  = `<rule>/<device>/<channel>/<start ms>` (one alarm: a rule, a place, since when);
- event_id  = `<alarm_id>/<type>` (renotify: `/renotify/<n>`);
- idempotency_key = the first 32 hex digits of sha256(site + event_id): what webhook receivers deduplicate on.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    RENOTIFY = "renotify"
    ESCALATED = "escalated"  # nobody acknowledged it within the rule's escalate_after_s (once per alarm)
    CLEARED = "cleared"


@dataclass(slots=True, frozen=True)
class AlarmEvent:
    """One step of one alarm, with the context an officer needs to act."""

    type: EventType
    site: str
    rule: str
    device: str  # "" for site-level rules (log drops, disk)
    channel: str  # "" for device-level rules (offline)
    window: str  # "raw", "15m", "1h"... ; "" when the rule judges no value
    start: int  # since when the condition holds (UTC ms): the first exceeding sample's start
    ts: int  # when this event happened (the sample that decided it; an acknowledgement: when it was given)
    value: float | None  # the value that decided it (raised: exceeding; cleared: back under the clear level)
    limit: float | None
    unit: str = ""
    severity: str = "warning"
    title: str = ""
    standard: str = ""
    message: str = ""  # one line, ready to show
    n: int = 0  # renotify number (1, 2, ...)
    count: int | None = None  # exceeding windows in the local day (rules with max_per_day)
    peak: float | None = None  # the worst value while the alarm lasted
    by: str = ""  # who acknowledged
    note: str = ""

    @property
    def alarm_id(self) -> str:
        return f"{self.rule}/{self.device or '-'}/{self.channel or '-'}/{self.start}"

    @property
    def event_id(self) -> str:
        base = f"{self.alarm_id}/{self.type.value}"
        return f"{base}/{self.n}" if self.type is EventType.RENOTIFY else base

    @property
    def idempotency_key(self) -> str:
        return hashlib.sha256(f"{self.site}\n{self.event_id}".encode()).hexdigest()[:32]

    @property
    def key(self) -> tuple[str, str, str]:
        """What one state machine tracks: (rule, device, channel)."""
        return (self.rule, self.device, self.channel)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = self.type.value
        d["alarm_id"] = self.alarm_id
        d["event_id"] = self.event_id
        d["idempotency_key"] = self.idempotency_key
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> AlarmEvent:
        fields = {k: v for k, v in d.items() if k not in ("alarm_id", "event_id", "idempotency_key")}
        fields["type"] = EventType(fields["type"])
        return AlarmEvent(**fields)
