"""The audit trail (HJ 477 data loggers keep one; IEC 62443-4-2 CR 2.8 names its fields): every command and change
that alters what the gateway reports or does is a record in the durable log, in the same id sequence as the data.

    audit(log, Actor("hj212", "city MN 0100...", "10.20.30.40:8801"), "hj212 1012 set logger time",
          {"SystemTime": "20260301120000"}, "ExeRtn 1 done")

A record says when (the gateway's clock), who and from where (`Actor`: kind hj212 / mqtt / local / gateway, the
identity it gave, its address), what was asked (`action`), the parameters with every secret masked (`mask`: keys
like PW, NewPW, password, token, secret, key), and the result. Written by: the HJ 212 uplink (every platform
command, refused ones included), the regulatory stage (alarm acknowledgements, maintenance mode, actuator overrides,
from MQTT or any other caller of `Gateway.command`), and the gateway itself (configuration load, start, stop).

Audit records live as long as the regulatory data: the same retention. The disk cap copies the audit records among
the oldest rows it drops to the end of the log first (store KEPT_KINDS), so they outlive the readings of their
time. `entries()` reads them back read-only, beside a running gateway (`plume audit`), copies shown once.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from gateway.core.clock import now_ms
from gateway.store.records import AUDIT, KIND_CODES, Encoded, PayloadRecord, RecordType, SchemaKey, register

SECRET = re.compile(r"pw|pass|secret|token|key|auth", re.IGNORECASE)
MASK = "******"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(slots=True, frozen=True)
class Actor:
    """Who asked: `kind` (hj212 platform, mqtt, local user, the gateway itself), the identity it gave (platform
    name and MN, MQTT sink and the `by` of the message, a local user name) and where from (address, client id)."""

    kind: str
    who: str = ""
    address: str = ""


@dataclass(slots=True)
class AuditRecord(PayloadRecord[dict[str, Any]]):
    """One audit entry as committed: {at, site, actor: {kind, who, address}, action, params, result}."""

    kind: ClassVar[str] = AUDIT


class Appender(Protocol):
    def append_record(self, kind: str, payload: Any, ts: int, site: str = "") -> PayloadRecord[Any]: ...


def mask(params: Mapping[str, object] | None) -> dict[str, object]:
    """`params` with the value of every secret-looking key replaced by ******."""
    return {str(k): (MASK if SECRET.search(str(k)) else v) for k, v in (params or {}).items()}


def audit(log: Appender, actor: Actor, action: str, params: Mapping[str, object] | None = None,
          result: str = "ok", *, site: str = "", ts: int | None = None) -> PayloadRecord[Any]:
    """Write one audit record to the log (committed with the next commit, like any record). The one entry point:
    the HJ 212 uplink, the regulatory stage, the gateway and the cockpit call it."""
    at = now_ms() if ts is None else ts
    body = {"at": at, "site": site, "actor": {"kind": actor.kind, "who": actor.who, "address": actor.address},
            "action": action, "params": mask(params), "result": result}
    return log.append_record(AUDIT, body, at, site)


def _encode(body: dict[str, Any], ts: int) -> Encoded:
    return Encoded(ts, "", _dumps(body))


def _decode(layout: SchemaKey | None, ts: int, flags: str, vals: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(vals)
    return body


register(RecordType(AUDIT, AuditRecord, _encode, _decode, lambda body: str(body.get("site", ""))))


def entries(log_file: Path, since_ms: int | None = None) -> list[dict[str, Any]]:
    """Audit entries of a log file, oldest first, read-only (works while the gateway runs: SQLite WAL readers do
    not block the writer). Each entry gets its log `id`."""
    if not log_file.exists():
        raise FileNotFoundError(f"no log at {log_file}")
    conn = sqlite3.connect(f"file:{log_file}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, ts, vals FROM readings WHERE kind != 0 AND kind = ? AND ts >= ? ORDER BY id",
                            (KIND_CODES[AUDIT], since_ms if since_ms is not None else -(2**62))).fetchall()
    finally:
        conn.close()
    out = []
    seen: set[str] = set()
    for rid, _, vals in rows:
        if vals in seen:  # a copy the disk cap carried forward (or the original, if a crash kept both)
            continue
        seen.add(vals)
        body = json.loads(vals)
        body["id"] = rid
        out.append(body)
    return out
