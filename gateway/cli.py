"""The `plume` command: commissioning tools (config check, plan, read, scan), the demo, and the gateway itself."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from gateway.cli_args import csv_list as _csv
from gateway.cli_args import parse_ids as _parse_ids
from gateway.cli_audit import run_audit
from gateway.cli_console import LazyConsole, Table
from gateway.config import ConfigError, RtuBus, RtuOverTcpBus, TcpBus, site_schema
from gateway.grafana_push import grafana_app
from gateway.hj212.cli import hj212_app
from gateway.site.load import load_site
from gateway.site.model import Site

app = typer.Typer(
    name="plume", no_args_is_help=True, pretty_exceptions_enable=False,
    help="Plume edge gateway: dust monitors and stack CEMS over Modbus and serial, to MQTT, InfluxDB and HJ 212.",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"plume {version('plume-gateway')}")
        except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
            print("plume (not installed: pip install -e .)")
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False,
) -> None:
    """Plume edge gateway: dust monitors and stack CEMS over Modbus and serial, to MQTT, InfluxDB and HJ 212."""
config_app = typer.Typer(no_args_is_help=True, help="Check a site file, or print its JSON Schema.")
profiles_app = typer.Typer(no_args_is_help=True, help="The built-in device profiles.")
app.add_typer(config_app, name="config")
app.add_typer(profiles_app, name="profiles")
app.add_typer(hj212_app, name="hj212", help="Decode and encode HJ 212 packets (debugging tools for integrators).")
app.add_typer(grafana_app, name="grafana", help="Push the Grafana boards to a running Grafana.")

# rich is imported at the first print (never by `plume run`); piped output gets wide lines (gateway.cli_console)
out = LazyConsole()
err = LazyConsole(stderr=True)

SiteFile = Annotated[Path, typer.Argument(help="Site file (YAML).", show_default=False)]


def load_or_exit(path: Path) -> Site:
    """Load a site file; on problems print one line each (with the line of the file) on stderr and exit 2."""
    try:
        return load_site(path)
    except ConfigError as exc:
        for line in exc.located():
            print(line, file=sys.stderr)
        raise typer.Exit(2) from None


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="A site file, a device profile or a rule pack (YAML).",
                                         show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout: ok, summary, problems "
                                          "(path, message, line), warnings.")] = False,
) -> None:
    """Validate a site file, a profile or a rule pack: prints `ok`, or one `path: problem (line N)` line per
    problem and exits 2. Warnings (a site that runs but probably not as meant, e.g. no sinks) are
    `warning: path: message` lines on stderr."""
    from gateway.site.files import check_file

    try:
        summary, warnings = check_file(file)
    except ConfigError as exc:
        if as_json:
            problems = [{"path": p.split(": ", 1)[0], "message": p.split(": ", 1)[-1], "line": n}
                        for p, n in zip(exc.problems, exc.lines, strict=False)]
            print(json.dumps({"ok": False, "file": str(file), "problems": problems, "warnings": []},
                             ensure_ascii=False))
        else:
            for line in exc.located():
                print(line, file=sys.stderr)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps({"ok": True, "file": str(file), "summary": summary, "problems": [], "warnings": warnings},
                         ensure_ascii=False))
        return
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(summary)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the site file."""
    print(json.dumps(site_schema(), indent=2))


@profiles_app.command("list")
def profiles_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per profile and line.")] = False,
) -> None:
    """List the built-in profiles."""
    from gateway.profile import builtin_profile_names, load_profile

    table = Table("profile", "kind", "protocol", "channels", "description", box=None)
    for name in builtin_profile_names():
        p = load_profile(name)
        if as_json:
            print(json.dumps({"profile": name, "kind": p.kind, "protocol": p.protocol,
                              "channels": [r.channel for r in p.registers], "description": p.description},
                             ensure_ascii=False))
        else:
            table.add_row(name, p.kind, p.protocol, str(len(p.registers)), p.description)
    if not as_json:
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


