"""One endpoint per bus of the site file: what the gateway connects to, made of ptys and TCP servers.

Each endpoint has start(), stop() and a one-line description for the ready message.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from gateway.config import RtuBus, RtuOverTcpBus, SerialFrameBus, TcpBus
from plume_sim.device import SimDevice
from plume_sim.emitter import FrameEmitter
from plume_sim.ptys import PtyPort
from plume_sim.rtu_link import Clock, OnSend, RtuLine, RtuReceiver, Timing, char_time_s
from plume_sim.tcp_server import ModbusTcpServer, RtuOverTcpServer


class Endpoint(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def describe(self) -> str: ...


def _members(devices: list[SimDevice]) -> str:
    return " ".join(f"{d.name}@{d.address}" for d in devices) or "(none)"


class RtuPtyEndpoint:
    """An RS-485 line on a pty: every device on the bus answers at its slave id, to a master at the bus's line
    settings only (a master at another baud rate, odd/not-odd parity or stop bits gets silence, as on a real line;
    `wrong_settings` counts the bytes so ignored)."""

    def __init__(self, bus: RtuBus, devices: list[SimDevice], *, pace: bool, turnaround_ms: float | None,
                 clock: Clock, on_send: OnSend):
        self.bus = bus
        self.devices = devices
        self.port = PtyPort(bus.port)
        char = char_time_s(bus.baudrate, bus.bytesize, bus.parity, bus.stopbits)
        self.line = RtuLine(devices, Timing.of(char, pace, turnaround_ms), clock, on_send)
        self.rx: RtuReceiver | None = None
        self.wrong_settings = 0

    async def start(self) -> None:
        self.port.open()
        loop = asyncio.get_running_loop()
        rx = self.rx = RtuReceiver(self.line, self.port.write, self.bus.name)
        rx.start()
        loop.add_reader(self.port.master, lambda: self._readable(loop))

    def _readable(self, loop: asyncio.AbstractEventLoop) -> None:
        data = self.port.read()
        if not data or self.rx is None:
            return
        master = self.port.line_settings()
        if master is None or not master.heard_by(self.bus.baudrate, self.bus.parity, self.bus.stopbits):
            # a master at other settings: framing errors at the slaves, nobody hears a request
            self.wrong_settings += len(data)
            return
        self.rx.feed(data, loop.time())

    async def stop(self) -> None:
        if self.port.master >= 0:
            asyncio.get_running_loop().remove_reader(self.port.master)
        if self.rx is not None:
            await self.rx.stop()
        self.port.close()

    def describe(self) -> str:
        pacing = "paced" if self.line.timing.pace else "unpaced"
        return (f"rtu {self.bus.name}: {self.bus.port} ({self.bus.baudrate} baud, {pacing}) "
                f"devices {_members(self.devices)}")


class TcpEndpoint:
    def __init__(self, bus: TcpBus, devices: list[SimDevice], *, clock: Clock, on_send: OnSend):
        self.bus = bus
        self.devices = devices
        self.server = ModbusTcpServer(bus.host, bus.port, bus.name, devices, clock, on_send)

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    def describe(self) -> str:
        return f"tcp {self.bus.name}: {self.server.host}:{self.server.port} devices {_members(self.devices)}"


class RtuOverTcpEndpoint:
    """A serial server: RTU frames over TCP, paced at the baud rate of its RS-485 side."""

    def __init__(self, bus: RtuOverTcpBus, devices: list[SimDevice], *, pace: bool, turnaround_ms: float | None,
                 clock: Clock, on_send: OnSend):
        self.bus = bus
        self.devices = devices
        timing = Timing.of(char_time_s(bus.baudrate), pace, turnaround_ms)
        self.server = RtuOverTcpServer(bus.host, bus.port, bus.name, RtuLine(devices, timing, clock, on_send))

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    def describe(self) -> str:
        pacing = "paced" if self.server.line.timing.pace else "unpaced"
        return (f"rtu_over_tcp {self.bus.name}: {self.server.host}:{self.server.port} ({self.bus.baudrate} baud, "
                f"{pacing}) devices {_members(self.devices)}")


class SerialFrameEndpoint:
    """A UART on a pty carrying one frame sensor's frames (or nothing, when the bus has no sensor)."""

    def __init__(self, bus: SerialFrameBus, devices: list[SimDevice], *, pace: bool, period_s: float,
                 clock: Clock, on_send: OnSend):
        self.bus = bus
        self.port = PtyPort(bus.port)
        self.device = devices[0] if devices else None
        self.period_s = period_s
        self.pace = pace
        self.emitter: FrameEmitter | None = None
        if self.device is not None:
            char = char_time_s(bus.baudrate, bus.bytesize, bus.parity, bus.stopbits)
            self.emitter = FrameEmitter(self.device, self.port, period_s=period_s, char_s=char, pace=pace,
                                        clock=clock, on_send=on_send)

    async def start(self) -> None:
        self.port.open()
        if self.emitter is not None:
            self.emitter.start()

    async def stop(self) -> None:
        if self.emitter is not None:
            await self.emitter.stop()
        self.port.close()

    def describe(self) -> str:
        pacing = "paced" if self.pace else "unpaced"
        what = (f"{self.device.protocol} frames every {self.period_s:g} s from {self.device.name}"
                if self.device is not None else "no device")
        return f"serial {self.bus.name}: {self.bus.port} ({self.bus.baudrate} baud, {pacing}) {what}"
