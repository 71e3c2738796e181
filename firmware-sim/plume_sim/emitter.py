"""A frame sensor in active mode: one frame a period on its pty, paced to the time the frame takes on the wire.

Ticks are deadlines on loop.time() (no drift); the first frame leaves at once, so a reader need not wait a period.
"""

from __future__ import annotations

import asyncio
import contextlib

from plume_sim.device import SimDevice
from plume_sim.frames import FRAME_BYTES, build_frame
from plume_sim.modbus_slave import Answer
from plume_sim.ptys import PtyPort
from plume_sim.rtu_link import Clock, OnSend


class FrameEmitter:
    def __init__(self, device: SimDevice, port: PtyPort, *, period_s: float, char_s: float, pace: bool,
                 clock: Clock, on_send: OnSend):
        self.device = device
        self.port = port
        self.period_s = period_s
        self.char_s = char_s
        self.pace = pace
        self.clock = clock
        self.on_send = on_send
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=f"plume-sim.frames[{self.device.name}]")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def frame(self, now: float) -> tuple[bytes, Answer] | None:
        """The bytes the sensor sends now (None when its fault keeps it silent)."""
        dev = self.device
        v = dev.verdict(now)
        if not v.answer:
            return None
        words, served = dev.frame_words(now)
        data = build_frame(dev.protocol, words, bad_checksum=v.corrupt == "crc")
        if v.corrupt == "garbage":
            data = dev.garbage(v.serial, len(data))
        return data, Answer(b"", v, int(now * 1000), served)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time()
        frame_s = FRAME_BYTES[self.device.protocol] * self.char_s if self.pace else 0.0
        while True:
            # The frame's last byte arrives frame_s after its first; built then, so a fault set meanwhile applies.
            await asyncio.sleep(max(0.0, tick + frame_s - loop.time()))
            out = self.frame(self.clock())
            if out is not None:
                data, ans = out
                self.on_send(self.device, ans, True)
                self.port.write(data)
            tick += self.period_s
            await asyncio.sleep(max(0.0, tick - loop.time()))
