"""The MQTT topic and payload contract, version 1 (documented in the README; change it only with a new version).

Topics, under a configurable prefix (default `plume`):
- `{prefix}/{site}/{device}/data`  one message per device per poll (QoS 1 by default, not retained):
  {"v":1,"site":"demo-site","device":"dust-2","kind":"dust","seq":1842,"ts":1767225600123,"ok":true,
   "values":{"pm10":{"value":41.0,"unit":"ug/m3","flag":"N"},...}}
  `seq` counts the device's polls in the durable log, 1, 2, 3 ... and survives restarts: a subscriber that sees a
  seq it already has drops a duplicate (at-least-once delivery re-sends after a reconnect or a crash), and a jump
  means readings were dropped by the disk cap (also counted in health). `value` is null when the poll gave no
  usable number (the flag says why: B communication, D fault, ...). A failed poll has "ok":false and "error".
  A channel may carry "note". Values are numbers or, for text channels, strings.
- `{prefix}/{site}/status`  retained `online` / `offline` (the last will: offline also after a crash or a dead link).
- `{prefix}/{site}/health`  retained JSON health snapshot, every `health_interval_s`.
- `{prefix}/{site}/{device}/status`  (sink option `availability`) retained `online` / `offline` per device; a device
  is available while both it and the site status say `online` (the site's last will covers every device).

Additions (same version: new topics only, nothing above changes), see docs-integration.md:
- `{prefix}/{site}/{device}/agg/{window}`  one message per closed window (QoS as data, not retained):
  {"v":1,"site":..,"device":..,"kind":"dust","window":"15m","start":ms,"end":ms,"expected":15,"partial":false,
   "values":{"pm10":{"unit":"ug/m3","avg":..,"min":..,"max":..,"n":15,"valid":15,"flag":"N"[,"mass":kg]}}}
- `{prefix}/{site}/alarms/events`  every alarm lifecycle event (raised, acknowledged, renotify, escalated,
  cleared) as JSON,
  with `event_id`, `alarm_id` and `idempotency_key` (QoS 1, not retained; duplicates share the event_id).
- `{prefix}/{site}/alarms/active/{rule}/{device}/{channel}`  retained: the alarm active there now (the state after
  its latest event); an empty retained message once it cleared. `-` stands for an empty device or channel.
- Commands the gateway subscribes to (QoS 1), under `{prefix}/{site}/cmd/` (the fleet broker's ACL lets a gateway
  read only its own `cmd/#`): `cmd/ack` {"alarm_id", "by", "note"}; `cmd/maintenance` {"on": true|false|null,
  "device": name|null, "by"}; `cmd/actuators/{name}` {"mode": "on"|"off"|"auto", "by"}.
"""

from __future__ import annotations

import json
import math
from typing import Any

from gateway.alarms.records import AlarmEntry
from gateway.core.model import Flag
from gateway.store.codec import FLOAT_TEXT, float_text, usual_texts
from gateway.store.records import ReadingRecord, StoredReading

CONTRACT_VERSION = 1
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def data_topic(prefix: str, site: str, device: str) -> str:
    return f"{prefix}/{site}/{device}/data"


def status_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{site}/status"


def device_status_topic(prefix: str, site: str, device: str) -> str:
    """Retained `online` / `offline` of one device (sink option `availability`, see gateway.sinks.availability)."""
    return f"{prefix}/{site}/{device}/status"


def health_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{site}/health"


def _clean(value: object) -> object:
    if type(value) is float and not math.isfinite(value):
        return None
    return value


_channel_parts: dict[tuple[str, str], tuple[str, str]] = {}
_channel_text: dict[str, tuple[str, str, str]] = {}  # channel -> (unit, its head, its tail for flag N, no note)
_heads: dict[tuple[str, str, str], tuple[str, str]] = {}  # (site, device, kind) -> the text around seq
_N = Flag.N


def _parts(channel: str, unit: str) -> tuple[str, str]:
    """The fixed text around one channel's value: `"ch":{"value":` and `,"unit":"u","flag":"`."""
    parts = _channel_parts.get((channel, unit))
    if parts is None:
        parts = _channel_parts[(channel, unit)] = (_dumps(channel) + ':{"value":', ',"unit":' + _dumps(unit)
                                                   + ',"flag":"')
    return parts


def _text(channel: str, unit: str) -> tuple[str, str, str]:
    """(unit, head, the tail of an N value without a note) of one channel; the first unit seen is the one kept
    (another device's channel of the same name with another unit takes `_parts`)."""
    head, mid = _parts(channel, unit)
    known = (unit, head, mid + 'N"}')
    if len(_channel_text) < 65536:
        _channel_text.setdefault(channel, known)
    return known


def _head(site: str, device: str, kind: str) -> tuple[str, str]:
    key = (site, device, kind)
    head = _heads.get(key)
    if head is None:
        head = (f'{{"v":{CONTRACT_VERSION},"site":{_dumps(site)},"device":{_dumps(device)},"kind":{_dumps(kind)},'
                '"seq":', ',"ts":')
        if len(_heads) < 65536:
            _heads[key] = head
    return head


