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
Later issues add aggregates and alarms under the same `{prefix}/{site}/` root.
"""

from __future__ import annotations

import json
import math

from gateway.store.codec import LogRecord

CONTRACT_VERSION = 1
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def data_topic(prefix: str, site: str, device: str) -> str:
    return f"{prefix}/{site}/{device}/data"


def status_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{site}/status"


def health_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{site}/health"


def _clean(value: object) -> object:
    if type(value) is float and not math.isfinite(value):
        return None
    return value


def data_payload(record: LogRecord) -> bytes:
    r = record.reading
    values: dict[str, dict[str, object]] = {}
    for ch, cv in r.values.items():
        item: dict[str, object] = {"value": _clean(cv.value), "unit": cv.unit, "flag": cv.flag.value}
        if cv.note:
            item["note"] = cv.note
        values[ch] = item
    msg: dict[str, object] = {
        "v": CONTRACT_VERSION,
        "site": r.site,
        "device": r.device,
        "kind": r.kind,
        "seq": record.seq,
        "ts": r.ts,
        "ok": r.ok,
        "values": values,
    }
    if r.error:
        msg["error"] = r.error
    return _dumps(msg).encode()


def json_payload(data: object) -> bytes:
    return _dumps(data).encode()
