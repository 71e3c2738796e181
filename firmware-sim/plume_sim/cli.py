"""`plume-sim FILE`: run the simulator for a site file until SIGINT/SIGTERM (or --duration).

Prints one line per bus when ready; a bad site file, fault or address is one line per problem on stderr, exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from plume_sim.simulator import SimError, Simulator

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _print(line: str) -> None:
    print(line, flush=True)


async def _run(sim: Simulator, duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sim.start()
    try:
        for line in sim.describe():
            _print(line)
        _print(f"ready: {len(sim.devices)} devices, seed {sim.seed}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                await stop.wait()
    finally:
        await sim.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    _print(f"stopped: {sim.served_count} answers and frames served")


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Site file (YAML) naming the buses and devices to simulate.")],
    seed: Annotated[int, typer.Option(help="Seed of every value and fault decision.")] = 1,
    truth: Annotated[Path | None, typer.Option(help="Append one JSON line per value served to this file.")] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(metavar="DEVICE:KIND[:ARG]", help="A fault from the start; repeatable (e.g. dust-1:timeout:0.3)."),
    ] = None,
    control: Annotated[
        str | None, typer.Option(metavar="HOST:PORT", help="Loopback port for run-time faults as JSON lines.")
    ] = None,
    pace: Annotated[bool, typer.Option("--pace/--no-pace", help="Pace serial answers to the baud rate.")] = True,
    turnaround_ms: Annotated[
        float | None, typer.Option(help="Slave turnaround before answering (default 3.5 characters).", min=0)
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.", min=0)] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="Print only the ready lines (no fault or write events).")
    ] = False,
) -> None:
    """Simulate every device of a site file on the buses it names."""
    try:
        sim = Simulator(file, seed=seed, truth_path=truth, pace=pace, turnaround_ms=turnaround_ms,
                        faults=fault or (), control=control, on_event=None if quiet else _print,
                        clock=_clock_from_environment())
        asyncio.run(_run(sim, duration))
    except SimError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def main() -> None:
    app()


def _clock_from_environment() -> Callable[[], float]:
    """The devices' clock: real time, or the fast-motion clock a test gives the gateway too (PLUME_CLOCK_SPEEDUP),
    so that signals and fault durations run at the gateway's pace."""
    from gateway.core.clock import now_ms, speedup_from_environment

    try:
        fast = speedup_from_environment()
    except ValueError as exc:
        print(f"plume-sim: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    return time.time if fast == 1.0 else lambda: now_ms() / 1000
