"""One TCP connection to a platform: packets out, and a reader that sorts what comes back — 9014 data answers
wake the sender waiting for that QN, everything else goes to the command handler. Whatever the platform sends,
the reader survives it: a bad packet is counted (by reason) and logged, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from gateway.hj212.codec import Framer, Packet, decode
from gateway.hj212.errors import Hj212Error

log = logging.getLogger("plume.hj212")


class LinkClosed(ConnectionError):
    """The platform closed the connection (or it broke)."""


class Link:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str):
        self.reader = reader
        self.writer = writer
        self.name = name
        self.incoming: asyncio.Queue[Packet] = asyncio.Queue()
        self.bad: Counter[str] = Counter()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._acks: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    async def open(host: str, port: int, timeout: float, name: str) -> Link:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
        link = Link(reader, writer, name)
        link._task = asyncio.create_task(link._read(), name=f"hj212[{name}].reader")
        return link

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        self.closed.set()

    async def send(self, raw: bytes) -> None:
        if self.closed.is_set():
            raise LinkClosed(self.close_reason or "connection closed")
        try:
            self.writer.write(raw)
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            self._lost(f"send failed: {exc}")
            raise LinkClosed(self.close_reason) from None

    def expect_ack(self, qn: str) -> asyncio.Event:
        """Register interest in the 9014 for `qn` before sending (so a fast answer is not missed)."""
        return self._acks.setdefault(qn, asyncio.Event())

    def forget_ack(self, qn: str) -> None:
        self._acks.pop(qn, None)

    async def wait_ack(self, qn: str, timeout: float) -> bool:
        """True when the 9014 for `qn` came within `timeout`; LinkClosed when the connection died meanwhile."""
        ev = self.expect_ack(qn)
        closed = asyncio.ensure_future(self.closed.wait())
        got = asyncio.ensure_future(ev.wait())
        try:
            done, _ = await asyncio.wait((got, closed), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (closed, got):
                f.cancel()
        if got in done or ev.is_set():
            return True
        if closed in done:
            raise LinkClosed(self.close_reason or "connection closed")
        return False

    async def _read(self) -> None:
        framer = Framer()
        try:
            while True:
                data = await self.reader.read(4096)
                if not data:
                    left = framer.eof()
                    if left is not None:
                        self._bad(left)
                    self._lost("the platform closed the connection")
                    return
                for item in framer.feed(data):
                    if isinstance(item, Hj212Error):
                        self._bad(item)
                        continue
                    try:
                        p = decode(item)
                    except Hj212Error as exc:
                        self._bad(exc)
                        continue
                    self._dispatch(p)
        except (ConnectionError, OSError) as exc:
            self._lost(f"connection broke: {exc}")

    def _dispatch(self, p: Packet) -> None:
        if p.cn == "9014":
            ev = self._acks.get(p.qn)
            if ev is not None:
                ev.set()
            else:
                log.debug("hj212[%s]: 9014 for QN %s nobody waits for (late answer)", self.name, p.qn)
            return
        self.incoming.put_nowait(p)

    def _bad(self, exc: Hj212Error) -> None:
        self.bad[exc.reason] += 1
        n = sum(self.bad.values())
        if n <= 3 or n % 100 == 0:  # a platform spewing junk must not flood the log
            log.warning("hj212[%s]: bad packet from the platform (%s): %s (%d so far on this connection)",
                        self.name, exc.reason, exc, n)

    def _lost(self, reason: str) -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()
