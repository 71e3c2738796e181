"""The platform simulator: accepts HJ 212 connections from loggers, validates every packet strictly with the
gateway's own codec, answers 9014 when a packet asks for it, sends commands and collects their 9011/9012/9013
answers, records everything, and misbehaves on demand.

Misbehaviours (`misbehave(mode, delay_s=..., count=...)`), applied to packets that ask for an answer:
- `no-answer`: record the packet, answer nothing;
- `late-answer`: answer after `delay_s` (default 12 s, beyond the standard's 10 s timeout);
- `disconnect`: close the connection instead of answering;
- `garbage`: answer with junk bytes instead of a 9014.
`pause()` / `resume()` make the platform go away (listener closed, connections dropped) and come back on the same
port.

Its clock (`now_ms()`: the QNs of its commands, the time it sets) is `clock` (default the system's, or the
fast-motion clock of PLUME_CLOCK_SPEEDUP, `gateway.core.clock.base_ms`) plus `clock_offset_s`; receipt times
(`Received.at_ms`) are on `clock`. So a fast-motion test's platform runs on the clock its gateway and device
simulator run on.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from zoneinfo import ZoneInfo

from gateway.core.clock import base_ms
from gateway.hj212.codec import Cp, Framer, Packet, decode, encode, join, make_flag
from gateway.hj212.errors import Hj212Error, SplitError
from gateway.hj212.names import KNOWN_CODES
from gateway.hj212.timefmt import qn_text, time_text
from plume_sim.platform.checks import REPLY_CNS, problems
from plume_sim.platform.records import Exchange, Received, Recorder

MISBEHAVIOURS = ("no-answer", "late-answer", "disconnect", "garbage")
NOTICE_CNS = {"2012", "2022"}
HISTORY_CNS = {"2051", "2061", "2031"}  # "stop sending ..." notices: the logger answers 9013


@dataclass(slots=True)
class _Conn:
    peer: str
    writer: asyncio.StreamWriter
    mn: str | None = None
    pw: str | None = None
    st: str | None = None
    version_bits: int = 1
    exchanges: dict[str, tuple[Exchange, asyncio.Future[Exchange]]] = field(default_factory=dict)


class PlatformSim:
    """An HJ 212 platform on `host:port` (port 0: a free one, see `.port` after start)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        pw: str | None = None,
        mn: str | None = None,
        record: str | Path | None = None,
        tz: str = "Asia/Shanghai",
        seed: int = 1,
        on_event: Callable[[str], None] | None = None,
        codes: Collection[str] | None = KNOWN_CODES,
        clock_offset_s: float = 0.0,
        calibrate: bool = False,
        clock: Callable[[], int] | None = None,
    ):
        """pw/mn: refuse packets with another password or device number (None: accept any); codes: the
        platform's pollutant code table (default: the standard's codes Plume knows; None: accept any code);
        clock_offset_s: the platform's clock is this far from `clock` (its QNs and the time it sets);
        calibrate: answer a logger's 1013 (time calibration request) with a 1012 of the platform's time;
        clock: UTC epoch ms (default: the system clock, fast when PLUME_CLOCK_SPEEDUP was applied; a test in fast
        motion passes its `FastClock.now_ms`)."""
        self.host = host
        self.port = port
        self.pw = pw
        self.mn = mn
        self.codes = codes
        self.clock_offset_ms = int(clock_offset_s * 1000)
        self._clock = clock or base_ms
        self.calibrate = calibrate
        self._tasks: set[asyncio.Task[object]] = set()
        self.tz = ZoneInfo(tz)
        self.received: list[Received] = []
        self.exchanges: list[Exchange] = []
        self.connections_total = 0
        self._record = Recorder(Path(record) if record else None)
        self._rng = random.Random(seed)
        self._on_event = on_event
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], _Conn] = {}
        self._changed = asyncio.Event()
        self._mode: str | None = None
        self._delay_s = 12.0
        self._left: int | None = None
        self._last_qn = 0
        self._late: set[asyncio.Task[None]] = set()

    # --- life cycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._event(f"ready: listening on {self.host}:{self.port}")

    async def stop(self) -> None:
        await self.pause()
        for t in [*self._late, *self._tasks]:
            t.cancel()
        await asyncio.gather(*self._late, *self._tasks, return_exceptions=True)
        self._record.close()

    async def pause(self) -> None:
        """Go away: stop listening and drop every connection (loggers see the link die)."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._conns)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._wake()

    async def resume(self) -> None:
        """Come back on the same port."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, self.host, self.port)
            self._event(f"back: listening on {self.host}:{self.port}")

    async def __aenter__(self) -> PlatformSim:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
                        ) -> None:
        await self.stop()

    # --- behaviour ---------------------------------------------------------------------------------------------
    def misbehave(self, mode: str | None, *, delay_s: float = 12.0, count: int | None = None) -> None:
        """Misbehave from now on (for the next `count` packets that ask for an answer); None: behave again."""
        if mode is not None and mode not in MISBEHAVIOURS:
            raise ValueError(f"unknown misbehaviour {mode!r} (one of {', '.join(MISBEHAVIOURS)})")
        self._mode, self._delay_s, self._left = mode, delay_s, count
        self._event(f"misbehave: {mode or 'off'}" + (f" for {count} packets" if count else ""))

    @property
    def connected(self) -> int:
        return len(self._conns)

    # --- what arrived ------------------------------------------------------------------------------------------
    def packets(self, cn: str | None = None, *, only_acked: bool = False) -> list[Packet]:
        """Good packets in arrival order (split parts joined once all arrived), optionally only those answered
        with 9014 (every part answered)."""
        out: list[Packet] = []
        parts: dict[tuple[str, str, str], list[Received]] = {}
        for r in self.received:
            p = r.packet
            if p is None or r.error is not None or (cn is not None and p.cn != cn):
                continue
            if p.pnum is None:
                if not only_acked or r.answered == "9014":
                    out.append(p)
                continue
            key = (p.mn, p.qn, p.cn)
            group = parts.setdefault(key, [])
            group.append(r)
            if len({q.packet.pno for q in group if q.packet is not None}) == p.pnum:
                parts.pop(key)
                if only_acked and any(q.answered != "9014" for q in group):
                    continue
                try:
                    out.append(join([q.packet for q in group if q.packet is not None]))
                except SplitError:
                    continue
        return out

    def acked(self, cn: str | None = None) -> list[Packet]:
        """Data packets this platform acknowledged (9014 sent at once, or late)."""
        return self.packets(cn, only_acked=True)

    @property
    def errors(self) -> list[Received]:
        return [r for r in self.received if r.error is not None]

    async def wait_for(self, pred: Callable[[Received], bool], *, count: int = 1, timeout: float = 10.0
                       ) -> list[Received]:
        """Wait until `count` received records satisfy `pred`; TimeoutError says what did arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            hits = [r for r in self.received if pred(r)]
            if len(hits) >= count:
                return hits
            changed = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = ", ".join(f"{r.cn or r.reason}" for r in self.received[-10:])
                raise TimeoutError(f"{len(hits)} of {count} expected packets within {timeout} s "
                                   f"({len(self.received)} received; last: {seen or 'none'})")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    async def wait_until(self, cond: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition") -> None:
        """Wait until `cond()` holds; it is checked after every packet and connection change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not cond():
            changed = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{what} not reached within {timeout} s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    # --- commands to the logger --------------------------------------------------------------------------------
    async def command(self, cn: str, cp: Mapping[str, object] | Cp | None = None, *, mn: str | None = None,
                      timeout: float = 10.0, pw: str | None = None) -> Exchange:
        """Send a command to the connected logger (`mn`, or the latest one heard) and wait for the exchange to
        finish: 9011 then data and 9012, or 9013 for a notice. TimeoutError names what came back."""
        conn = self._target(mn)
        qn = self._qn()
        body = cp if isinstance(cp, Cp) else Cp.from_mapping(cp or {})
        request = Packet(qn, conn.st or "39", cn, pw or self.pw or conn.pw or "123456", conn.mn or mn or "0",
                         make_flag(version_bits=conn.version_bits, answer=True), body)
        ex = Exchange(qn, cn, request)
        fut: asyncio.Future[Exchange] = asyncio.get_running_loop().create_future()
        conn.exchanges[qn] = (ex, fut)
        self.exchanges.append(ex)
        await self._send(conn, encode(request))
        self._event(f"out {cn} QN={qn} to MN={conn.mn}")
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise TimeoutError(f"command {cn}: no complete answer within {timeout} s (9011 QnRtn={ex.qn_rtn}, "
                               f"{len(ex.data)} data packets, 9012 ExeRtn={ex.exe_rtn})") from None
        finally:
            conn.exchanges.pop(qn, None)

    async def send_raw(self, data: bytes, *, mn: str | None = None) -> None:
        """Send arbitrary bytes to a connected logger (hostile-input tests)."""
        await self._send(self._target(mn), data)

    async def wait_connected(self, mn: str | None = None, timeout: float = 10.0) -> None:
        """Wait until a logger (with that MN) has sent a valid packet on a live connection."""
        await self.wait_until(lambda: any(c.mn is not None and mn in (None, c.mn) for c in self._conns.values()),
                              timeout=timeout, what=f"a logger {mn or ''} connected")

    def _target(self, mn: str | None) -> _Conn:
        conns = [c for c in self._conns.values() if c.mn is not None and mn in (None, c.mn)]
        if not conns:
            raise RuntimeError(f"no logger{' ' + mn if mn else ''} is connected")
        return conns[-1]

    def now_ms(self) -> int:
        """The platform's clock: `clock` plus `clock_offset_s`."""
        return self._clock() + self.clock_offset_ms

    def _qn(self) -> str:
        ms = max(self.now_ms(), self._last_qn + 1)
        self._last_qn = ms
        return qn_text(ms, self.tz)

    # --- connections -------------------------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        conn = _Conn(peer, writer)
        task = asyncio.get_running_loop().create_task(self._serve(reader, conn), name=f"platform[{peer}]")
        self._conns[task] = conn
        self.connections_total += 1
        self._event(f"connect {peer}")
        self._wake()
        try:
            await task
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            self._conns.pop(task, None)
            for _, fut in conn.exchanges.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"logger {conn.mn} disconnected during the exchange"))
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._event(f"disconnect {peer}")
            self._wake()

    async def _serve(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        framer = Framer()
        while True:
            data = await reader.read(4096)
            if not data:
                left = framer.eof()
                if left is not None:
                    self._add(Received(self._clock(), conn.peer, b"", error=str(left), reason=left.reason))
                return
            for item in framer.feed(data):
                if isinstance(item, Hj212Error):
                    self._add(Received(self._clock(), conn.peer, b"", error=str(item), reason=item.reason))
                    continue
                try:
                    p = decode(item)
                except Hj212Error as exc:
                    self._add(Received(self._clock(), conn.peer, item, error=str(exc), reason=exc.reason))
                    continue
                if not await self._handle(conn, p, item):
                    return

    async def _handle(self, conn: _Conn, p: Packet, raw: bytes) -> bool:
        """One valid packet; False when the connection must close (misbehaviour)."""
        rec = Received(self._clock(), conn.peer, raw, p)
        issues = problems(p, pw=self.pw, mn=self.mn, codes=self.codes)
        if issues:
            rec.error, rec.reason = "; ".join(issues), "content"
            self._add(rec)
            return True
        conn.mn, conn.version_bits = p.mn, p.version_bits
        if p.cn not in REPLY_CNS:  # answers echo what we sent; uploads say what the logger's PW and ST are
            conn.pw, conn.st = p.pw, p.st
        pending = conn.exchanges.get(p.qn)
        if pending is None and p.cn in HISTORY_CNS:  # history uploads have QNs of their own (table C.20)
            pending = next((x for x in conn.exchanges.values() if x[0].cn == p.cn and x[0].qn_rtn == 1
                            and x[0].exe_rtn is None and _in_range(x[0].request, p)), None)
        if pending is not None and (p.cn in REPLY_CNS or p.cn == pending[0].cn):  # QNs of both sides may collide
            self._exchange(pending[0], pending[1], p)
        if p.cn == "1013" and self.calibrate:  # the logger asks for the time: set it (in the background)
            task = asyncio.get_running_loop().create_task(self._set_time(p.mn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        keep = True
        if p.answer_wanted and p.cn not in REPLY_CNS:
            keep = await self._answer(conn, p, rec)
        self._add(rec)
        return keep

    def _exchange(self, ex: Exchange, fut: asyncio.Future[Exchange], p: Packet) -> None:
        if p.cn == "9011":
            rtn = p.cp.get("QnRtn")
            ex.qn_rtn = int(rtn) if rtn is not None and rtn.isdigit() else -1
        elif p.cn == "9012":
            rtn = p.cp.get("ExeRtn")
            ex.exe_rtn = int(rtn) if rtn is not None and rtn.isdigit() else -1
        elif p.cn == "9013":
            ex.notice_answered = True
        else:
            ex.data.append(p)
        if ex.finished and not fut.done():
            fut.set_result(ex)

    async def _answer(self, conn: _Conn, p: Packet, rec: Received) -> bool:
        mode = self._mode
        if mode is not None and self._left is not None:
            self._left -= 1
            if self._left <= 0:
                self._mode, self._left = None, None
        ack = encode(Packet(p.qn, "91", "9014", p.pw, p.mn, make_flag(version_bits=p.version_bits), Cp()))
        if mode is None:
            await self._send(conn, ack)
            rec.answered = "9014"
        elif mode == "no-answer":
            rec.answered = None
        elif mode == "disconnect":
            rec.answered = "disconnect"
            return False
        elif mode == "garbage":
            junk = b"\x00\xffnot a packet ##00" + self._rng.randbytes(24).replace(b"\r\n", b"..") + b"\r\n"
            await self._send(conn, junk)
            rec.answered = "garbage"
        elif mode == "late-answer":
            rec.answered = "late"
            task = asyncio.get_running_loop().create_task(self._late_answer(conn, ack, rec, self._delay_s))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
        return True

    async def _set_time(self, mn: str) -> None:
        with contextlib.suppress(Exception):
            await self.command("1012", {"SystemTime": time_text(self.now_ms(), self.tz)}, mn=mn)

    async def _late_answer(self, conn: _Conn, ack: bytes, rec: Received, delay: float) -> None:
        await asyncio.sleep(delay)  # the misbehaviour itself, not a synchronisation
        if conn in self._conns.values():
            await self._send(conn, ack)
            rec.answered = "9014"
            self._wake()

    async def _send(self, conn: _Conn, data: bytes) -> None:
        try:
            conn.writer.write(data)
            await conn.writer.drain()
        except (ConnectionError, RuntimeError):
            pass  # the reader side notices and closes

    # --- bookkeeping -------------------------------------------------------------------------------------------
    def _add(self, rec: Received) -> None:
        self.received.append(rec)
        self._record.write(rec)
        if rec.error is not None:
            self._event(f"bad packet from {rec.peer} ({rec.reason}): {rec.error}")
        elif rec.packet is not None:
            p = rec.packet
            part = f" part {p.pno}/{p.pnum}" if p.pnum else ""
            items = len(p.cp.groups)
            self._event(f"in  {p.cn} MN={p.mn} QN={p.qn}{part} {items} items"
                        + (f" -> {rec.answered}" if rec.answered else ""))
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _event(self, line: str) -> None:
        if self._on_event is not None:
            self._on_event(line)


def _in_range(request: Packet, upload: Packet) -> bool:
    """A history request's answer lies in its BeginTime..EndTime; a live upload of the same CN arriving meanwhile
    does not (both are YYYYMMDDhhmmss local times, which compare as text)."""
    dt = upload.cp.get("DataTime") or ""
    return (request.cp.get("BeginTime") or "") <= dt <= (request.cp.get("EndTime") or "~")
