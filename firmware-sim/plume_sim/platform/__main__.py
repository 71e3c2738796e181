"""`python -m plume_sim.platform --port N [--record PATH]`: run the HJ 212 platform simulator until SIGINT/SIGTERM.

Prints `ready: listening on HOST:PORT`, then one line per connection and packet (unless --quiet). With
PLUME_CLOCK_SPEEDUP=FACTOR@ANCHOR_MS (fast-motion tests) its clock runs as fast as the gateway's given the same value.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from plume_sim.platform.server import MISBEHAVIOURS, PlatformSim

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _print(line: str) -> None:
    print(line, flush=True)


async def _run(p: PlatformSim) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await p.start()
    try:
        await stop.wait()
    finally:
        await p.stop()
    good = sum(1 for r in p.received if r.error is None)
    _print(f"stopped: {good} packets received, {len(p.errors)} bad")


@app.command()
def run(
    port: Annotated[int, typer.Option(help="TCP port to listen on (0: any free port, printed).", min=0,
                                      max=65535)] = 0,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    record: Annotated[Path | None, typer.Option(help="Append one JSON line per packet received.")] = None,
    pw: Annotated[str | None, typer.Option(help="Refuse packets with another PW.")] = None,
    mn: Annotated[str | None, typer.Option(help="Refuse packets with another MN.")] = None,
    misbehave: Annotated[str | None, typer.Option(metavar="MODE[:DELAY_S]",
                                                  help=f"One of {', '.join(MISBEHAVIOURS)}.")] = None,
    tz: Annotated[str, typer.Option(help="Time zone of the QNs of commands.")] = "Asia/Shanghai",
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only the ready line.")] = False,
) -> None:
    """An HJ 212 platform receiver for tests: validates, answers 9014, records."""
    from gateway.core.clock import speedup_from_environment

    try:
        speedup_from_environment()
    except ValueError as exc:
        print(f"plume_sim.platform: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    p = PlatformSim(host, port, pw=pw, mn=mn, record=record, tz=tz,
                    on_event=_print if not quiet else lambda line: _print(line) if line.startswith("ready") else None)
    if misbehave:
        mode, _, delay = misbehave.partition(":")
        try:
            p.misbehave(mode, delay_s=float(delay) if delay else 12.0)
        except ValueError as exc:
            print(f"--misbehave: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    try:
        asyncio.run(_run(p))
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
