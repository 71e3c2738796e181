"""One Modbus link (serial port, TCP connection, or RTU tunnelled over TCP), one transaction at a time.

pymodbus does the framing; this wrapper owns what a shared RS-485 line needs on top: its own timeout per device,
no hidden retries or reconnect loops inside the library, a pause between requests, and telling apart silence,
garbled answers and exception responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import Counter
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


EXCEPTION_HINTS = {
    1: "the device does not support this function code: check `function` in the profile",
    2: "check the register map / profile",
    3: "the device refuses this count or value: check max_registers_per_request / the profile",
    4: "the device reports an internal fault: check the device",
    6: "the device is busy: try a longer poll_interval_s",
}


def exception_text(code: int) -> str:
    """'Modbus exception 2 (illegal data address): check the register map / profile'."""
    text = f"Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"
    hint = EXCEPTION_HINTS.get(code)
    return f"{text}: {hint}" if hint else text


class ReadError(Exception):
    """A read that produced no data. `kind` is timeout | garbled | exception | link."""

    def __init__(self, kind: str, message: str, code: int = 0):
        super().__init__(message)
        self.kind = kind
        self.code = code


def describe(exc: BaseException) -> str:
    """One line for an OS-level error: termios.error (22, 'Invalid argument') -> '[Errno 22] Invalid argument'."""
    import termios

    args: tuple[Any, ...] = tuple(exc.args)
    if isinstance(exc, termios.error) and len(args) == 2 and isinstance(args[0], int):
        return f"[Errno {args[0]}] {args[1]} (the port refused these line settings)"
    return str(exc) or type(exc).__name__


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


class TransportErrors:
    """pymodbus raises inside asyncio's data_received when a TCP frame cannot be decoded, and asyncio logs that as
    'Fatal error: protocol.data_received() call failed' with a traceback, every time. This loop exception handler
    claims those of our links: each becomes a counted bad frame of the device being read, said in one line per
    device and cause. Anything else goes on to the handler that was there before."""

    def __init__(self, previous: Any):
        self.previous = previous
        self.links: weakref.WeakKeyDictionary[Any, ModbusLink] = weakref.WeakKeyDictionary()

    @classmethod
    def install(cls, loop: asyncio.AbstractEventLoop) -> TransportErrors:
        current = loop.get_exception_handler()
        owner = getattr(current, "__self__", None)
        if isinstance(owner, TransportErrors):
            return owner
        handler = cls(current)
        loop.set_exception_handler(handler.handle)
        return handler

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        protocol = context.get("protocol")
        link = self.links.get(protocol) if protocol is not None else None
        exc = context.get("exception")
        if link is None or exc is None:
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        link.transport_error(exc)


def serial_char_s(bus: RtuBus | TcpBus | RtuOverTcpBus) -> float:
    """One character's time on the serial side of a bus (0 on Modbus TCP: no serial line to wait for)."""
    if isinstance(bus, RtuBus):
        return char_time_s(bus.baudrate, bus.bytesize, bus.parity, bus.stopbits)
    if isinstance(bus, RtuOverTcpBus):
        return char_time_s(bus.baudrate)
    return 0.0


RTU_REQUEST_BYTES = 8  # id, fc, address, count or value, CRC: every read and single write


