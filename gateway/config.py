"""The site file: one YAML document describing the site, its buses and its devices.

pydantic models are the single source of truth (also for `plume config schema`). `load_site` adds the checks that
span fields (names, bus membership, addresses, profiles) and reports every problem as `dotted.path: message`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator

from gateway.alarms.actuation import ActuatorConfig
from gateway.alarms.rules import Rule, RulePackRef
from gateway.alarms.webhooks import NotifyConfig
from gateway.core.strict import NAME, Strict
from gateway.hj212.config import UplinkConfig
from gateway.processing.cems import StackConfig
from gateway.processing.quality import MaintenanceConfig, StuckRule
from gateway.processing.windows import WindowsConfig
from gateway.profile import Profile, RegisterSpec, StatusSpec, find_profile_file, load_profile
from gateway.sinks.config import SINK_TYPES, SinkConfig
from gateway.store.config import StoreConfig
from gateway.yamlio import load_yaml


class SiteInfo(Strict):
    id: str = Field(pattern=NAME, description="Site identifier: MQTT topic segment and InfluxDB tag `site`.")
    name: str = ""
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    timezone: str = Field("UTC", description="IANA zone of the site's local clock (windows, HJ 212 times).")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Asia/Shanghai)") from None
        return v


class BusBase(Strict):
    name: str = Field(pattern=NAME)
    pause_ms: float | None = Field(
        None, ge=0, le=10_000, description="Silence between two requests on this bus (default: 3.5 characters)."
    )


class SerialLine(Strict):
    port: str = Field(description="Serial device, e.g. /dev/ttyUSB0 or a pty link.")
    baudrate: int = Field(9600, ge=300, le=921_600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class RtuBus(BusBase, SerialLine):
    """Modbus RTU over RS-485/RS-232."""

    type: Literal["rtu"]


class TcpBus(BusBase):
    """Modbus TCP (MBAP framing)."""

    type: Literal["tcp"]
    host: str
    port: int = Field(502, ge=1, le=65535)


class RtuOverTcpBus(BusBase):
    """Modbus RTU frames tunnelled through a TCP serial server."""

    type: Literal["rtu_over_tcp"]
    host: str
    port: int = Field(4001, ge=1, le=65535)
    baudrate: int = Field(9600, ge=300, le=921_600, description="Baud rate of the RS-485 side, for pacing.")


class SerialFrameBus(BusBase, SerialLine):
    """A serial port carrying one sensor's own frames (PMS5003, SDS011)."""

    type: Literal["serial"]


Bus = Annotated[RtuBus | TcpBus | RtuOverTcpBus | SerialFrameBus, Field(discriminator="type")]
BUS_TYPES = ("rtu", "tcp", "rtu_over_tcp", "serial")


class DeviceConfig(Strict):
    name: str = Field(pattern=NAME, description="Device name: MQTT topic segment and InfluxDB tag `device`.")
    bus: str
    address: int = Field(1, ge=0, le=247, description="Modbus slave id (device_id / unit id).")
    profile: str | None = Field(None, description="Built-in profile name, a name in profiles_dir, or a YAML path.")
    kind: str | None = Field(None, description="Overrides the profile's kind; needed when there is no profile.")
    registers: list[RegisterSpec] = Field(
        default_factory=list, description="Channels added to the profile's (same channel name: replaces it)."
    )
    status: list[StatusSpec] = Field(default_factory=list)
    poll_interval_s: float = Field(10.0, ge=0.05, le=86_400)
    timeout_s: float = Field(1.0, gt=0, le=60)
    retries: int = Field(1, ge=0, le=10)
    max_registers_per_request: int | None = Field(None, ge=1, le=125)
    max_gap: int | None = Field(None, ge=0, le=124)
    backoff_max_s: float = Field(
        300.0, ge=0.1, description="Longest wait between probes of a device that stopped answering."
    )
    enabled: bool = True


class SiteConfig(Strict):
    """A Plume site file."""

    site: SiteInfo
    profiles_dir: list[str] = Field(
        default_factory=list, description="Folders of extra profiles (relative to this file)."
    )
    buses: list[Bus] = Field(default_factory=list)
    devices: list[DeviceConfig] = Field(default_factory=list)
    store: StoreConfig = Field(default_factory=StoreConfig)
    sinks: list[SinkConfig] = Field(default_factory=list)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    stuck: list[StuckRule] = Field(default_factory=list, description="When a repeating value is a frozen sensor.")
    stacks: list[StackConfig] = Field(default_factory=list, description="CEMS derived channels per flue.")
    windows: WindowsConfig = Field(default_factory=WindowsConfig)
    rules: list[Rule] = Field(default_factory=list, description="Alarm rules of this site.")
    rule_packs: list[RulePackRef] = Field(default_factory=list, description="Shipped or own rule packs used here.")
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    actuators: list[ActuatorConfig] = Field(default_factory=list, description="Outputs alarms may switch.")
    uplinks: list[UplinkConfig] = Field(default_factory=list)