@app.command("audit")
def audit(
    file: SiteFile,
    since: Annotated[str | None, typer.Option(help="Only entries since: 30m, 24h, 7d or a local date/time.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """The audit trail: every command and change (platform commands, acknowledgements, maintenance, overrides,
    configuration loads, start and stop) with time, source, parameters (secrets masked) and result."""
    site = load_or_exit(file)
    run_audit(site.config.store.log_path(site.path), ZoneInfo(site.config.site.timezone), since, as_json)


@app.command("plan")
def plan(
    file: SiteFile,
    device: Annotated[str | None, typer.Option(help="Only this device.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per bus and line.")] = False,
    probe: Annotated[bool, typer.Option(
        help="Poll each device once first and show the plan it accepted (reads it refused across unmapped "
             "registers are split at the gaps, as `plume run` does).")] = False,
) -> None:
    """Show how each device's registers are coalesced into requests, and the wire cost of a poll cycle."""
    from gateway.acquisition.planner import (
        Request,
        one_request_per_item,
        plan_profile,
        rtu_bytes,
        rtu_wire_time_s,
        tcp_bytes,
    )

    site = load_or_exit(file)

    def show(*args: Any, **kw: Any) -> None:
        if not as_json:
            out.print(*args, **kw)

    accepted: dict[str, list[Request]] = {}
    if probe:
        from gateway.acquisition.poller import Acquisition

        acq = Acquisition(site, lambda _r: None)
        asyncio.run(acq.poll_once([device] if device else None))
        accepted = {name: st.decoder.plan for name, st in acq.states.items()}
        for name, notes in acq.narrowed().items():
            show(f"device {name} refused a read across unmapped registers; split at the gaps: "
                 f"{'; '.join(notes)}. Put `max_gap: 0` on device {name} in the site file to plan it so.")
    for bus in site.config.buses:
        devices = [d for d in site.devices_on(bus.name) if device in (None, d.name)]
        if not devices:
            continue
        if not isinstance(bus, RtuBus | TcpBus | RtuOverTcpBus):
            names = ", ".join(d.name for d in devices)
            show(f"[bold]bus {bus.name}[/] (serial frames, {bus.baudrate} baud): {names} — sensor pushes frames")
            if as_json:
                print(json.dumps({"bus": bus.name, "type": bus.type, "baudrate": bus.baudrate,
                                  "devices": [{"device": d.name, "profile": d.profile.name} for d in devices]}))
            continue
        framing = tcp_bytes if isinstance(bus, TcpBus) else rtu_bytes
        show(f"[bold]bus {bus.name}[/] ({bus.type}{_baud(bus)})")
        cycle, naive_cycle = [], []
        doc: dict[str, Any] = {"bus": bus.name, "type": bus.type, "devices": []}
        for d in devices:
            reqs = accepted.get(d.name) or plan_profile(d.profile)
            naive = one_request_per_item(d.profile)
            cycle += reqs
            naive_cycle += naive
            nbytes = sum(sum(framing(r)) for r in reqs)
            nbytes_naive = sum(sum(framing(r)) for r in naive)
            show(f"  device {d.name} (profile {d.profile.name}, address {d.config.address}): "
                      f"{_n(len(reqs), 'request')}, {nbytes} bytes per poll (one per channel: "
                      f"{_n(len(naive), 'request')}, {nbytes_naive} bytes)")
            c = d.config
            tries = c.retries + 1
            word = "try" if tries == 1 else "tries"
            show(f"    shaped by max_registers_per_request {d.profile.max_registers_per_request}, max_gap "
                      f"{d.profile.max_gap}; if dead: {c.timeout_s:g} s x {tries} {word} = {c.timeout_s * tries:g} s "
                      f"of every {c.poll_interval_s:g} s poll interval, then one try per probe", soft_wrap=True)
            table = Table("fc", "start", "count", "channels", box=None, padding=(0, 2))
            for r in reqs:
                carried = [getattr(it, "channel", f"status@{it.address}") for it in r.items]
                table.add_row(str(r.function), f"{r.address} (0x{r.address:04X})", str(r.count), " ".join(carried))
            show(table)
            doc["devices"].append({
                "device": d.name, "profile": d.profile.name, "address": c.address, "bytes": nbytes,
                "requests": [{"function": r.function, "address": r.address, "count": r.count,
                              "channels": [getattr(it, "channel", f"status@{it.address}") for it in r.items]}
                             for r in reqs],
                "one_per_channel": {"requests": len(naive), "bytes": nbytes_naive},
                "max_registers_per_request": d.profile.max_registers_per_request, "max_gap": d.profile.max_gap,
                "dead_cost_s": c.timeout_s * tries, "poll_interval_s": c.poll_interval_s})
        total = sum(sum(framing(r)) for r in cycle)
        line = f"  cycle: {_n(len(cycle), 'request')}, {total} bytes on the wire"
        doc["cycle"] = {"requests": len(cycle), "bytes": total}
        if not isinstance(bus, TcpBus):
            # RTU over TCP: the serial side's framing is unknown here; 10-bit characters (8N1), as the link paces
            bits = 10 if isinstance(bus, RtuOverTcpBus) else 1 + bus.bytesize + (bus.parity != "N") + bus.stopbits
            wire = rtu_wire_time_s(cycle, bus.baudrate, bits) * 1000
            naive_wire = rtu_wire_time_s(naive_cycle, bus.baudrate, bits) * 1000
            doc["cycle"] |= {"wire_ms": round(wire, 1), "baudrate": bus.baudrate, "bits_per_character": bits}
            line += (f", {wire:.1f} ms at {bus.baudrate} baud, {bits} bits per character (one request per channel: "
                     f"{_n(len(naive_cycle), 'request')}, {naive_wire:.1f} ms)")
        show(line)
        if as_json:
            print(json.dumps(doc, ensure_ascii=False))


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
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per device and line, in the MQTT data "
                                          "payload's shape.")] = False,
) -> None:
    """Poll every device once and print each channel with value, unit and data flag."""
    from gateway.acquisition.poller import Acquisition

    site = load_or_exit(file)
    known = {d.name for d in site.devices}
    for name in device or []:
        if name not in known:
            err.print(f"no device {name!r} in {file} (devices: {', '.join(sorted(known))})")
            raise typer.Exit(2)
    acq = Acquisition(site, lambda _r: None)
    readings = asyncio.run(acq.poll_once(device))
    if as_json:
        from gateway.sinks.contract import data_payload
        from gateway.store.records import ReadingRecord

        for r in readings:
            # the MQTT data payload (gateway.sinks.contract); `seq` is null: this reading is not in a durable log
            body = json.loads(data_payload(ReadingRecord(0, r.ts, r.site, 0, r)))
            body["seq"] = None
            print(json.dumps(body, ensure_ascii=False))
    else:
        from gateway.core.localtime import zone
        from gateway.display import readings_table

        out.print(readings_table(readings, tz=zone(site.config.site.timezone)))
    for r in readings:
        if not r.ok:
            err.print(dead_device_hint(site, r.device, r.error), soft_wrap=True)
    for name, notes in acq.narrowed().items():
        err.print(f"device {name} refused a read across unmapped registers; read split at the gaps: "
                  f"{'; '.join(notes)}. Put `max_gap: 0` on device {name} in the site file to plan it so.")
    if readings and not any(r.ok for r in readings):
        raise typer.Exit(1)


