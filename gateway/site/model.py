"""The assembled site: the validated site file plus what assembly resolved from it. Data only (no checks here),
so that the acquisition and the pipeline can take a `Site` without loading the assembly code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.alarms.rules import Rule
from gateway.config import DeviceConfig, RtuBus, RtuOverTcpBus, SerialFrameBus, SiteConfig, TcpBus
from gateway.hj212.routes import Route
from gateway.profile import Profile


@dataclass(slots=True)
class ResolvedDevice:
    """A device with its profile merged: inline registers and per-device limits applied."""

    config: DeviceConfig
    profile: Profile

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(slots=True, frozen=True)
class Consumer:
    """One reader of the durable log: its name is its cursor; `section` says where the site file defines it
    (`sinks[0]`, `uplinks[1]`, `notify.webhooks[0]`)."""

    name: str
    section: str


@dataclass(slots=True)
class Site:
    """A site ready to run. `rules`, `routes` and `consumers` are resolved once by gateway.site.load."""

    config: SiteConfig
    path: Path
    devices: list[ResolvedDevice]
    rules: list[Rule] = field(default_factory=list)
    routes: dict[str, list[Route]] = field(default_factory=dict)
    consumers: list[Consumer] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # `path: message` lines: usable, but probably not meant

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

    @property
    def base(self) -> Path | None:
        """The folder relative paths of the site file (secrets, certificates, profiles) are resolved against."""
        return self.path.resolve().parent if self.path else None
