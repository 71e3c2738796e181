"""`plume discover`: the command line of gateway/discover.py (parse, sweep with progress, print the entry)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli_args import csv_list as _csv
from gateway.cli_args import parse_ids as _parse_ids
from gateway.cli_console import LazyConsole
from gateway.discover import BAUD_RATES, PARITIES, FoundDevice, discover_line, entry, lines_of, starter
from gateway.discover import as_json as json_doc

_BAUDS = ", ".join(map(str, BAUD_RATES))


def discover_command(
    port: Annotated[list[str], typer.Option(help="Serial port of an RS-485 line (repeatable: one per line).",
                                            show_default=False)],
    baudrate: Annotated[str, typer.Option(help=f"Baud rates to try, in order (default {_BAUDS}).",
                                          show_default=False)] = ",".join(map(str, BAUD_RATES)),
    parity: Annotated[str, typer.Option(help="Parities to try, in order.")] = ",".join(PARITIES),
    ids: Annotated[str, typer.Option(help="Slave ids to try, e.g. 1-247 or 1,2,5-9.")] = "1-247",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each id (a device that answered gets at least "
                                           "0.5 s per register while its profile is worked out).")] = 0.2,
    first: Annotated[bool, typer.Option("--first", help="Stop at the first device found on each line.")] = False,
    all_settings: Annotated[bool, typer.Option(
        "--all-settings", help="Go on with the other settings after one where devices answered.")] = False,
    init: Annotated[Path | None, typer.Option(help="Also write a starter site file (as `plume init`) holding "
                                                    "what was found.")] = None,
    site_id: Annotated[str, typer.Option("--site-id", help="With --init: the site's id.")] = "my-site",
    timezone: Annotated[str, typer.Option("--timezone", help="With --init: IANA zone of the site.")] = "Asia/Shanghai",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: lines, devices, profile fits.")] = False,
) -> None:
    """Find the devices on RS-485 lines: sweep baud rates, parities and ids (progress on stderr; Ctrl-C shows what
    was found so far), fingerprint each device against the built-in profiles, and print a ready-to-paste
    `buses:` and `devices:` block for the site file."""
    err = LazyConsole(stderr=True)
    bauds = _csv(baudrate, "--baudrate")
    if not all(b.isdigit() for b in bauds):
        raise typer.BadParameter("--baudrate: numbers such as 9600 or 9600,19200")
    parities = _csv(parity, "--parity", PARITIES)
    id_list = _parse_ids(ids)
    if init is not None and init.exists():
        err.print(f"{init} exists: choose another file for --init")
        raise typer.Exit(2)
    found: list[FoundDevice] = []

    def say(text: str) -> None:
        err.print(text, soft_wrap=True)

    async def sweep() -> None:
        for p in port:
            await discover_line(p, found, baudrates=[int(b) for b in bauds], parities=parities, ids=id_list,
                                timeout_s=timeout, first=first, all_settings=all_settings, say=say)

    interrupted = False
    try:
        asyncio.run(sweep())
    except KeyboardInterrupt:
        interrupted = True
        say(f"interrupted: {len(found)} device{'s' if len(found) != 1 else ''} found so far")
    lines = lines_of(found, port)
    if as_json:
        print(json.dumps(json_doc(lines, interrupted), ensure_ascii=False))
    elif lines:
        print(f"# found by plume discover{' (interrupted)' if interrupted else ''}: paste into the site file")
        print(entry(lines), end="")
    if not lines:
        say("no device answered: check the wiring (A/B, ground, termination) and the power, or widen --ids")
        raise typer.Exit(130 if interrupted else 1)
    if init is not None:
        from gateway.site.load import parse_site
        from gateway.yamlio import load_yaml_text

        text = starter(lines, site_id, timezone)
        parse_site(load_yaml_text(text), init.resolve())
        init.write_text(text, encoding="utf-8")
        say(f"wrote {init}: edit it, then `plume config check {init}`")
    if interrupted:
        raise typer.Exit(130)