def dead_device_hint(site: Site, name: str, error: str) -> str:
    """One line for a device that gave no reading: what happened and what to check, for its kind of bus."""
    dev = next(d for d in site.devices if d.name == name)
    bus = site.bus(dev.config.bus)
    tries = dev.config.retries + 1
    what = f"{name}: {error}" + (f" ({tries} tries)" if "no answer" in error and tries > 1 else "")
    if isinstance(bus, TcpBus | RtuOverTcpBus):
        scan = f"plume scan --tcp {bus.host}:{bus.port}{' --rtu-over-tcp' if isinstance(bus, RtuOverTcpBus) else ''}"
        if "cannot open" in error or "unavailable" in error:
            return f"{what}; check that {bus.host}:{bus.port} is on and reachable (network, IP address, port)"
        serial = ", the RS-485 wiring (A/B) and the serial server's baud rate and parity" if isinstance(
            bus, RtuOverTcpBus) else ""
        return (f"{what}; check the unit id (address {dev.config.address}){serial}, or find the device with "
                f"`{scan} --ids 1-247`")
    if isinstance(bus, RtuBus):
        return (f"{what}; check the wiring (A/B, ground, termination), the slave id (address {dev.config.address}), "
                f"baud rate and parity ({bus.baudrate} {bus.bytesize}{bus.parity}{bus.stopbits}), or find it with "
                f"`plume scan --port {bus.port} --baudrate {bus.baudrate} --parity {bus.parity} --ids 1-247`")
    return f"{what}; check the sensor's power, its TX wire to the UART and the baud rate ({bus.baudrate})"