def data_payload(record: ReadingRecord) -> bytes:
    """The data message, byte for byte what `json` makes of the documented dict (tests/pipeline/test_payload_text.py
    checks it), built from the fixed text of each channel instead of a dict per value: this runs for every poll.
    A finite float with flag N and no note (nearly every value) is one f-string of its channel's head, its repr
    and its channel's tail."""
    r = record.reading
    items: list[str] = []
    append = items.append
    texts = _channel_text
    ft = FLOAT_TEXT
    for ch, cv in r.values.items():
        v = cv.value
        unit = cv.unit
        known = texts.get(ch)
        if known is None or known[0] != unit:
            known = _text(ch, unit)
        if type(v) is float and v - v == 0.0 and cv.flag is _N and not cv.note:  # finite: inf - inf is NaN
            append(f"{known[1]}{ft.get(v) or float_text(v)}{known[2]}")
            continue
        if type(v) is float:
            text = repr(v) if math.isfinite(v) else "null"
        elif v is None:
            text = "null"
        else:
            text = _dumps(v)
        head, mid = _parts(ch, unit)
        if cv.note:
            append(head + text + mid + cv.flag + '","note":' + _dumps(cv.note) + "}")
        else:
            append(head + text + mid + cv.flag + '"}')
    error = ',"error":' + _dumps(r.error) if r.error else ""
    start, ts = _head(r.site, r.device, r.kind)
    return (f'{start}{record.seq}{ts}{r.ts},"ok":{"true" if r.ok else "false"},"values":{{{",".join(items)}}}'
            f'{error}}}').encode()


def stored_data_payload(rec: StoredReading) -> bytes | None:
    """The data message of a reading read back as its row when it is the usual poll (`codec.usual_texts`): the
    same bytes `data_payload` makes of the decoded reading, without decoding it. None for any other row."""
    texts = usual_texts(rec)
    if texts is None:
        return None
    lay = rec.layout
    known = _channel_text
    items = []
    for ch, unit, t in zip(lay.channels, lay.units, texts, strict=True):
        k = known.get(ch)
        if k is None or k[0] != unit:
            k = _text(ch, unit)
        items.append(f"{k[1]}{t}{k[2]}")
    start, ts = _head(lay.site, lay.device, lay.kind)
    return f'{start}{rec.seq}{ts}{rec.ts},"ok":true,"values":{{{",".join(items)}}}}}'.encode()


def json_payload(data: object) -> bytes:
    return _dumps(data).encode()


# --- aggregates and alarms ----------------------------------------------------------------------------------------

def agg_topic(prefix: str, site: str, device: str, window: str) -> str:
    return f"{prefix}/{site}/{device}/agg/{window}"


def alarm_events_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{site}/alarms/events"


def alarm_active_topic(prefix: str, site: str, rule: str, device: str, channel: str) -> str:
    return f"{prefix}/{site}/alarms/active/{rule}/{device or '-'}/{channel or '-'}"


def ack_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{site}/cmd/ack"


def maintenance_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{site}/cmd/maintenance"


def actuator_set_topic(prefix: str, site: str, actuator: str) -> str:
    return f"{prefix}/{site}/cmd/actuators/{actuator}"


MASS_UNITS = {"kg": 1.0, "g": 0.001, "t": 1000.0}


def mass_kg(cou: float | None, cou_unit: str) -> float | None:
    """The cumulative total of a mass-rate channel in kg (None for other totals, e.g. m3 of a flow)."""
    factor = MASS_UNITS.get(cou_unit)
    if cou is None or factor is None or not math.isfinite(cou):
        return None
    return cou * factor


def agg_payload(agg: Any) -> bytes:
    values: dict[str, dict[str, object]] = {}
    for ch, a in agg.channels.items():
        item: dict[str, object] = {"unit": a.unit, "avg": _clean(a.avg), "min": _clean(a.min), "max": _clean(a.max),
                                   "n": a.n, "valid": a.valid, "flag": a.flag.value}
        mass = mass_kg(a.cou, a.cou_unit)
        if mass is not None:
            item["mass"] = mass
        values[ch] = item
    return _dumps({"v": CONTRACT_VERSION, "site": agg.site, "device": agg.device, "kind": agg.kind,
                   "window": agg.window, "start": agg.start, "end": agg.end, "expected": agg.expected,
                   "partial": agg.partial, "values": values}).encode()


def _clean_json(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _clean(v) for k, v in d.items()}


def alarm_event_payload(rec: AlarmEntry) -> bytes:
    body = _clean_json(rec.event.to_json())
    body["v"] = CONTRACT_VERSION
    return _dumps(body).encode()


def alarm_active_payload(rec: AlarmEntry) -> bytes:
    """The retained state after this event; b"" (clears the retained message) once the alarm cleared."""
    if rec.active is None:
        return b""
    body = _clean_json(rec.active)
    body["v"] = CONTRACT_VERSION
    body["state"] = rec.event.type.value
    body["updated"] = rec.event.ts
    return _dumps(body).encode()