class ModbusLink:
    def __init__(self, bus: RtuBus | TcpBus | RtuOverTcpBus, io_timeout_s: float = 3.0):
        self.bus = bus
        self.io_timeout_s = io_timeout_s
        self.pause_s = default_pause_s(bus)
        self._char_s = serial_char_s(bus)
        self._rx_bytes = 0
        self._client: Any = None
        self._last_end = 0.0
        self._last_rx = 0.0
        self._failed = False  # the last transaction ended without a valid answer
        self.reconnects = 0
        self.connected_once = False
        self.unit = 0  # the device id of the transaction under way
        self.bad_frames: Counter[int] = Counter()  # device id -> answers that arrived but were no valid frame
        self._told: set[tuple[int, str]] = set()
        self._counted = False  # this transaction's bad frame is already counted

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
        """After a failed transaction on a shared line, wait until nobody is talking any more: a slave still
        sending its late answer would collide with the next request, or (RTU has no transaction id) be taken for
        the next request's answer. Waits until QUIET_AFTER_FAILURE_S have passed since the last byte received
        (no wait after a silent timeout: a dead slave must not cost its neighbours more), at most limit_s."""
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
    def settings(self) -> str:
        """' (9600 8E1)' on a serial port: what the port was asked to take."""
        b = self.bus
        return f" ({b.baudrate} {b.bytesize}{b.parity}{b.stopbits})" if isinstance(b, RtuBus) else ""

    @property
    def is_open(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    async def open(self) -> None:
        """Connect (or reconnect). Raises ReadError('link') when the port or host is not there."""
        if self.is_open:
            return
        self.close()
        try:
            self._client = self._make_client()
            connected = await self._client.connect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # termios.error (a port refusing its line settings), SerialException, OSError, ...
            self.close()
            raise ReadError("link", f"cannot open {self.where}{self.settings}: {describe(exc)}") from None
        if not connected:
            self.close()
            raise ReadError("link", f"cannot open {self.where}")
        ctx = getattr(self._client, "ctx", None)
        if ctx is not None:
            TransportErrors.install(asyncio.get_running_loop()).links[ctx] = self
        if self.connected_once:
            self.reconnects += 1
        self.connected_once = True

    def transport_error(self, exc: BaseException) -> None:
        """pymodbus could not decode what arrived (the connection is dropped): one line per device and cause."""
        cause = f"{type(exc).__name__}: {exc}"
        key = (self.unit, cause)
        self.bad_frames[self.unit] += 1
        self._counted = True
        self._rx_bytes = max(self._rx_bytes, 1)  # the read under way reports a garbled answer, not silence
        if key not in self._told:
            self._told.add(key)
            log.warning("%s, device id %d: could not decode an answer (%s); counted as a bad frame, said once",
                        self.where, self.unit, cause)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a half-opened port must not raise over the real cause
                client.close()

    async def _transact(self, call: Callable[[Any], Awaitable[Any]], timeout_s: float, unit: int = 0,
                        wire_s: float = 0.0) -> Any:
        """One request/answer on the link, after the pause the line needs; the answer, or ReadError. The answer
        is waited for `timeout_s` beyond the frames' `wire_s` on a serial line."""
        await self.open()
        loop = asyncio.get_running_loop()
        await self._wait_for_quiet(timeout_s)
        wait = self._last_end + self.pause_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._rx_bytes = 0
        self._failed = True
        self._counted = False
        self.unit = unit
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation (shutdown would hang)
            async with asyncio.timeout(timeout_s + wire_s):
                rr = await call(self._client)
        except TimeoutError:
            if not isinstance(self.bus, RtuBus):
                # a late answer must not be taken for the next one, nor a server busy with this one waited on
                self.close()
            if self._rx_bytes:
                if not self._counted:
                    self.bad_frames[unit] += 1
                msg = f"{self._rx_bytes} bytes received but no valid frame (CRC/framing)"
                raise ReadError("garbled", msg) from None
            after = f" after {wire_s * 1000:.0f} ms on the wire" if wire_s >= 0.0005 else ""
            raise ReadError("timeout", f"no answer within {timeout_s:g} s{after}") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # pymodbus raises ConnectionException / ModbusIOException on a broken link
            self.close()
            _pass_on_a_lost_cancellation()
            raise ReadError("link", f"link error on {self.where}: {exc}") from None
        finally:
            self._last_end = loop.time()
        _pass_on_a_lost_cancellation()
        self._failed = False
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            raise ReadError("exception", exception_text(code), code)
        return rr

    def wire_s(self, function: int, count: int = 1) -> float:
        """Time a request and the answer it asks for take on the serial line. A transaction waits for this plus the
        device's response timeout (a Modbus master's timeout is the device's time to answer): at 1200 baud 11
        registers take 292 ms on the wire, and a 0.2 s timeout that counted the wire would never see the answer.
        0 on Modbus TCP."""
        if not self._char_s:
            return 0.0
        data = (count + 7) // 8 if function in (1, 2) else 2 * count if function in (3, 4) else 3
        return (RTU_REQUEST_BYTES + 3 + data + 2) * self._char_s

    async def write(self, function: int, address: int, value: int, device_id: int, timeout_s: float) -> None:
        """FC 5 (one coil: `value` true/false) or FC 6 (one holding register); ReadError when it did not happen."""
        if function not in (5, 6):
            raise ValueError(f"function {function} is not a single write (5 or 6)")

        def call(client: Any) -> Any:
            if function == 5:
                return client.write_coil(address, bool(value), device_id=device_id)
            return client.write_register(address, int(value), device_id=device_id)

        await self._transact(call, timeout_s, device_id, self.wire_s(function))

    async def read(self, function: int, address: int, count: int, device_id: int, timeout_s: float) -> list[int]:
        """Registers (FC 3/4) or bits (FC 1/2) as a list of ints; ReadError when there is nothing usable."""
        names = {1: "read_coils", 2: "read_discrete_inputs", 3: "read_holding_registers", 4: "read_input_registers"}

        def call(client: Any) -> Any:
            return getattr(client, names[function])(address, count=count, device_id=device_id)

        rr = await self._transact(call, timeout_s, device_id, self.wire_s(function, count))
        try:
            return checked_answer(rr, function, count)
        except ReadError:
            self.bad_frames[device_id] += 1
            raise


def _pass_on_a_lost_cancellation() -> None:
    """pymodbus awaits its answer with asyncio.wait_for, which on Python 3.11 can swallow a cancellation that races
    the answer: the task is still marked as cancelled (`cancelling()`), so raise it here instead of going on."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


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