@dataclass(slots=True)
class ResolvedDevice:
    """A device with its profile merged: inline registers and per-device limits applied."""

    config: DeviceConfig
    profile: Profile

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(slots=True)
class Site:
    config: SiteConfig
    path: Path
    devices: list[ResolvedDevice]

    @property
    def id(self) -> str:
        return self.config.site.id

    def bus(self, name: str) -> RtuBus | TcpBus | RtuOverTcpBus | SerialFrameBus:
        for b in self.config.buses:
            if b.name == name:
                return b
        raise KeyError(f"no bus named {name!r}")

    def devices_on(self, bus: str) -> list[ResolvedDevice]:
        return [d for d in self.devices if d.config.bus == bus and d.config.enabled]


class ConfigError(Exception):
    """A site file that cannot be used; `problems` are `path: message` lines."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


_TAGS: dict[str, tuple[str, ...]] = {"buses": BUS_TYPES, "sinks": SINK_TYPES}


def format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    prev: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(prev, int) and part in _TAGS.get(out.split("[", 1)[0], ()):
            pass  # pydantic puts the discriminator tag in the path; users never wrote it
        else:
            out += f".{part}" if out else part
        prev = part
    return out or "(file)"


def _pydantic_problems(exc: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for e in exc.errors():
        path = format_loc(tuple(e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        lines.append(f"{prefix}{path}: {msg}")
    return lines


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(data: Any, path: str = "", problems: list[str] | None = None) -> Any:
    """Replace ${VAR} and ${VAR:-default} in string values, so endpoints and secrets come from the environment."""
    problems = problems if problems is not None else []
    if isinstance(data, dict):
        return {k: expand_env(v, f"{path}.{k}" if path else str(k), problems) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, f"{path}[{i}]", problems) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:

        def sub(m: re.Match[str]) -> str:
            val = os.environ.get(m.group(1), m.group(2))
            if val is None:
                problems.append(f"{path}: environment variable {m.group(1)} is not set and has no default")
                return ""
            return val

        # Always text: pydantic turns "1883" into a port number where a number is wanted, and a password or an
        # MN such as 012345 stays exactly as written.
        return _ENV.sub(sub, data)
    return data


def parse_site(data: Any, path: Path) -> Site:
    problems: list[str] = []
    data = expand_env(data, problems=problems)
    if problems:
        raise ConfigError(problems)
    if not isinstance(data, dict):
        raise ConfigError(["(file): a site file is a YAML mapping with site, buses and devices"])
    try:
        cfg = SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_pydantic_problems(exc)) from None
    devices = _resolve(cfg, path.parent, problems)
    if problems:
        raise ConfigError(problems)
    site = Site(cfg, path, devices)
    problems = section_problems(site)
    if problems:
        raise ConfigError(problems)
    return site


def section_problems(site: Site) -> list[str]:
    """Checks of the later sections that span the file (stacks, rules, uplinks name real devices and channels),
    so that `plume config check` catches what `plume run` would otherwise trip over."""
    from gateway.alarms.sitecheck import check_alarms
    from gateway.hj212.wiring import check_uplinks
    from gateway.processing.sitecheck import check_processing

    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, sink in enumerate(site.config.sinks):
        if sink.name in seen:
            problems.append(f"sinks[{i}].name: duplicate sink name {sink.name!r} (also sinks[{seen[sink.name]}])")
        seen.setdefault(sink.name, i)
    problems += check_processing(site)
    problems += check_alarms(site)[1]
    problems += check_uplinks(site)[0]
    return problems


def load_site(path: Path | str) -> Site:
    path = Path(path)
    try:
        data = load_yaml(path)
    except FileNotFoundError:
        raise ConfigError([f"(file): {path} not found"]) from None
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {path}: {exc.strerror}"]) from None
    except Exception as exc:  # yaml errors carry a line and column
        raise ConfigError([f"(file): {path} is not valid YAML: {' '.join(str(exc).split())}"]) from None
    return parse_site(data, path)


def _resolve(cfg: SiteConfig, base: Path, problems: list[str]) -> list[ResolvedDevice]:
    dirs = tuple((base / d) for d in cfg.profiles_dir)
    for i, d in enumerate(dirs):
        if not d.is_dir():
            problems.append(f"profiles_dir[{i}]: {d} is not a folder")
    buses: dict[str, int] = {}
    for i, b in enumerate(cfg.buses):
        if b.name in buses:
            problems.append(f"buses[{i}].name: duplicate bus name {b.name!r} (also buses[{buses[b.name]}])")
        buses.setdefault(b.name, i)
    names: dict[str, int] = {}
    addresses: dict[tuple[str, int], int] = {}
    frame_bus_users: dict[str, int] = {}
    resolved: list[ResolvedDevice] = []
    for i, dev in enumerate(cfg.devices):
        where = f"devices[{i}]"
        if dev.name in names:
            problems.append(f"{where}.name: duplicate device name {dev.name!r} (also devices[{names[dev.name]}])")
        names.setdefault(dev.name, i)
        bus = cfg.buses[buses[dev.bus]] if dev.bus in buses else None
        if bus is None:
            known = ", ".join(buses) or "none defined"
            problems.append(f"{where}.bus: no bus named {dev.bus!r} (buses: {known})")
        profile = _device_profile(dev, dirs, where, problems)
        if profile is None:
            continue
        if bus is not None:
            frames = profile.protocol != "modbus"
            if frames and bus.type != "serial":
                problems.append(f"{where}.bus: profile {profile.name} speaks {profile.protocol} frames; "
                                f"put it on a bus of type serial, not {bus.type}")
            elif not frames and bus.type == "serial":
                problems.append(f"{where}.bus: bus {bus.name} is a raw serial (frames) bus; a Modbus device needs "
                                "rtu, tcp or rtu_over_tcp")
            elif frames:
                if dev.enabled and bus.name in frame_bus_users:
                    problems.append(f"{where}.bus: serial bus {bus.name} already carries "
                                    f"devices[{frame_bus_users[bus.name]}]; a frame sensor needs its own port")
                frame_bus_users.setdefault(bus.name, i)
            elif dev.enabled:
                key = (bus.name, dev.address)
                if key in addresses:
                    problems.append(f"{where}.address: address {dev.address} on bus {bus.name} is already "
                                    f"taken by devices[{addresses[key]}]")
                addresses.setdefault(key, i)
        resolved.append(ResolvedDevice(dev, profile))
    return resolved


def _device_profile(dev: DeviceConfig, dirs: tuple[Path, ...], where: str, problems: list[str]) -> Profile | None:
    base: Profile | None = None
    if dev.profile is not None:
        path = find_profile_file(dev.profile, dirs)
        if path is None:
            problems.append(f"{where}.profile: no profile {dev.profile!r} (a built-in name, a name in "
                            "profiles_dir, or a path to a .yaml file; `plume profiles` lists the built-ins)")
            return None
        try:
            base = load_profile(str(path))
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, prefix=f"{where}.profile ({path}): "))
            return None
        except Exception as exc:
            problems.append(f"{where}.profile: cannot read {path}: {' '.join(str(exc).split())}")
            return None
    elif not dev.registers:
        problems.append(f"{where}.profile: give a profile or inline registers")
        return None
    elif dev.kind is None:
        problems.append(f"{where}.kind: a device without a profile needs a kind (dust, cems, ...)")
        return None
    # a device's own register entry replaces the profile's channel of the same name (a different scale, a sim hint)
    own = {r.channel for r in dev.registers}
    registers = [*(r for r in (base.registers if base else []) if r.channel not in own), *dev.registers]
    status = [*(base.status if base else []), *dev.status]
    merged: dict[str, Any] = {
        "name": base.name if base else dev.name,
        "kind": dev.kind or (base.kind if base else ""),
        "description": base.description if base else "",
        "protocol": base.protocol if base else "modbus",
        "max_registers_per_request": dev.max_registers_per_request
        or (base.max_registers_per_request if base else 125),
        "max_bits_per_request": base.max_bits_per_request if base else 2000,
        "max_gap": dev.max_gap if dev.max_gap is not None else (base.max_gap if base else 8),
        "registers": [r.model_dump() for r in registers],
        "status": [s.model_dump() for s in status],
    }
    try:
        profile = Profile.model_validate(merged)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, prefix=f"{where}: "))
        return None
    nbase = len(registers) - len(dev.registers)
    for j, r in enumerate(profile.registers):
        limit = profile.max_bits_per_request if r.is_bit_function else profile.max_registers_per_request
        if r.words > limit:
            field = f"registers[{j - nbase}].length" if j >= nbase else "max_registers_per_request"
            problems.append(f"{where}.{field}: channel {r.channel} needs {r.words} registers, more than this "
                            f"device's max_registers_per_request {limit}")
    return profile


def site_schema() -> dict[str, Any]:
    return SiteConfig.model_json_schema()
