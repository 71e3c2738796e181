"""TCP servers: Modbus TCP (MBAP) with one unit id per device, and RTU frames tunnelled over TCP.

A request for a unit id nobody has gets no answer, like a request for a missing slave on an RS-485 line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from plume_sim.device import SimDevice
from plume_sim.modbus_slave import MBAP, answer, mbap_frame, other_unit
from plume_sim.rtu_link import Clock, OnSend, RtuLine, RtuReceiver

TID_CORRUPTION = 0x5A5A  # `crc` on TCP: there is no CRC, so the answer carries a transaction id nobody asked for


class _Server:
    """Owns the listening socket and every connection's task, so stop() leaves nothing behind."""

    def __init__(self, host: str, port: int, name: str):
        self.host = host
        self.port = port
        self.name = name
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The connection runs in its own task: stop() cancels that one, never the callback task asyncio owns.
        task = asyncio.get_running_loop().create_task(self.connection(reader, writer), name=f"plume-sim[{self.name}]")
        self._tasks.add(task)
        try:
            await task
        except (asyncio.CancelledError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            # asyncio's stream callback logs a traceback for a cancelled task: end quietly instead
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class ModbusTcpServer(_Server):
    def __init__(self, host: str, port: int, name: str, devices: list[SimDevice], clock: Clock, on_send: OnSend):
        super().__init__(host, port, name)
        self.devices = {d.address: d for d in devices}
        self.clock = clock
        self.on_send = on_send

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            tid, pid, length, unit = MBAP.unpack(await reader.readexactly(MBAP.size))
            if not 2 <= length <= 254:
                return  # framing lost: a real server drops the connection
            pdu = await reader.readexactly(length - 1)
            dev = self.devices.get(unit)
            if pid != 0 or dev is None:
                continue
            ans = answer(dev, pdu, self.clock())
            if ans is None:
                continue
            v = ans.verdict
            if v.delay_s:
                await asyncio.sleep(v.delay_s)
            if v.corrupt == "garbage":
                data = dev.garbage(v.serial)
            else:
                sender = other_unit(unit) if v.corrupt == "wrong_unit" else unit
                data = mbap_frame(tid ^ TID_CORRUPTION if v.corrupt == "crc" else tid, sender, ans.pdu)
            self.on_send(dev, ans, True)
            if v.drip_s:  # slow drip: one byte at a time
                for byte in data:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(v.drip_s)
                continue
            writer.write(data)
            await writer.drain()


class RtuOverTcpServer(_Server):
    """Each connection gets its own framing; all share one line, as a serial server has one RS-485 port."""

    def __init__(self, host: str, port: int, name: str, line: RtuLine):
        super().__init__(host, port, name)
        self.line = line

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        send: Callable[[bytes], None] = writer.write
        rx = RtuReceiver(self.line, send, self.name)
        rx.start()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    return
                rx.feed(data, loop.time())
        finally:
            await rx.stop()
