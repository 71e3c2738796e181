"""Helpers of the HJ 212 tests: a hand-driven logger connection (raw TCP with the codec's framer)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from zoneinfo import ZoneInfo

from gateway.hj212.codec import Cp, Framer, Packet, decode, encode, make_flag
from gateway.hj212.errors import Hj212Error
from gateway.hj212.timefmt import qn_text, time_text
from gateway.localservers import free_port as free_port  # the tests of this folder import it from here

MN = "010000A8900016F000169DC0"
PW = "Zq7x2K"
TZ = ZoneInfo("Asia/Shanghai")




_last = [0]


def qn() -> str:
    ms = max(int(time.time() * 1000), _last[0] + 1)
    _last[0] = ms
    return qn_text(ms, TZ)


def data_packet(cn: str = "2011", *, answer: bool = True, values: dict[str, object] | None = None,
                mn: str = MN, pw: str = PW, st: str = "39") -> Packet:
    fields: dict[str, object] = {"DataTime": time_text(int(time.time() * 1000), TZ)}
    fields.update(values if values is not None else {"a34002-Rtd": "45.0", "a34002-Flag": "N"})
    return Packet(qn(), st, cn, pw, mn, make_flag(2017, answer=answer), Cp.from_mapping(fields))


class RawLogger:
    """One TCP connection to a platform, driven by the test: send packets, read what comes back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.framer = Framer()
        self.queue: list[bytes | Hj212Error] = []

    @staticmethod
    async def connect(port: int) -> RawLogger:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return RawLogger(r, w)

    async def send(self, data: Packet | bytes) -> None:
        self.writer.write(encode(data) if isinstance(data, Packet) else data)
        await self.writer.drain()

    async def read(self, timeout: float = 5.0) -> bytes | Hj212Error | None:
        """The next packet or framing fault; None at EOF."""
        while not self.queue:
            data = await asyncio.wait_for(self.reader.read(4096), timeout)
            if not data:
                return None
            self.queue += self.framer.feed(data)
        return self.queue.pop(0)

    async def read_packet(self, timeout: float = 5.0) -> Packet:
        item = await self.read(timeout)
        assert isinstance(item, bytes), f"expected a packet, got {item!r}"
        return decode(item)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
