"""Modbus RTU on a simulated RS-485 line: request framing, dispatch by slave id, and wire pacing.

A pty (or a TCP tunnel) delivers a request at once, whatever the baud rate. To behave like a real line the answer
leaves only when the request, the turnaround and the response would have taken their time on the wire, measured
from the request's last byte: deadline = t_rx + request_bytes*char + turnaround + response_bytes*char (+ `slow`).
Deadlines come from loop.time(), never from a sum of sleeps, so the overhead stays small and does not accumulate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from plume_sim.device import SimDevice
from plume_sim.modbus_slave import (
    WRITES,
    Answer,
    answer,
    other_unit,
    rtu_crc_ok,
    rtu_frame,
    rtu_request_length,
)

Clock = Callable[[], float]
OnSend = Callable[[SimDevice, Answer, bool], None]  # (device, answer, transmitted)


def char_time_s(baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> float:
    """Seconds one character takes on the wire: start bit, data bits, parity bit, stop bits."""
    return (1 + bytesize + (0 if parity == "N" else 1) + stopbits) / baudrate


@dataclass(frozen=True, slots=True)
class Timing:
    char_s: float
    turnaround_s: float
    pace: bool

    @classmethod
    def of(cls, char_s: float, pace: bool, turnaround_ms: float | None = None) -> Timing:
        turn = 3.5 * char_s if turnaround_ms is None else turnaround_ms / 1000
        return cls(char_s, turn, pace)

    def wire_s(self, request_bytes: int, response_bytes: int) -> float:
        if not self.pace:
            return 0.0
        return (request_bytes + response_bytes) * self.char_s + self.turnaround_s


@dataclass(slots=True)
class Outgoing:
    data: bytes
    deadline: float
    device: SimDevice
    answer: Answer


class RtuLine:
    """One line and the slaves on it; `free_at` keeps answers from overlapping on the half-duplex line."""

    def __init__(self, devices: list[SimDevice], timing: Timing, clock: Clock, on_send: OnSend):
        self.devices = {d.address: d for d in devices}
        self.timing = timing
        self.clock = clock
        self.on_send = on_send
        self.free_at = 0.0

    def process(self, frame: bytes, t_rx: float) -> Outgoing | None:
        """The bytes to answer a request with and when; None for silence (bad CRC, unknown id, fault)."""
        if not rtu_crc_ok(frame):
            return None
        unit, pdu = frame[0], frame[1:-2]
        now = self.clock()
        if unit == 0:  # broadcast: writes are executed, nobody answers
            if pdu and pdu[0] in WRITES:
                for dev in self.devices.values():
                    ans = answer(dev, pdu, now)
                    if ans is not None and ans.write is not None:
                        self.on_send(dev, ans, False)
            return None
        target = self.devices.get(unit)
        if target is None:
            return None
        dev = target
        ans = answer(dev, pdu, now)
        if ans is None:
            return None
        v = ans.verdict
        garbage = v.corrupt == "garbage"
        sender = other_unit(unit) if v.corrupt == "wrong_unit" else unit
        data = dev.garbage(v.serial) if garbage else rtu_frame(sender, ans.pdu, bad_crc=v.corrupt == "crc")
        start = max(t_rx, self.free_at)
        deadline = start + self.timing.wire_s(len(frame), len(data)) + v.delay_s + v.drip_s * len(data)
        self.free_at = deadline
        return Outgoing(data, deadline, dev, ans)


class RtuReceiver:
    """Cuts a byte stream into request frames: by function-code length, else by the 3.5-character silence."""

    def __init__(self, line: RtuLine, send: Callable[[bytes], None], name: str):
        self.line = line
        self.send = send
        self.name = name
        self.gap_s = max(3.5 * line.timing.char_s, 0.002)
        self.buf = bytearray()
        self.last_rx = 0.0
        self.queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._flush: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._worker(), name=f"plume-sim.rtu[{self.name}]")

    async def stop(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def feed(self, data: bytes, t: float) -> None:
        if self.buf and t - self.last_rx > self.gap_s:
            self.buf.clear()  # a partial frame followed by silence is dropped, as a real slave does
        self.last_rx = t
        self.buf += data
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        while self.buf:
            n = rtu_request_length(self.buf)
            if n is None:  # unknown function: the frame ends with the silence
                self._flush = asyncio.get_running_loop().call_later(self.gap_s, self._silence)
                return
            if n == 0 or len(self.buf) < n:
                return
            frame = bytes(self.buf[:n])
            if not rtu_crc_ok(frame):
                self.buf.clear()  # lost sync: skip to the next silence
                return
            del self.buf[:n]
            self.queue.put_nowait((frame, t))

    def _silence(self) -> None:
        self._flush = None
        if self.buf:
            self.queue.put_nowait((bytes(self.buf), self.last_rx))
            self.buf.clear()

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame, t_rx = await self.queue.get()
            out = self.line.process(frame, t_rx)
            if out is None:
                continue
            drip = out.answer.verdict.drip_s
            if drip:  # slow drip: the answer trickles out, a byte at a time, ending at the deadline
                start = out.deadline - drip * len(out.data)
                for i, byte in enumerate(out.data):
                    wait = start + drip * (i + 1) - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    self.send(bytes([byte]))
                self.line.on_send(out.device, out.answer, True)
                continue
            wait = out.deadline - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.line.on_send(out.device, out.answer, True)
            self.send(out.data)
