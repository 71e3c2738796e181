"""The site file: one YAML document describing the site, its buses and its devices.

pydantic models are the single source of truth (also for `plume config schema`). `load_site` adds the checks that
span fields (names, bus membership, addresses, profiles) and reports every problem as `dotted.path: message`.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator

from gateway.alarms.actuation import ActuatorConfig
from gateway.alarms.cameras import CameraConfig, SnapshotsConfig
from gateway.alarms.notify import NotifyConfig
from gateway.alarms.rules import Rule, RulePackRef
from gateway.cockpit.config import CockpitConfig
from gateway.config_text import did_you_mean, human_message
from gateway.core.strict import NAME, Strict
from gateway.hj212.config import UplinkConfig
from gateway.processing.cems import StackConfig
from gateway.processing.quality import MaintenanceConfig, StuckRule
from gateway.processing.windows import WindowsConfig
from gateway.profile import RegisterSpec, StatusSpec
from gateway.sinks.config import SINK_TYPES, SinkConfig
from gateway.store.config import StoreConfig


class SiteInfo(Strict):
    id: str = Field(pattern=NAME, description="Site identifier: MQTT topic segment and InfluxDB tag `site`.")
    name: str = ""
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    timezone: str = Field("UTC", description="IANA zone of the site's local clock (windows, HJ 212 times). "
                          "Required (even as UTC) for a site with uplinks, a windows section, window or scheduled "
                          "rules or maintenance windows.")

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


STANDARD_BAUDRATES = (300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 28800, 38400, 57600, 76800, 115200,
                      230400, 460800, 921600)


def standard_baudrate(v: int) -> int:
    """Only rates a UART and the devices on the line really run at: 96000 is a typo, not a speed."""
    if v in STANDARD_BAUDRATES:
        return v
    nearest = min(STANDARD_BAUDRATES, key=lambda r: abs(r - v))
    typo = next((r for r in STANDARD_BAUDRATES if r in (v // 10, v * 10) and r != nearest), None)
    hint = f" (or {typo}, if a digit slipped)" if typo else ""
    raise ValueError(f"{v} is not a standard baud rate; the nearest is {nearest}{hint}. "
                     f"Standard: {', '.join(map(str, STANDARD_BAUDRATES))}")


class SerialLine(Strict):
    port: str = Field(description="Serial device, e.g. /dev/ttyUSB0 or a pty link.")
    baudrate: int = Field(9600, ge=300, le=921_600, description="A standard rate: 1200, 2400, ... 9600, 19200, ...")
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @field_validator("baudrate")
    @classmethod
    def _standard(cls, v: int) -> int:
        return standard_baudrate(v)


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

    @field_validator("baudrate")
    @classmethod
    def _standard(cls, v: int) -> int:
        return standard_baudrate(v)


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
    timeout_s: float = Field(1.0, gt=0, le=60, description="How long the device may take to answer a request. On a "
                             "serial line it is counted once the request and its answer have had their time on the "
                             "wire (292 ms for 11 registers at 1200 baud), as a Modbus master's response timeout.")
    retries: int = Field(1, ge=0, le=10)
    max_registers_per_request: int | None = Field(None, ge=1, le=125)
    max_gap: int | None = Field(None, ge=0, le=124)
    backoff_max_s: float = Field(
        300.0, ge=0.1, description="Longest wait between probes of a device that stopped answering."
    )
    enabled: bool = True


class ClockConfig(Strict):
    """How a platform's time correction (HJ 212 CN 1012) is applied (gateway.core.clock)."""

    set_system: bool = Field(False, description="Set the system clock (needs CAP_SYS_TIME; the shipped systemd "
                             "unit forbids it with ProtectClock=yes). Otherwise an offset kept in "
                             "<store.dir>/clock.json is applied to every timestamp the gateway makes.")


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
    clock: ClockConfig = Field(default_factory=ClockConfig)
    cockpit: CockpitConfig = Field(default_factory=CockpitConfig, description="The local web page (off by default).")
    cameras: list[CameraConfig] = Field(default_factory=list, description="Cameras whose picture goes with alarms.")
    snapshots: SnapshotsConfig = Field(default_factory=SnapshotsConfig, description="Where camera pictures are kept.")


class ConfigError(Exception):
    """A site file that cannot be used; `problems` are `path: message` lines; `lines` the line of the file each
    problem's path starts at (None where unknown), when the loader knew the file's text."""

    def __init__(self, problems: list[str], lines: list[int | None] | None = None):
        super().__init__("\n".join(problems))
        self.problems = problems
        self.lines = lines or [None] * len(problems)

    def located(self) -> list[str]:
        """`path: message (line N)` lines."""
        return [p if n is None else f"{p} (line {n})" for p, n in zip(self.problems, self.lines, strict=False)]


_PATH_TOKEN = re.compile(r"([A-Za-z_][\w-]*)|\[(\d+)\]")


def problem_line(problem: str, index: dict[tuple[str | int, ...], int]) -> int | None:
    """The line of the longest prefix of a problem's `path` (`devices[1].registers[0].type: ...`) in `index`."""
    head = problem.split(": ", 1)[0].split(" ", 1)[0]
    parts: list[str | int] = []
    for m in _PATH_TOKEN.finditer(head):
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
    while parts:
        line = index.get(tuple(parts))
        if line is not None:
            return line
        parts.pop()
    return None


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


def pydantic_problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """Every error as one `path: sentence` line (gateway.config_text). The same mistake in several entries of a
    list (`type: float32` on every register) is one line naming the others."""
    found: dict[tuple[str, str], list[str]] = {}
    for e in exc.errors():
        path = format_loc(tuple(e["loc"]))
        msg = human_message(e)
        if e["type"] == "extra_forbidden" and e["loc"] and isinstance(e["loc"][-1], str):
            guess = did_you_mean(e["loc"][-1], _field_names() - {e["loc"][-1]})
            if guess is not None:
                msg = f"unknown key (typo? did you mean {guess}?)"
        shape = re.sub(r"\[\d+\]", "[*]", path)
        paths = found.setdefault((shape, msg), [])
        if path not in paths:
            paths.append(path)
    lines: list[str] = []
    for (_shape, msg), paths in found.items():
        more = ""
        if len(paths) > 1:
            listed = ", ".join(paths[1:4]) + (", ..." if len(paths) > 4 else "")
            more = f" (the same at {len(paths) - 1} more: {listed})"
        lines.append(f"{prefix}{paths[0]}: {msg}{more}")
    return lines


@cache
def _field_names() -> frozenset[str]:
    """Every key a site file or a profile may use (for `did you mean` on an unknown key)."""
    from gateway.profile import Profile

    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                names.update(props)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(SiteConfig.model_json_schema())
    walk(Profile.model_json_schema())
    return frozenset(names)


def site_schema() -> dict[str, Any]:
    return SiteConfig.model_json_schema()
