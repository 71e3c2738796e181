"""`plume demo`: the simulator and the real gateway in one process, live values in the terminal.

Nothing external is needed: the simulator serves the site's devices on loopback TCP and ptys, and the gateway
polls them exactly as it would poll real hardware.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from gateway.acquisition.poller import Acquisition
from gateway.config import Site
from gateway.display import readings_table
from gateway.model import DeviceReading


def health_table(acq: Acquisition) -> Table:
    table = Table("device", "bus", "polls", "ok %", "latency ms", "state", title="devices", box=None, padding=(0, 1))
    for h in acq.health().values():
        state = "[green]online[/]" if h.online else f"[red]offline[/] {h.last_error}"
        lat = f"{h.last_latency_ms:.1f}" if h.last_latency_ms is not None else "—"
        table.add_row(h.device, h.bus, str(h.polls), f"{100 * h.success_rate:.0f}", lat, state)
    return table


async def demo_main(site: Site, duration: float | None, seed: int, console: Console) -> int:
    from plume_sim import Simulator

    latest: dict[str, DeviceReading] = {}
    count = 0

    def emit(reading: DeviceReading) -> None:
        nonlocal count
        latest[reading.device] = reading
        count += len(reading.values)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    async with Simulator(site, seed=seed) as _sim:
        console.print(f"simulator up for site [bold]{site.id}[/]: {len(site.devices)} devices; gateway polling "
                      "(Ctrl-C to stop)")
        acq = Acquisition(site, emit)
        task = asyncio.create_task(acq.run(), name="plume.acquisition")

        def view() -> Group:
            order = [d.name for d in site.devices if d.name in latest]
            return Group(readings_table([latest[n] for n in order], title="latest readings"), health_table(acq))

        with Live(view(), console=console, refresh_per_second=2, transient=False) as live:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                live.update(view())
                if duration is not None and time.monotonic() - started >= duration:
                    break
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if task.done() and not task.cancelled() and task.exception():
            raise task.exception()  # type: ignore[misc]
    console.print()
    console.print(f"{count} values read from {len(latest)} devices in {time.monotonic() - started:.0f} s")
    return 0


def run_demo(site: Site, *, duration: float | None, seed: int, console: Console) -> int:
    from plume_sim import SimError

    try:
        return asyncio.run(demo_main(site, duration, seed, console))
    except SimError as exc:
        for line in exc.problems:
            console.print(f"[red]simulator: {line}[/]")
        console.print("Is another `plume demo` or `plume-sim` running on this site file? Stop it, or pass a copy of "
                      "the site file with other ports and paths.")
        return 2
