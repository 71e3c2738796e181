"""The `plume` command: commissioning tools (config check, plan, read, scan), the demo, and the gateway itself."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateway.config import ConfigError, RtuBus, RtuOverTcpBus, TcpBus, site_schema
from gateway.grafana_push import grafana_app
from gateway.hj212.cli import hj212_app
from gateway.site.load import load_site
from gateway.site.model import Site

app = typer.Typer(
    name="plume", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Plume edge gateway: dust monitors and stack CEMS over Modbus and serial, to MQTT, InfluxDB and HJ 212.",
)
config_app = typer.Typer(no_args_is_help=True, help="Check a site file, or print its JSON Schema.")
profiles_app = typer.Typer(no_args_is_help=True, help="The built-in device profiles.")
app.add_typer(config_app, name="config")
app.add_typer(profiles_app, name="profiles")
app.add_typer(hj212_app, name="hj212", help="Decode and encode HJ 212 packets (debugging tools for integrators).")
app.add_typer(grafana_app, name="grafana", help="Push the Grafana boards to a running Grafana.")

# Piped output (CI logs, `| less`) gets wide lines instead of rich's 80-column default.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)

SiteFile = Annotated[Path, typer.Argument(help="Site file (YAML).", show_default=False)]


def load_or_exit(path: Path) -> Site:
    """Load a site file; on problems print one line each on stderr and exit 2 (no traceback)."""
    try:
        return load_site(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        raise typer.Exit(2) from None


@config_app.command("check")
def config_check(file: SiteFile) -> None:
    """Validate a site file: prints `ok`, or one `path: problem` line per problem and exits 2."""
    site = load_or_exit(file)
    del site
    print("ok")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the site file."""
    print(json.dumps(site_schema(), indent=2))


@profiles_app.command("list")
def profiles_list() -> None:
    """List the built-in profiles."""
    from gateway.profile import builtin_profile_names, load_profile

    table = Table("profile", "kind", "protocol", "channels", "description", box=None)
    for name in builtin_profile_names():
        p = load_profile(name)
        table.add_row(name, p.kind, p.protocol, str(len(p.registers)), p.description)
    out.print(table)


@profiles_app.command("show")
def profiles_show(name: str) -> None:
    """Print a built-in profile's file (copy it to start your own)."""
    from gateway.profile import find_profile_file

    path = find_profile_file(name)
    if path is None:
        err.print(f"no profile {name!r}; `plume profiles list` shows the built-ins")
        raise typer.Exit(2)
    print(path.read_text(encoding="utf-8"), end="")


@app.command("plan")
def plan(file: SiteFile, device: Annotated[str | None, typer.Option(help="Only this device.")] = None) -> None:
    """Show how each device's registers are coalesced into requests, and the wire cost of a poll cycle."""
    from gateway.acquisition.planner import (
        one_request_per_item,
        plan_profile,
        rtu_bytes,
        rtu_wire_time_s,
        tcp_bytes,
    )

    site = load_or_exit(file)
    for bus in site.config.buses:
        devices = [d for d in site.devices_on(bus.name) if device in (None, d.name)]
        if not devices:
            continue
        if not isinstance(bus, RtuBus | TcpBus | RtuOverTcpBus):
            names = ", ".join(d.name for d in devices)
            out.print(f"[bold]bus {bus.name}[/] (serial frames, {bus.baudrate} baud): {names} — sensor pushes frames")
            continue
        framing = tcp_bytes if isinstance(bus, TcpBus) else rtu_bytes
        out.print(f"[bold]bus {bus.name}[/] ({bus.type}{_baud(bus)})")
        cycle, naive_cycle = [], []
        for d in devices:
            reqs = plan_profile(d.profile)
            naive = one_request_per_item(d.profile)
            cycle += reqs
            naive_cycle += naive
            nbytes = sum(sum(framing(r)) for r in reqs)
            nbytes_naive = sum(sum(framing(r)) for r in naive)
            out.print(f"  device {d.name} (profile {d.profile.name}, address {d.config.address}): "
                      f"{_n(len(reqs), 'request')}, {nbytes} bytes per poll (one per channel: "
                      f"{_n(len(naive), 'request')}, {nbytes_naive} bytes)")
            table = Table("fc", "start", "count", "channels", box=None, padding=(0, 2))
            for r in reqs:
                carried = [getattr(it, "channel", f"status@{it.address}") for it in r.items]
                table.add_row(str(r.function), f"{r.address} (0x{r.address:04X})", str(r.count), " ".join(carried))
            out.print(table)
        total = sum(sum(framing(r)) for r in cycle)
        line = f"  cycle: {_n(len(cycle), 'request')}, {total} bytes on the wire"
        if not isinstance(bus, TcpBus):
            bits = 11 if isinstance(bus, RtuOverTcpBus) else 1 + bus.bytesize + (bus.parity != "N") + bus.stopbits
            wire = rtu_wire_time_s(cycle, bus.baudrate, bits) * 1000
            naive_wire = rtu_wire_time_s(naive_cycle, bus.baudrate, bits) * 1000
            line += (f", {wire:.1f} ms at {bus.baudrate} baud, {bits} bits per character (one request per channel: "
                     f"{_n(len(naive_cycle), 'request')}, {naive_wire:.1f} ms)")
        out.print(line)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _baud(bus: RtuBus | TcpBus | RtuOverTcpBus) -> str:
    if isinstance(bus, RtuBus):
        return f" {bus.port} {bus.baudrate} {bus.bytesize}{bus.parity}{bus.stopbits}"
    return f" {bus.host}:{bus.port}"