@app.command("scan")
def scan(
    port: Annotated[str | None, typer.Option(help="Serial port of an RS-485 line.")] = None,
    baudrate: Annotated[str, typer.Option(help="Baud rate(s) of the line, e.g. 9600 or 9600,19200,4800.")] = "9600",
    parity: Annotated[str, typer.Option(help="Parity(ies): N, E, O, or a list such as N,E.")] = "N",
    tcp: Annotated[str | None, typer.Option(help="HOST:PORT of a Modbus TCP device or gateway.")] = None,
    rtu_over_tcp: Annotated[bool, typer.Option(help="With --tcp: RTU frames through a serial server.")] = False,
    ids: Annotated[str, typer.Option(help="Slave ids to try, e.g. 1-247 or 1,2,5-9.")] = "1-247",
    function: Annotated[int, typer.Option(help="Read function to probe with (3 or 4).")] = 3,
    address: Annotated[int, typer.Option(help="Register to probe.")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each id.")] = 0.2,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object at the end: what answered, where.")] = False,
) -> None:
    """Find which slave ids answer on a line, at each baud rate and parity given. Any answer, even a Modbus
    exception, means a device is there. Progress on stderr, a summary at the end."""
    import functools
    import time

    from rich.progress import Progress

    from gateway.acquisition.link import ModbusLink, ReadError

    if (port is None) == (tcp is None):
        err.print("give exactly one of --port PATH or --tcp HOST:PORT")
        raise typer.Exit(2)
    buses: list[RtuBus | TcpBus | RtuOverTcpBus] = []
    if port is not None:
        bauds = _csv(baudrate, "--baudrate")
        if not all(b.isdigit() for b in bauds):
            raise typer.BadParameter("--baudrate: numbers such as 9600 or 9600,19200")
        for b in bauds:
            for par in _csv(parity, "--parity", ("N", "E", "O")):
                buses.append(RtuBus(name="scan", type="rtu", port=port, baudrate=int(b), parity=par))
    else:
        host, _, p = (tcp or "").rpartition(":")
        if not host or not p.isdigit():
            raise typer.BadParameter("--tcp takes HOST:PORT")
        buses.append(RtuOverTcpBus(name="scan", type="rtu_over_tcp", host=host, port=int(p)) if rtu_over_tcp
                     else TcpBus(name="scan", type="tcp", host=host, port=int(p)))
    id_list = _parse_ids(ids)
    serial = isinstance(buses[0], RtuBus)

    def setting(bus: RtuBus | TcpBus | RtuOverTcpBus) -> str:
        return f"{bus.baudrate} {bus.bytesize}{bus.parity}{bus.stopbits}" if isinstance(bus, RtuBus) else ""

    async def go() -> list[tuple[str, int, str]]:
        found: list[tuple[str, int, str]] = []
        refused: list[ReadError] = []
        with Progress(console=err.console, transient=True) as progress:
            for bus in buses:
                link = ModbusLink(bus, io_timeout_s=max(3.0, timeout + 1))
                label = f"{link.where}{' at ' + setting(bus) if serial else ''}"
                if not err.is_terminal:
                    err.print(f"scanning {label}: {len(id_list)} ids", soft_wrap=True)
                task = progress.add_task(f"scanning {label}", total=len(id_list))
                try:
                    await probe(link, found, bus, functools.partial(progress.advance, task))
                except ReadError as exc:
                    # one setting the port refuses (a pty takes no parity) is said and skipped; all of them: fail
                    refused.append(exc)
                    if len(refused) == len(buses):
                        raise
                    err.print(f"cannot scan {label}: {' '.join(str(exc).split())}", soft_wrap=True)
                except Exception as exc:  # the port refuses this setting (a pty takes no parity): say so, go on
                    err.print(f"cannot scan {label}: {' '.join(str(exc).split()) or type(exc).__name__}",
                              soft_wrap=True)
                finally:
                    link.close()
        return found

    async def probe(link: ModbusLink, found: list[tuple[str, int, str]], bus: RtuBus | TcpBus | RtuOverTcpBus,
                    advance: Callable[[], None]) -> None:
        for i in id_list:
            try:
                words = await link.read(function, address, 1, i, timeout)
                found.append((setting(bus), i, f"answered: register {address} = {words[0]}"))
            except ReadError as e:
                if e.kind == "exception":
                    found.append((setting(bus), i, f"answered with {e}"))
                elif e.kind == "garbled":
                    hint = ": check baud rate and parity" if serial else ""
                    found.append((setting(bus), i, f"something answered but garbled ({e}){hint}"))
                elif e.kind == "link":
                    raise
            advance()

    started = time.monotonic()
    try:
        found = asyncio.run(go())
    except ReadError as e:
        err.print(f"scan failed: {e}")
        raise typer.Exit(1) from None
    tried = f"{len(buses)} setting{'s' if len(buses) > 1 else ''} x {len(id_list)} ids" if serial else \
        f"{len(id_list)} ids"
    took = f"{tried} in {time.monotonic() - started:.0f} s"
    if as_json:
        print(json.dumps({
            "where": f"{port}" if port is not None else tcp, "ids": len(id_list),
            "settings": [setting(b) for b in buses] if serial else [],
            "seconds": round(time.monotonic() - started, 1),
            "found": [{"id": i, "setting": where or None, "answer": what, "device": "garbled" not in what}
                      for where, i, what in found]}, ensure_ascii=False))
        if not found:
            raise typer.Exit(1)
        return
    if not found:
        out.print(f"no device answered on {ids} (function {function}, register {address}, timeout {timeout:g} s; "
                  f"{took})")
        raise typer.Exit(1)
    for where, i, what in found:
        out.print(f"id {i:3d}{' at ' + where if serial and len(buses) > 1 else ''}: {what}")
    answered = [f"id {i}{' at ' + where if serial and len(buses) > 1 else ''}" for where, i, what in found
                if "garbled" not in what]
    out.print(f"found {len(answered)} device{'s' if len(answered) != 1 else ''}"
              f"{': ' + ', '.join(answered) if answered else ''} ({took})")


