"""One Modbus link (serial port, TCP connection, or RTU tunnelled over TCP), one transaction at a time.

pymodbus does the framing; this wrapper owns what a shared RS-485 line needs on top: its own timeout per device,
no hidden retries or reconnect loops inside the library, a pause between requests, and telling apart silence,
garbled answers and exception responses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from gateway.config import RtuBus, RtuOverTcpBus, TcpBus

log = logging.getLogger(__name__)
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # we report failures ourselves, once, with context

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


QUIET_AFTER_FAILURE_S = 0.1  # silence that ends a late or dripping answer before the line is used again


class ReadError(Exception):
    """A read that produced no data. `kind` is timeout | garbled | exception | link."""

    def __init__(self, kind: str, message: str, code: int = 0):
        super().__init__(message)
        self.kind = kind
        self.code = code


def char_time_s(baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> float:
    return (1 + bytesize + (0 if parity == "N" else 1) + stopbits) / baudrate


def default_pause_s(bus: RtuBus | TcpBus | RtuOverTcpBus) -> float:
    """Silence between requests: 3.5 characters on a serial line (1.75 ms above 19200 baud), none on TCP."""
    if bus.pause_ms is not None:
        return bus.pause_ms / 1000
    if isinstance(bus, RtuBus):
        if bus.baudrate > 19200:
            return 0.00175
        return 3.5 * char_time_s(bus.baudrate, bus.bytesize, bus.parity, bus.stopbits)
    if isinstance(bus, RtuOverTcpBus):
        return 3.5 * char_time_s(bus.baudrate)
    return 0.0


class ModbusLink:
    def __init__(self, bus: RtuBus | TcpBus | RtuOverTcpBus, io_timeout_s: float = 3.0):
        self.bus = bus
        self.io_timeout_s = io_timeout_s
        self.pause_s = default_pause_s(bus)
        self._rx_bytes = 0
        self._client: Any = None
        self._last_end = 0.0
        self._last_rx = 0.0
        self._failed = False  # the last transaction ended without a valid answer
        self.reconnects = 0
        self.connected_once = False

    def _make_client(self) -> Any:
        common: dict[str, Any] = {
            "retries": 0, "reconnect_delay": 0, "timeout": self.io_timeout_s, "trace_packet": self._trace,
        }
        b = self.bus
        if isinstance(b, RtuBus):
            return AsyncModbusSerialClient(
                b.port, framer=FramerType.RTU, baudrate=b.baudrate, bytesize=b.bytesize, parity=b.parity,
                stopbits=b.stopbits, **common,
            )
        framer = FramerType.RTU if isinstance(b, RtuOverTcpBus) else FramerType.SOCKET
        return AsyncModbusTcpClient(b.host, port=b.port, framer=framer, **common)

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._rx_bytes += len(data)
            self._last_rx = asyncio.get_running_loop().time()
        return data

    async def _wait_for_quiet(self, limit_s: float) -> None:
        """After a failed transaction on a shared line, wait until nobody is talking any more (a slave still
        sending its late answer would collide with the next request, or be taken for its answer)."""
        if not self._failed or isinstance(self.bus, TcpBus):
            return
        loop = asyncio.get_running_loop()
        quiet_s = max(self.pause_s, QUIET_AFTER_FAILURE_S)
        deadline = loop.time() + limit_s
        while (wait := self._last_rx + quiet_s - loop.time()) > 0 and loop.time() < deadline:
            await asyncio.sleep(min(wait, deadline - loop.time()))

    @property
    def where(self) -> str:
        b = self.bus
        return b.port if isinstance(b, RtuBus) else f"{b.host}:{b.port}"

    @property
    def is_open(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    async def open(self) -> None:
        """Connect (or reconnect). Raises ReadError('link') when the port or host is not there."""
        if self.is_open:
            return
        self.close()
        self._client = self._make_client()
        if not await self._client.connect():
            self._client.close()
            self._client = None
            raise ReadError("link", f"cannot open {self.where}")
        if self.connected_once:
            self.reconnects += 1
        self.connected_once = True

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _transact(self, call: Callable[[Any], Awaitable[Any]], timeout_s: float) -> Any:
        """One request/answer on the link, after the pause the line needs; the answer, or ReadError."""
        await self.open()
        loop = asyncio.get_running_loop()
        await self._wait_for_quiet(timeout_s)
        wait = self._last_end + self.pause_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._rx_bytes = 0
        self._failed = True
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation (shutdown would hang)
            async with asyncio.timeout(timeout_s):
                rr = await call(self._client)
        except TimeoutError:
            if not isinstance(self.bus, RtuBus):
                # a late answer must not be taken for the next one, nor a server busy with this one waited on
                self.close()
            if self._rx_bytes:
                msg = f"{self._rx_bytes} bytes received but no valid frame (CRC/framing)"
                raise ReadError("garbled", msg) from None
            raise ReadError("timeout", f"no answer within {timeout_s:g} s") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # pymodbus raises ConnectionException / ModbusIOException on a broken link
            self.close()
            raise ReadError("link", f"link error on {self.where}: {exc}") from None
        finally:
            self._last_end = loop.time()
        self._failed = False
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            raise ReadError("exception", f"Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})", code)
        return rr

    async def write(self, function: int, address: int, value: int, device_id: int, timeout_s: float) -> None:
        """FC 5 (one coil: `value` true/false) or FC 6 (one holding register); ReadError when it did not happen."""
        if function not in (5, 6):
            raise ValueError(f"function {function} is not a single write (5 or 6)")

        def call(client: Any) -> Any:
            if function == 5:
                return client.write_coil(address, bool(value), device_id=device_id)
            return client.write_register(address, int(value), device_id=device_id)

        await self._transact(call, timeout_s)

    async def read(self, function: int, address: int, count: int, device_id: int, timeout_s: float) -> list[int]:
        """Registers (FC 3/4) or bits (FC 1/2) as a list of ints; ReadError when there is nothing usable."""
        names = {1: "read_coils", 2: "read_discrete_inputs", 3: "read_holding_registers", 4: "read_input_registers"}

        def call(client: Any) -> Any:
            return getattr(client, names[function])(address, count=count, device_id=device_id)

        rr = await self._transact(call, timeout_s)
        return checked_answer(rr, function, count)


def checked_answer(rr: Any, function: int, count: int) -> list[int]:
    """The bits or registers of a read's answer, or ReadError('garbled') when the answer is not the one asked for:
    another function code, fewer or more data than `count` (bits come padded to whole bytes, no further)."""
    got_fc = int(getattr(rr, "function_code", function)) & 0x7F
    if got_fc != function:
        raise ReadError("garbled", f"answer to function {function} came with function {got_fc}")
    if function in (1, 2):
        bits = list(getattr(rr, "bits", None) or [])
        if not count <= len(bits) <= 8 * ((count + 7) // 8):
            raise ReadError("garbled", f"asked {count} bits, got {len(bits)} ({len(bits) // 8} bytes)")
        return [int(b) for b in bits[:count]]
    regs = list(getattr(rr, "registers", None) or [])
    if len(regs) != count:
        raise ReadError("garbled", f"asked {count} registers, got {len(regs)}")
    return regs
