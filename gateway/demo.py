"""`plume demo`: the simulator and the real gateway in one process, live values in the terminal.

Nothing external is needed: the simulator serves the site's devices on loopback TCP and ptys, and the gateway
polls them exactly as it would poll real hardware.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from gateway.acquisition.poller import Acquisition, DeviceHealth
from gateway.alarms.events import AlarmEvent
from gateway.core.clock import now_ms
from gateway.core.localtime import clock_time, zone
from gateway.core.model import DeviceReading
from gateway.display import compact_readings_table, time_header
from gateway.site.load import assemble
from gateway.site.model import Site
from gateway.store.records import LogRecord, ReadingRecord

if TYPE_CHECKING:
    from gateway.localservers import Server


def health_table(health: Iterable[DeviceHealth], device_width: int, width: int) -> Table:
    """Devices: polls, success, latency, state; fixed column widths (the last error is cut to the terminal)."""
    table = Table(title="devices", box=None, padding=(0, 1), expand=False)
    for name, w in (("device", device_width), ("bus", 10), ("polls", 6), ("ok %", 5), ("latency ms", 10)):
        table.add_column(name, width=w, no_wrap=True, overflow="ellipsis")
    table.add_column("state", width=max(10, width - device_width - 10 - 6 - 5 - 10 - 12), no_wrap=True,
                     overflow="ellipsis")
    for h in health:
        state = "[green]online[/]" if h.online else f"[red]offline[/] {h.last_error}"
        lat = f"{h.last_latency_ms:.1f}" if h.last_latency_ms is not None else "—"
        table.add_row(h.device, h.bus, str(h.polls), f"{100 * h.success_rate:.0f}", lat, state)
    return table


def with_local_servers(site: Site, folder: Path, console: Console) -> tuple[Site, list[Server]]:
    """Start Mosquitto and InfluxDB 1.x on free loopback ports when their binaries are here, and add sinks for
    them to the site. Whatever is missing is said once; the demo then runs without it."""
    from gateway.localservers import InfluxDB, Mosquitto
    from gateway.sinks.config import InfluxSinkConfig, MqttSinkConfig

    servers: list[Server] = []
    sinks: list[Any] = []
    if shutil.which("mosquitto"):
        mq = Mosquitto(folder / "mosquitto")
        mq.start()
        servers.append(mq)
        sinks.append(MqttSinkConfig(type="mqtt", name="mosquitto", host="127.0.0.1", port=mq.port))
        console.print(f"Mosquitto on 127.0.0.1:{mq.port}: watch it with "
                      f"[bold]mosquitto_sub -p {mq.port} -t 'plume/#' -v[/]")
    else:
        console.print("[yellow]no mosquitto binary here (apt-get install mosquitto): running without MQTT[/]")
    if shutil.which("influxd"):
        db = InfluxDB(folder / "influxdb")
        db.start()
        servers.append(db)
        sinks.append(InfluxSinkConfig(type="influx", name="influxdb", api="v1", url=db.url, database="plume"))
        console.print(f"InfluxDB on {db.url}: query it with [bold]influx -port {db.port} -database plume "
                      "-execute 'SHOW MEASUREMENTS'[/]")
    else:
        console.print("[yellow]no influxd binary here (apt-get install influxdb): running without InfluxDB[/]")
    cfg = site.config.model_copy(update={"sinks": [*site.config.sinks, *sinks]})
    return assemble(cfg, site.path), servers


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def private_endpoints(site: Site, folder: Path) -> Site:
    """The demo serves every device itself, so it gives each loopback TCP bus a free port and each serial line a
    pty link in its own folder: a second demo, or a `plume-sim` on the same site file, does not collide with it."""
    from gateway.config import RtuBus, RtuOverTcpBus, SerialFrameBus, TcpBus
    from gateway.localservers import free_port

    buses = []
    for bus in site.config.buses:
        if isinstance(bus, TcpBus | RtuOverTcpBus) and bus.host in LOOPBACK:
            bus = bus.model_copy(update={"port": free_port()})
        elif isinstance(bus, RtuBus | SerialFrameBus):
            bus = bus.model_copy(update={"port": str(folder / Path(bus.port).name)})
        buses.append(bus)
    return assemble(site.config.model_copy(update={"buses": buses}), site.path)


def sinks_table(health: Mapping[str, Any]) -> Table:
    table = Table("sink", "connected", "delivered", "waiting in the log", title="sinks", box=None, padding=(0, 1))
    for name, s in (health.get("sinks") or {}).items():
        table.add_row(name, "yes" if s.get("connected") else "[red]no[/]", str(s.get("delivered", 0)),
                      str(s.get("depth", 0)))
    return table


async def demo_main(site: Site, duration: float | None, seed: int, console: Console, log_dir: Path,
                    with_servers: bool = False) -> int:
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="plume-demo-") as private:
        site = private_endpoints(site, Path(private))
        if with_servers:
            site, servers = with_local_servers(site, log_dir / "servers", console)
        try:
            return await _demo(site, duration, seed, console, log_dir)
        finally:
            for server in servers:
                server.stop()


SILENT_FROM_S = 8.0
SILENT_UNTIL_S = 22.0


def script_victim(site: Site) -> str | None:
    """The device the demo silences for a while, so that an alarm is raised and cleared: the last Modbus TCP one."""
    tcp = [d.name for d in site.devices if d.config.enabled and site.bus(d.config.bus).type == "tcp"]
    return tcp[-1] if tcp else None


def alarms_table(events: Sequence[AlarmEvent], tz: ZoneInfo, latest: int = 6, width: int = 160) -> Table:
    """The latest alarm events, times on the site's clock (zone in the header); the message (which names the
    device) is cut to the width."""
    table = Table(title=f"alarm events (latest {latest})", box=None, padding=(0, 1), expand=False)
    table.add_column(time_header(tz, events[-1].ts if events else None), width=14, no_wrap=True)
    table.add_column("event", width=12, no_wrap=True)
    table.add_column("rule", width=10, no_wrap=True, overflow="ellipsis")
    table.add_column("message", width=max(20, width - 14 - 12 - 10 - 8), no_wrap=True, overflow="ellipsis")
    style = {"raised": "bold red", "cleared": "green", "acknowledged": "cyan", "renotify": "yellow",
             "escalated": "magenta"}
    for e in events[-latest:] if latest > 0 else []:
        table.add_row(clock_time(e.ts, tz), f"[{style.get(e.type, 'white')}]{e.type}[/]", e.rule, e.message)
    if not events:
        table.add_row("", "none yet", "", "")
    return table


class LiveView:
    """What `plume demo` shows while it runs: the latest reading of each device (one line each), the devices, the
    sinks and the latest alarm events, sized to the terminal so that nothing is cut off at the bottom, with
    column widths fixed for the run so the view does not jump between refreshes."""

    def __init__(self, site: Site):
        self.site = site
        self.tz = zone(site.config.site.timezone)
        self.order = [d.name for d in site.devices]
        self.device_width = max(6, *(len(n) for n in self.order)) if self.order else 6

    def render(self, latest: Mapping[str, DeviceReading], health: Iterable[DeviceHealth] | None,
               sinks: Mapping[str, Any] | None, events: Sequence[AlarmEvent], width: int, height: int) -> Group:
        devices = list(health) if health is not None else []
        sink_rows = len((sinks or {}).get("sinks") or {}) if sinks is not None else 0
        # fixed parts: every table's title and header, the devices, the sinks
        fixed = 2 + (2 + len(devices) if health is not None else 0) + (2 + sink_rows if sinks is not None else 0) + 2
        room = max(2, height - 1 - fixed)
        n_alarms = min(6, max(1, room // 3))
        readings = [latest[n] for n in self.order if n in latest]
        shown = readings[:max(1, room - n_alarms)]
        title = "latest readings (from the log)"
        if len(shown) < len(readings):
            title += f" (+{len(readings) - len(shown)} more devices not shown)"
        parts: list[Table] = [compact_readings_table(shown, tz=self.tz, width=width, device_width=self.device_width,
                                                     title=title)]
        if health is not None:
            parts.append(health_table(devices, self.device_width, width))
        if sinks is not None:
            parts.append(sinks_table(sinks))
        parts.append(alarms_table(events, self.tz, n_alarms, width))
        return Group(*parts)


async def _demo(site: Site, duration: float | None, seed: int, console: Console, log_dir: Path,
                script: bool = True) -> int:
    from plume_sim import Simulator

    from gateway.pipeline.gateway import Gateway

    latest: dict[str, DeviceReading] = {}
    committed = 0

    events: list[AlarmEvent] = []

    def on_commit(records: list[LogRecord]) -> None:
        nonlocal committed
        for rec in records:
            if isinstance(rec, ReadingRecord):
                latest[rec.reading.device] = rec.reading
                committed += len(rec.reading.values)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started_ms = now_ms()

    def elapsed() -> float:
        """Seconds since the start on the gateway's clock (in fast motion: fast seconds, as the scripted fault)."""
        return (now_ms() - started_ms) / 1000

    log_dir.mkdir(parents=True, exist_ok=True)
    # every consumer the site names (sinks, webhooks, uplinks; --with-servers adds two sinks) is built as in
    # `plume run`; the example site has none
    with_sinks = bool(site.consumers)
    gw = Gateway(site, log_path=log_dir / "log.sqlite", grace_s=1.0, health_interval_s=1.0)
    gw.on_commit(on_commit)
    gw.on_alarm(lambda rec: events.append(rec.payload.event))
    victim = script_victim(site) if script else None
    async with Simulator(site, seed=seed) as sim:
        gw_stop = asyncio.Event()
        task = asyncio.create_task(gw.run(gw_stop), name="plume.gateway")
        await asyncio.wait([task, asyncio.create_task(gw.started.wait())], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # the gateway could not start: raise its error
        console.print(f"simulator up for site [bold]{site.id}[/]: {len(site.devices)} devices; gateway polling, "
                      f"every reading committed to {log_dir / 'log.sqlite'} (Ctrl-C to stop)")
        for line in sim.describe():
            console.print(f"  simulator {line}")
        if victim:
            console.print(f"scripted fault: device {victim} goes silent at {SILENT_FROM_S:.0f} s and answers again at "
                          f"{SILENT_UNTIL_S:.0f} s: watch its alarm")
        fault_on = fault_off = False

        health: dict[str, Any] = {}

        live_view = LiveView(site)

        def view() -> Group:
            size = console.size
            acq_health = gw.source.health().values() if isinstance(gw.source, Acquisition) else None
            return live_view.render(latest, acq_health, health if with_sinks else None, events, size.width,
                                    size.height)

        with Live(view(), console=console, refresh_per_second=2, transient=False) as live:
            while not stop.is_set() and not task.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await stop.wait()
                if with_sinks:
                    health = await gw.health()
                if victim and not fault_on and elapsed() >= SILENT_FROM_S:
                    sim.set_fault(victim, "dead")
                    fault_on = True
                if victim and fault_on and not fault_off and elapsed() >= SILENT_UNTIL_S:
                    sim.set_fault(victim, None)
                    fault_off = True
                live.update(view())
                if duration is not None and elapsed() >= duration:
                    break
        gw_stop.set()
        await task
    console.print()
    if with_sinks:
        for name, sink in (health.get("sinks") or {}).items():
            console.print(f"sink {name}: {sink.get('delivered', 0)} readings delivered")
    kinds = [e.type for e in events]
    console.print(f"{len(events)} alarm events ({', '.join(f'{kinds.count(k)} {k}' for k in dict.fromkeys(kinds))})"
                  if events else "no alarm events")
    console.print(f"{committed} values from {len(latest)} devices committed to the durable log in "
                  f"{elapsed():.0f} s")
    return 0


def run_demo(site: Site, *, duration: float | None, seed: int, console: Console, log_dir: Path,
             with_servers: bool = False) -> int:
    from plume_sim import SimError

    from gateway.pipeline.gateway import FatalError

    try:
        return asyncio.run(demo_main(site, duration, seed, console, log_dir, with_servers))
    except FatalError as exc:
        console.print(f"[red]{exc}[/]")
        return exc.code
    except SimError as exc:
        for line in exc.problems:
            console.print(f"[red]simulator: {line}[/]")
        console.print("The demo serves loopback TCP buses on free ports and serial lines as ptys in a folder of its "
                      "own; a TCP bus on another host must name an address of this machine that is free.")
        return 2