@app.command("init")
def init(
    file: Annotated[Path, typer.Argument(help="The site file to write.", show_default=False)] = Path("site.yaml"),
    site_id: Annotated[str, typer.Option("--site-id", help="The site's id.")] = "my-site",
    timezone: Annotated[str, typer.Option("--timezone", help="IANA zone of the site.")] = "Asia/Shanghai",
    port: Annotated[str, typer.Option(help="Serial port of the RS-485 line.")] = "/dev/ttyUSB0",
    tcp: Annotated[str | None, typer.Option(help="HOST:PORT of a Modbus TCP device instead of a serial line.")] = None,
    baudrate: Annotated[int, typer.Option(help="Baud rate of the line.")] = 9600,
    parity: Annotated[str, typer.Option(help="N, E or O.")] = "N",
    device: Annotated[list[str] | None, typer.Option(
        help="NAME:PROFILE:ADDRESS of a device (repeatable), e.g. dust-1:dust-monitor:1.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter site file (site, zone, one bus, devices), checked before it is written."""
    from gateway.site.load import parse_site
    from gateway.site.starter import StarterDevice, starter_site
    from gateway.yamlio import load_yaml_text

    devices: list[StarterDevice] = []
    for spec in device or []:
        name, _, rest = spec.partition(":")
        profile, _, address = rest.partition(":")
        if not name or not profile or not address.isdigit():
            raise typer.BadParameter(f"--device {spec!r}: use NAME:PROFILE:ADDRESS, e.g. dust-1:dust-monitor:1")
        devices.append(StarterDevice(name, profile, int(address)))
    if file.exists() and not force:
        err.print(f"{file} exists; --force overwrites it")
        raise typer.Exit(2)
    text = starter_site(site_id, timezone, port=None if tcp else port, tcp=tcp, baudrate=baudrate,
                        parity=parity.upper(), devices=devices)
    try:
        parse_site(load_yaml_text(text), file.resolve())
    except ConfigError as exc:
        for line in exc.problems:
            err.print(f"cannot write {file}: {line}", soft_wrap=True)
        raise typer.Exit(2) from None
    file.write_text(text, encoding="utf-8")
    out.print(f"wrote {file}: edit it, then `plume config check {file}`")


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
    from gateway.core.clock import SPEEDUP_ENV, speedup_from_environment
    from gateway.demo import run_demo

    try:
        fast = speedup_from_environment()  # fast motion, as `plume run` (the tests' demo runs at x4)
    except ValueError as exc:
        err.print(f"plume demo: {exc}")
        raise typer.Exit(2) from None
    if fast != 1.0:
        err.print(f"{SPEEDUP_ENV}: the clock runs {fast:g} times as fast as real time (tests only)")
    path = file or _example_site()
    site = load_or_exit(path)
    raise typer.Exit(run_demo(site, duration=duration, seed=seed, console=out.console, log_dir=log_dir,
                              with_servers=with_servers))


def _example_site() -> Path:
    here = Path(__file__).resolve().parent.parent / "deploy" / "examples" / "sim-site.yaml"
    return here if here.is_file() else Path("deploy/examples/sim-site.yaml")


from gateway.export import export_command  # noqa: E402 - `plume export` reads the durable log

app.command("export")(export_command)

from gateway.cli_discover import discover_command  # noqa: E402 - `plume discover` sweeps RS-485 lines

app.command("discover")(discover_command)


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