@app.command("read")
def read(
    file: SiteFile,
    device: Annotated[list[str] | None, typer.Option(help="Only this device (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per device, one per line.")] = False,
) -> None:
    """Poll every device once and print each channel with value, unit and data flag."""
    from gateway.acquisition.poller import Acquisition

    site = load_or_exit(file)
    known = {d.name for d in site.devices}
    for name in device or []:
        if name not in known:
            err.print(f"no device {name!r} in {file} (devices: {', '.join(sorted(known))})")
            raise typer.Exit(2)
    readings = asyncio.run(Acquisition(site, lambda _r: None).poll_once(device))
    if as_json:
        for r in readings:
            print(json.dumps(r.as_json(), ensure_ascii=False))
    else:
        from gateway.display import readings_table

        out.print(readings_table(readings))
    if readings and not any(r.ok for r in readings):
        raise typer.Exit(1)


def _parse_ids(text: str) -> list[int]:
    ids: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise typer.BadParameter(f"{part!r}: use ids like 1-247 or 1,2,10-20") from None
        if not (0 <= a <= b <= 247):
            raise typer.BadParameter(f"{part!r}: slave ids are 0..247")
        ids.update(range(a, b + 1))
    return sorted(ids)


@app.command("scan")
def scan(
    port: Annotated[str | None, typer.Option(help="Serial port of an RS-485 line.")] = None,
    baudrate: Annotated[int, typer.Option(help="Baud rate of the line.")] = 9600,
    parity: Annotated[str, typer.Option(help="N, E or O.")] = "N",
    tcp: Annotated[str | None, typer.Option(help="HOST:PORT of a Modbus TCP device or gateway.")] = None,
    rtu_over_tcp: Annotated[bool, typer.Option(help="With --tcp: RTU frames through a serial server.")] = False,
    ids: Annotated[str, typer.Option(help="Slave ids to try, e.g. 1-247 or 1,2,5-9.")] = "1-247",
    function: Annotated[int, typer.Option(help="Read function to probe with (3 or 4).")] = 3,
    address: Annotated[int, typer.Option(help="Register to probe.")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each id.")] = 0.2,
) -> None:
    """Find which slave ids answer on a line. Any answer, even a Modbus exception, means a device is there."""
    from rich.progress import Progress

    from gateway.acquisition.link import ModbusLink, ReadError

    if (port is None) == (tcp is None):
        err.print("give exactly one of --port PATH or --tcp HOST:PORT")
        raise typer.Exit(2)
    if port is not None:
        if parity not in ("N", "E", "O"):
            raise typer.BadParameter("parity must be N, E or O")
        bus: RtuBus | TcpBus | RtuOverTcpBus = RtuBus(name="scan", type="rtu", port=port, baudrate=baudrate,
                                                      parity=parity)
    else:
        host, _, p = (tcp or "").rpartition(":")
        if not host or not p.isdigit():
            raise typer.BadParameter("--tcp takes HOST:PORT")
        bus = (RtuOverTcpBus(name="scan", type="rtu_over_tcp", host=host, port=int(p)) if rtu_over_tcp
               else TcpBus(name="scan", type="tcp", host=host, port=int(p)))
    id_list = _parse_ids(ids)

    async def go() -> list[tuple[int, str]]:
        link = ModbusLink(bus, io_timeout_s=max(3.0, timeout + 1))
        found: list[tuple[int, str]] = []
        try:
            with Progress(console=err, transient=True) as progress:
                task = progress.add_task(f"scanning {link.where}", total=len(id_list))
                for i in id_list:
                    try:
                        words = await link.read(function, address, 1, i, timeout)
                        found.append((i, f"answered: register {address} = {words[0]}"))
                    except ReadError as e:
                        if e.kind == "exception":
                            found.append((i, f"answered with {e}"))
                        elif e.kind == "garbled":
                            found.append((i, f"something answered but garbled ({e}): check baud rate and parity"))
                        elif e.kind == "link":
                            raise
                    progress.advance(task)
        finally:
            link.close()
        return found

    try:
        found = asyncio.run(go())
    except ReadError as e:
        err.print(f"scan failed: {e}")
        raise typer.Exit(1) from None
    if not found:
        out.print(f"no device answered on {ids} (function {function}, register {address}, timeout {timeout:g} s)")
        raise typer.Exit(1)
    for i, what in found:
        out.print(f"id {i:3d}: {what}")


@app.command("demo")
def demo(
    file: Annotated[Path | None, typer.Argument(help="Site file (default: the example simulated site).")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")] = None,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 1,
    log_dir: Annotated[Path, typer.Option(help="Folder of the demo's durable log.")] = Path("/tmp/plume-demo"),
    with_servers: Annotated[bool, typer.Option(
        help="Also start Mosquitto and InfluxDB (when installed) on loopback and deliver to them.")] = False,
) -> None:
    """Simulated devices on loopback and the real gateway polling them, live in the terminal."""
    from gateway.demo import run_demo

    path = file or _example_site()
    site = load_or_exit(path)
    raise typer.Exit(run_demo(site, duration=duration, seed=seed, console=out, log_dir=log_dir,
                              with_servers=with_servers))


def _example_site() -> Path:
    here = Path(__file__).resolve().parent.parent / "deploy" / "examples" / "sim-site.yaml"
    return here if here.is_file() else Path("deploy/examples/sim-site.yaml")


try:  # `plume run` lives with the durable pipeline
    from gateway.cli_run import run_command
except ImportError:  # pragma: no cover - only while that module does not exist yet
    pass
else:
    app.command("run")(run_command)

from gateway.cli_cockpit import register as register_cockpit_views  # noqa: E402  (status, alarms, log, cockpit)

register_cockpit_views(app)


if __name__ == "__main__":
    app()
