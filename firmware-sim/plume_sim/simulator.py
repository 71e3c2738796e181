"""The simulator: every device of a site file, served on the buses the file names, with faults and a truth log.

    async with Simulator(site, seed=1) as sim:
        sim.set_fault("dust-1", "timeout:0.3")
        ...

`start()` returns once every pty and server is ready; `stop()` closes them and removes the pty links.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config import ConfigError, RtuBus, RtuOverTcpBus, SerialFrameBus, TcpBus
from gateway.core.clock import speedup
from gateway.site.load import load_site
from gateway.site.model import Site
from plume_sim.buses import Endpoint, RtuOverTcpEndpoint, RtuPtyEndpoint, SerialFrameEndpoint, TcpEndpoint
from plume_sim.control import ControlServer, parse_address
from plume_sim.device import SimDevice
from plume_sim.faults import Fault, FaultError, parse_fault
from plume_sim.modbus_slave import Answer
from plume_sim.model import DeviceModel, HintError, Value
from plume_sim.truth import TruthLog


class SimError(Exception):
    """The simulator cannot start as asked; `problems` are one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Simulator:
    def __init__(
        self,
        site: Site | str | Path,
        *,
        seed: int = 1,
        truth_path: str | Path | None = None,
        pace: bool = True,
        turnaround_ms: float | None = None,
        faults: Iterable[str] = (),
        control: str | None = None,
        frame_period_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[str], None] | None = None,
    ):
        """faults: "DEVICE:KIND[:ARG]" strings; control: "HOST:PORT" on loopback; clock: wall time in seconds.

        Raises SimError (a bad site file, `sim:` hint, fault or control address), one problem per line.
        """
        if not isinstance(site, Site):
            try:
                site = load_site(site)
            except ConfigError as exc:
                raise SimError(exc.problems) from None
        self.site = site
        self.seed = seed
        self.pace = pace
        self.turnaround_ms = turnaround_ms
        self.frame_period_s = frame_period_s
        self.clock = clock
        self.on_event = on_event
        self.truth = TruthLog(truth_path)
        self.devices: dict[str, SimDevice] = {}
        self.endpoints: list[Endpoint] = []
        self.control: ControlServer | None = None
        self._control_address = control
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._served = 0
        self._started = False
        problems: list[str] = []
        tz = ZoneInfo(site.config.site.timezone)
        for d in site.devices:
            try:
                model = DeviceModel(d, seed=seed, site=site.id, tz=tz)
            except HintError as exc:
                problems.extend(exc.problems)
                continue
            self.devices[d.name] = SimDevice(d, model, seed)
        if control is not None:
            try:
                parse_address(control)
            except ValueError as exc:
                problems.append(str(exc))
        for spec in faults:
            name, sep, kind = spec.partition(":")
            if not sep or not kind:
                problems.append(f"fault {spec!r}: expected DEVICE:KIND[:ARG]")
                continue
            try:
                self.set_fault(name, parse_fault(kind, self.device(name).resolved.profile))
            except (KeyError, FaultError) as exc:
                problems.append(f"fault {spec!r}: {exc.args[0] if exc.args else exc}")
        if problems:
            raise SimError(problems)

    # --- life cycle -------------------------------------------------------------------------------------

    def _bus_devices(self, bus: str) -> list[SimDevice]:
        """Enabled devices first; a disabled one is simulated too when its address is free."""
        members = sorted((d for d in self.devices.values() if d.resolved.config.bus == bus),
                         key=lambda d: not d.resolved.config.enabled)
        out: list[SimDevice] = []
        taken: set[int] = set()
        for d in members:
            if d.protocol == "modbus" and d.address in taken:
                continue
            if d.protocol != "modbus" and out:
                continue
            taken.add(d.address)
            out.append(d)
        return out

    def _endpoint(self, bus: RtuBus | TcpBus | RtuOverTcpBus | SerialFrameBus) -> Endpoint:
        devices = self._bus_devices(bus.name)
        if isinstance(bus, RtuBus):
            return RtuPtyEndpoint(bus, devices, pace=self.pace, turnaround_ms=self.turnaround_ms,
                                  clock=self.clock, on_send=self._sent)
        if isinstance(bus, TcpBus):
            return TcpEndpoint(bus, devices, clock=self.clock, on_send=self._sent)
        if isinstance(bus, RtuOverTcpBus):
            return RtuOverTcpEndpoint(bus, devices, pace=self.pace, turnaround_ms=self.turnaround_ms,
                                      clock=self.clock, on_send=self._sent)
        return SerialFrameEndpoint(bus, devices, pace=self.pace, period_s=self.frame_period_s,
                                   clock=self.clock, on_send=self._sent)

    async def start(self) -> None:
        """Open every pty and server; returns when all are ready. SimError when one cannot be made."""
        if self._started:
            return
        self.truth.open()
        self._started = True
        for bus in self.site.config.buses:
            ep = self._endpoint(bus)
            try:
                await ep.start()
            except OSError as exc:
                await ep.stop()
                await self.stop()
                where = getattr(bus, "port", "")
                if isinstance(bus, TcpBus | RtuOverTcpBus):
                    where = f"{bus.host}:{bus.port}"
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise SimError([f"{bus.type} {bus.name}: cannot serve on {where}: {reason}"]) from None
            self.endpoints.append(ep)
        if self._control_address is not None:
            self.control = ControlServer(self, self._control_address)
            try:
                await self.control.start()
            except OSError as exc:
                await self.stop()
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise SimError([f"control {self._control_address}: {reason}"]) from None
        loop = asyncio.get_running_loop()
        for name, dev in self.devices.items():
            if dev.reboot_until is not None:
                self._schedule_reboot_end(name, dev, loop)

    async def stop(self) -> None:
        """Close everything and remove the pty links (idempotent)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self.control is not None:
            await self.control.stop()
            self.control = None
        for ep in reversed(self.endpoints):
            await ep.stop()
        self.endpoints.clear()
        self.truth.close()
        self._started = False

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def describe(self) -> list[str]:
        """One line per bus (and the control port), as printed when ready."""
        lines = [ep.describe() for ep in self.endpoints]
        if self.control is not None:
            lines.append(f"control: {self.control.host}:{self.control.port}")
        return lines

    @property
    def control_port(self) -> int | None:
        return self.control.port if self.control is not None else None

    # --- faults -----------------------------------------------------------------------------------------

    def device(self, name: str) -> SimDevice:
        try:
            return self.devices[name]
        except KeyError:
            raise KeyError(f"no device {name!r} (devices: {', '.join(self.devices) or 'none'})") from None

    def set_fault(self, device: str, fault: str | Fault | None) -> None:
        """Give a device a fault ("timeout:0.5", ...) or clear it (None). KeyError / ValueError when invalid."""
        dev = self.device(device)
        if isinstance(fault, str):
            try:
                fault = parse_fault(fault, dev.resolved.profile)
            except FaultError as exc:
                raise ValueError(f"{device}: {exc}") from None
        dev.set_fault(fault, self.clock())
        timer = self._timers.pop(device, None)
        if timer is not None:
            timer.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and self._started and dev.reboot_until is not None:
            self._schedule_reboot_end(device, dev, loop)
        self._event(f"{device}: fault {fault}" if fault is not None else f"{device}: fault cleared")

    def _schedule_reboot_end(self, name: str, dev: SimDevice, loop: asyncio.AbstractEventLoop) -> None:
        assert dev.reboot_until is not None
        delay = max(0.0, dev.reboot_until - self.clock()) / speedup()  # (fast-motion tests: shorter)

        def done() -> None:
            self._timers.pop(name, None)
            if dev.expire(max(self.clock(), dev.reboot_until or 0.0)):
                self._event(f"{name}: back after reboot (run hours reset)")

        self._timers[name] = loop.call_later(delay, done)

    @property
    def faults(self) -> dict[str, str]:
        """Current faults by device name."""
        now = self.clock()
        for d in self.devices.values():
            d.expire(now)
        return {n: str(d.fault) for n, d in self.devices.items() if d.fault is not None}

    # --- what happened ----------------------------------------------------------------------------------

    def written(self, device: str) -> list[dict[str, Any]]:
        """Writes the device received, oldest first: {"ts", "function", "address", "values", "channels"}."""
        return [dict(w) for w in self.device(device).writes]

    @property
    def served_count(self) -> int:
        """Answers and frames sent so far, all devices (faulty ones included)."""
        return self._served

    def values(self, device: str, t: float | None = None) -> dict[str, Value]:
        """The engineering values a device serves at time t (default now), faults applied."""
        dev = self.device(device)
        now = self.clock() if t is None else t
        return dev.values(list(dev.resolved.profile.registers), now)

    def _sent(self, dev: SimDevice, ans: Answer, transmitted: bool) -> None:
        if not ans.verdict.corrupt:
            self.truth.served(ans.ts_ms, dev.name, ans.served)
            if ans.write is not None:
                self.truth.write(ans.ts_ms, dev.name, ans.write)
                self._event(f"{dev.name}: write {ans.write}")
        if transmitted:
            dev.served += 1
            self._served += 1

    def _event(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)
