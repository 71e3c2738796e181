"""What `plume audit SITE [--since WHEN] [--json]` prints: the audit trail from the site's durable log, read-only
(works while the gateway runs), times in the site's local time with its zone."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer

from gateway.audit import entries
from gateway.core.clock import now_ms

_SPAN = re.compile(r"(\d+)([mhd])")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_since(text: str, tz: ZoneInfo) -> int:
    """`30m`, `24h`, `7d` (that long ago) or a local date/time `2026-03-01`, `2026-03-01 08:00[:00]`."""
    m = _SPAN.fullmatch(text.strip())
    if m:
        return now_ms() - int(m.group(1)) * _UNIT_MS[m.group(2)]
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return int(datetime.strptime(text.strip(), fmt).replace(tzinfo=tz).timestamp() * 1000)
        except ValueError:
            continue
    raise ValueError(f"--since {text!r}: give 30m, 24h, 7d or a local date/time like 2026-03-01 08:00")


def local(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def run_audit(log_file: Path, tz: ZoneInfo, since: str | None, as_json: bool) -> None:
    try:
        since_ms = parse_since(since, tz) if since else None
        found = entries(log_file, since_ms)
    except (ValueError, FileNotFoundError) as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(2) from None
    if as_json:
        for e in found:
            print(json.dumps({**e, "local_time": local(int(e["at"]), tz)}, ensure_ascii=False))
        return
    if not found:
        print("no audit entries" + (f" since {local(since_ms, tz)}" if since_ms is not None else ""))
        return
    for e in found:
        a: dict[str, Any] = e.get("actor", {})
        who = " ".join(x for x in (a.get("kind", ""), a.get("who", ""), f"@{a['address']}" if a.get("address")
                                   else "") if x)
        params = ", ".join(f"{k}={v}" for k, v in (e.get("params") or {}).items())
        print(f"{local(int(e['at']), tz)}  {e.get('action', '')}  [{who}]  {params}  -> {e.get('result', '')}")
