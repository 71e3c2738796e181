"""`plume export`: the minute, hour and day data of a site as an inspector or a regulator asks for them, read from
the durable log (values, flags, validity counts), with every time in the site's local time and its zone marked.

The log is read through its own SQLite connection with `query_only` set (never the DurableLog, whose lock a running
`plume run` holds), so an export runs beside the gateway and can never change the log. Formats:
- csv: one row per window and channel (`start`/`end` in local ISO 8601 with the UTC offset, plus `timezone`);
- json: one document, `{"site", "timezone", "window", "from", "to", "windows": [...]}`;
- hj212: the 2051 / 2061 / 2031 packets an uplink's code map makes of those windows (one framed packet a line, PW
  masked as XXXXXX: an export is for reading, not for replaying to a platform).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from gateway.core.localtime import parse_period
from gateway.processing.records import aggregate_ts_range, decode_aggregate
from gateway.processing.windows import WindowAggregate
from gateway.site.model import Site
from gateway.store.codec import Schema
from gateway.store.records import AGGREGATE, KIND_CODES

WINDOWS = ("1m", "1h", "1d")
FORMATS = ("csv", "json", "hj212")
MASKED_PW = "XXXXXX"  # the packet grammar allows letters and digits only
CN_OF_WINDOW = {"1m": "2051", "1h": "2061", "1d": "2031"}
CSV_COLUMNS = ("device", "kind", "window", "start", "end", "timezone", "partial", "expected", "channel", "unit",
               "min", "avg", "max", "n", "valid", "flag", "cou", "cou_unit")


class ExportError(Exception):
    """An export that cannot be made (bad time, no log, unknown uplink); the message says what to fix."""


def parse_local(text: str, tz: ZoneInfo, what: str) -> int:
    """`2026-03-02`, `2026-03-02T08:00[:00]` (site local time) or with an offset (`+08:00`, `Z`) -> UTC ms."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ExportError(f"{what}: {text!r} is not a date or time (give e.g. 2026-03-02 or 2026-03-02T08:00, "
                          "site local time)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return int(dt.timestamp() * 1000)


def local_text(ms: int, tz: ZoneInfo) -> str:
    """ISO 8601 in the site's zone with its offset: 2026-03-02T08:00:00+08:00."""
    return datetime.fromtimestamp(ms / 1000, tz).isoformat()


def read_aggregates(log_path: Path, window: str, start_from: int, start_to: int,
                    devices: Iterable[str] = ()) -> list[WindowAggregate]:
    """The windows of `window` starting in [start_from, start_to) (of `devices`, if given), by start then device,
    from the log file at `log_path`, read-only."""
    if not log_path.exists():
        raise ExportError(f"no durable log at {log_path} (store.dir of the site file; has `plume run` run?)")
    wanted = set(devices)
    conn = sqlite3.connect(log_path, timeout=10)
    try:
        conn.execute("PRAGMA query_only=ON")
        schemas = {sid: Schema.from_json(sid, text).key for sid, text in conn.execute("SELECT id, layout FROM schemas")}
        ts_from, ts_to = aggregate_ts_range(start_from, start_to)
        rows = conn.execute("SELECT ts, schema, flags, vals FROM readings WHERE kind != 0 AND kind = ? AND ts >= ? "
                            "AND ts <= ? ORDER BY id", (KIND_CODES[AGGREGATE], ts_from, ts_to)).fetchall()
    except sqlite3.Error as exc:
        raise ExportError(f"cannot read the log {log_path}: {exc}") from None
    finally:
        conn.close()
    found: dict[tuple[str, int], WindowAggregate] = {}
    for ts, sid, flags, vals in rows:
        agg = decode_aggregate(schemas.get(sid), ts, flags, vals)
        if agg.window == window and start_from <= agg.start < start_to and (not wanted or agg.device in wanted):
            found.setdefault((agg.device, agg.start), agg)  # a window is in the log once; keep the first if not
    return sorted(found.values(), key=lambda a: (a.start, a.device))


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def to_csv(aggs: list[WindowAggregate], tz: ZoneInfo) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for a in aggs:
        for ch, c in a.channels.items():
            w.writerow([a.device, a.kind, a.window, local_text(a.start, tz), local_text(a.end, tz), tz.key,
                        str(a.partial).lower(), a.expected, ch, c.unit, _num(c.min), _num(c.avg), _num(c.max), c.n,
                        c.valid, c.flag.value, _num(c.cou), c.cou_unit])
    return buf.getvalue()


def to_json(aggs: list[WindowAggregate], tz: ZoneInfo, site: str, window: str, start_from: int,
            start_to: int) -> str:
    doc: dict[str, Any] = {"site": site, "timezone": tz.key, "window": window, "from": local_text(start_from, tz),
                           "to": local_text(start_to, tz), "windows": []}
    for a in aggs:
        d = a.to_json()
        d["start"], d["end"] = local_text(a.start, tz), local_text(a.end, tz)
        d.pop("site", None)
        doc["windows"].append(d)
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


def to_hj212(aggs: list[WindowAggregate], site: Site, uplink: str | None, window: str, tz: ZoneInfo) -> str:
    from gateway.hj212.aggregates import aggregate_cp
    from gateway.hj212.codec import VERSION_BITS, Packet, encode, make_flag
    from gateway.hj212.timefmt import qn_text

    ups = site.config.uplinks
    if not ups:
        raise ExportError("--format hj212: the site file has no uplinks (their code maps name the HJ 212 codes)")
    names = [u.name for u in ups]
    if uplink is None:
        if len(ups) > 1:
            raise ExportError(f"--format hj212: give --uplink (uplinks: {', '.join(names)})")
        cfg = ups[0]
    else:
        matching = [u for u in ups if u.name == uplink]
        if not matching:
            raise ExportError(f"--uplink: no uplink named {uplink!r} (uplinks: {', '.join(names)})")
        cfg = matching[0]
    routes = site.routes.get(cfg.name, [])
    bits = cfg.flag_version_bits if cfg.flag_version_bits is not None else VERSION_BITS[cfg.version]
    by_start: dict[int, list[WindowAggregate]] = {}
    for a in aggs:
        by_start.setdefault(a.start, []).append(a)
    lines = []
    for start, group in by_start.items():
        cp = aggregate_cp(start, group, routes, tz, True)
        packet = Packet(qn_text(start, tz), cfg.st, CN_OF_WINDOW[window], MASKED_PW, cfg.mn,
                        make_flag(version_bits=bits), cp)
        lines.append(encode(packet).decode("ascii").rstrip("\r\n"))
    return "".join(line + "\n" for line in lines)


def export(site: Site, window: str, start_from: str, start_to: str, devices: list[str], fmt: str,
           uplink: str | None = None, log_path: Path | None = None) -> str:
    """The export as text."""
    if window not in WINDOWS:
        raise ExportError(f"--window: {window!r}: give one of {', '.join(WINDOWS)}")
    parse_period(window)
    if fmt not in FORMATS:
        raise ExportError(f"--format: {fmt!r}: give one of {', '.join(FORMATS)}")
    tz = ZoneInfo(site.config.site.timezone)
    t0, t1 = parse_local(start_from, tz, "--from"), parse_local(start_to, tz, "--to")
    if t1 <= t0:
        raise ExportError(f"--to ({start_to}) must be after --from ({start_from})")
    known = {d.name for d in site.devices}
    for d in devices:
        if d not in known:
            raise ExportError(f"--device: no device named {d!r} (devices: {', '.join(sorted(known))})")
    aggs = read_aggregates(log_path or site.config.store.log_path(site.path), window, t0, t1, devices)
    if fmt == "csv":
        return to_csv(aggs, tz)
    if fmt == "json":
        return to_json(aggs, tz, site.id, window, t0, t1)
    return to_hj212(aggs, site, uplink, window, tz)


def export_command(
    file: Annotated[Path, typer.Argument(help="Site file (YAML).", show_default=False)],
    start_from: Annotated[str, typer.Option("--from", help="First window start, site local time (2026-03-02 or "
                                            "2026-03-02T08:00; an offset such as +08:00 is honoured).",
                                            show_default=False)],
    start_to: Annotated[str, typer.Option("--to", help="Windows starting before this (site local time).",
                                          show_default=False)],
    window: Annotated[str, typer.Option(help="1m (minute), 1h (hour) or 1d (day) data.")] = "1h",
    device: Annotated[list[str] | None, typer.Option(help="Only this device (repeatable).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv, json or hj212 (2051/2061/2031 packets).")] = "csv",
    uplink: Annotated[str | None, typer.Option(help="For hj212: the uplink whose code map is used.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of printing.")] = None,
) -> None:
    """Minute, hour or day data from the durable log (values, flags, validity counts), in the site's local time."""
    from gateway.config import ConfigError
    from gateway.site.load import load_site

    try:
        site = load_site(file)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        raise typer.Exit(2) from None
    try:
        text = export(site, window, start_from, start_to, device or [], fmt, uplink)
    except ExportError as exc:
        print(f"plume export: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        count = text.count("\n") - (1 if fmt == "csv" else 0)
        print(f"{output}: {count} {'rows' if fmt == 'csv' else 'lines'} ({window}, {site.config.site.timezone})",
              file=sys.stderr)
