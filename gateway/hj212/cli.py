"""`plume hj212 decode|encode`: debugging tools for integrators who read and write HJ 212 packets by hand.

decode: a packet (argument, or one per line on stdin) as a table of header fields and CP items; for a bad packet
one line saying exactly what is wrong, exit 1. encode: JSON in, the packet on the wire out (length and CRC
computed), split with --split when the CP is too long for one packet.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from gateway.cli_console import LazyConsole, Table
from gateway.hj212.codec import VERSION_BITS, Cp, Packet, crc16, decode, encode, make_flag, split
from gateway.hj212.errors import Hj212Error
from gateway.hj212.names import CN_NAMES, DATA_FLAGS, EXE_RTN, POLLUTANTS, QN_RTN, ST_NAMES, describe_flag
from gateway.hj212.timefmt import qn_text

hj212_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                        help="Decode and encode HJ 212 packets (debugging tools).")
out = LazyConsole()

FIELD_ORDER = ("Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "ZsAvg", "ZsMin", "ZsMax", "Flag")


def _packets(packet: str | None) -> list[bytes]:
    """The packets to decode: the argument, or every non-empty line of stdin; a CR LF is added when missing
    (shells and pastes lose it)."""
    raw = packet.encode("utf-8", "surrogateescape") if packet is not None else sys.stdin.buffer.read()
    lines = [ln.rstrip(b"\r") for ln in raw.split(b"\n")]
    return [ln + b"\r\n" for ln in lines if ln.strip()]


def _when(text: str) -> str:
    try:
        dt = datetime.strptime(text[:14], "%Y%m%d%H%M%S")
    except ValueError:
        return ""
    ms = f".{text[14:17]}" if len(text) == 17 else ""
    return dt.strftime("%Y-%m-%d %H:%M:%S") + ms


def _show(p: Packet, raw: bytes, show_pw: bool) -> None:
    data = raw[6:-6]
    head = Table("field", "value", "meaning", box=None, padding=(0, 2), show_header=False)
    head.add_row("length", str(len(data)), f"bytes of data segment (CRC {crc16(data):04X} ok)")
    head.add_row("QN", p.qn, f"{_when(p.qn)} sender's local time")
    head.add_row("ST", p.st, ST_NAMES.get(p.st, "unknown system code"))
    head.add_row("CN", p.cn, CN_NAMES.get(p.cn, "unknown command code"))
    head.add_row("PW", p.pw if show_pw else "*" * len(p.pw), "" if show_pw else "access password (--show-pw)")
    head.add_row("MN", p.mn, "device (monitoring point) number")
    head.add_row("Flag", str(p.flag), describe_flag(p.flag))
    if p.pnum is not None:
        head.add_row("PNUM/PNO", f"{p.pnum}/{p.pno}", "part of a split packet")
    out.print(head)
    pollutants = p.cp.pollutants()
    others = [(k, v) for g in p.cp.groups for k, v in g if "-" not in k]
    if not p.cp.groups:
        out.print("CP  (empty)")
    for k, v in others:
        note = _when(v) if k.endswith("Time") else ""
        if k == "QnRtn":
            note = QN_RTN.get(int(v), "") if v.isdigit() else ""
        elif k == "ExeRtn":
            note = EXE_RTN.get(int(v), "") if v.isdigit() else ""
        out.print(f"CP  {k}={v}" + (f"  ({note})" if note else ""))
    if pollutants:
        fields = [f for f in FIELD_ORDER if any(f in d for d in pollutants.values())]
        fields += sorted({f for d in pollutants.values() for f in d} - set(fields))
        table = Table("code", "name", *fields, box=None, padding=(0, 2))
        for code, d in pollutants.items():
            cells = []
            for f in fields:
                v = d.get(f, "")
                cells.append(f"{v} ({DATA_FLAGS[v]})" if f == "Flag" and v in DATA_FLAGS else v)
            table.add_row(code, POLLUTANTS.get(code, ""), *cells)
        out.print(table)


def as_json(p: Packet) -> dict[str, Any]:
    """The shape `encode` reads: header fields, then CP as a list of groups (objects), values as text."""
    d: dict[str, Any] = {"qn": p.qn, "st": p.st, "cn": p.cn, "pw": p.pw, "mn": p.mn, "flag": p.flag}
    if p.pnum is not None:
        d["pnum"], d["pno"] = p.pnum, p.pno
    d["cp"] = [dict(g) for g in p.cp.groups]
    return d


@hj212_app.command("decode")
def decode_cmd(
    packet: Annotated[str | None, typer.Argument(help="The packet (## ... CRC); without it, one packet per line "
                                                 "of stdin.", show_default=False)] = None,
    show_pw: Annotated[bool, typer.Option("--show-pw", help="Show the password instead of stars.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print each packet as JSON (what encode reads).")] = False,
) -> None:
    """Print the header fields and CP items of HJ 212 packets; for a bad one, say exactly what is wrong (exit 1)."""
    packets = _packets(packet)
    if not packets:
        print("no packet given (an argument, or one packet per line on stdin)", file=sys.stderr)
        raise typer.Exit(1)
    bad = 0
    for i, raw in enumerate(packets, 1):
        where = f"packet {i}: " if len(packets) > 1 else ""
        try:
            p = decode(raw)
        except Hj212Error as exc:
            bad += 1
            print(f"{where}bad packet ({exc.reason}): {exc}", file=sys.stderr)
            continue
        if json_out:
            print(json.dumps(as_json(p), ensure_ascii=False))
            continue
        if len(packets) > 1:
            out.print(f"[bold]packet {i}[/]")
        _show(p, raw, show_pw)
    if bad:
        raise typer.Exit(1)


class InputError(Exception):
    """JSON that does not describe a packet; the message names the key."""


def _value(v: Any, where: str) -> str:
    if isinstance(v, bool) or v is None or isinstance(v, dict | list):
        raise InputError(f"{where}: a value must be text or a number, not {json.dumps(v)}")
    if isinstance(v, float):
        text = repr(v)
        return f"{v:.10f}".rstrip("0").rstrip(".") if "e" in text else text
    return str(v)


def packet_from_json(d: Any, tz: ZoneInfo) -> Packet:
    """A packet from the JSON shape of `decode --json` (qn optional: now; flag, or version + answer)."""
    if not isinstance(d, dict):
        raise InputError("the JSON must be an object with st, cn, pw, mn and cp")
    known = {"qn", "st", "cn", "pw", "mn", "flag", "version", "answer", "cp", "pnum", "pno"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r} (keys: {', '.join(sorted(known))})")
    for k in ("st", "cn", "pw", "mn"):
        if k not in d:
            raise InputError(f"missing key {k!r}")
    if "flag" in d and ("version" in d or "answer" in d):
        raise InputError("give either flag, or version and answer")
    if "flag" in d:
        if not isinstance(d["flag"], int) or isinstance(d["flag"], bool):
            raise InputError("flag: a number such as 5")
        flag = d["flag"]
    else:
        version = d.get("version", 2017)
        if version not in VERSION_BITS:
            raise InputError(f"version: {version!r} is not one of {', '.join(map(str, VERSION_BITS))}")
        flag = make_flag(version, answer=bool(d.get("answer", False)))
    if ("pnum" in d) != ("pno" in d):
        raise InputError("pnum and pno come together")
    cp_in = d.get("cp", [])
    if isinstance(cp_in, dict):
        cp = Cp.from_mapping({str(k): _value(v, f"cp.{k}") for k, v in cp_in.items()})
    elif isinstance(cp_in, list):
        groups = []
        for i, g in enumerate(cp_in):
            if not isinstance(g, dict) or not g:
                raise InputError(f"cp[{i}]: each item is a non-empty object of key: value")
            groups.append({str(k): _value(v, f"cp[{i}].{k}") for k, v in g.items()})
        cp = Cp.of(*groups)
    else:
        raise InputError("cp: an object (grouped by code) or a list of objects (one per item)")
    qn = str(d["qn"]) if "qn" in d else qn_text(int(datetime.now().timestamp() * 1000), tz)
    return Packet(qn, _value(d["st"], "st"), _value(d["cn"], "cn"), str(d["pw"]), str(d["mn"]), flag, cp,
                  d.get("pnum"), d.get("pno"))


@hj212_app.command("encode")
def encode_cmd(
    packet_json: Annotated[str | None, typer.Argument(help="The packet as JSON (or --json, or stdin).",
                                                      show_default=False)] = None,
    json_in: Annotated[str | None, typer.Option("--json", help="The packet as JSON (default: read stdin).",
                                                show_default=False)] = None,
    do_split: Annotated[bool, typer.Option("--split", help="Split a CP too long for one packet into "
                                           "PNUM/PNO parts, one per line.")] = False,
    tz: Annotated[str, typer.Option("--tz", help="Time zone for a QN left out (now).")] = "Asia/Shanghai",
) -> None:
    """Build a packet from JSON, e.g. {"st": 39, "cn": 2011, "pw": "AbC123", "mn": "...", "answer": true,
    "cp": {"DataTime": "20240101120000", "a34002-Rtd": "45.0", "a34002-Flag": "N"}}. Prints the packet
    (CR LF included)."""
    if packet_json is not None and json_in is not None:
        print("give the JSON once: as the argument or with --json", file=sys.stderr)
        raise typer.Exit(2)
    given = packet_json if packet_json is not None else json_in
    text = given if given is not None else sys.stdin.read()
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"--tz: unknown time zone {tz!r}", file=sys.stderr)
        raise typer.Exit(2) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"bad JSON: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    try:
        p = packet_from_json(data, zone)
        parts = split(p) if do_split else [p]
        wire = [encode(q) for q in parts]
    except InputError as exc:
        print(f"bad input: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    except Hj212Error as exc:
        hint = " (use --split)" if exc.reason == "oversize" and not do_split else ""
        print(f"cannot encode ({exc.reason}): {exc}{hint}", file=sys.stderr)
        raise typer.Exit(1) from None
    for w in wire:
        sys.stdout.buffer.write(w)
    sys.stdout.flush()


if __name__ == "__main__":
    hj212_app()
