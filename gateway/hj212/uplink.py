"""The HJ 212 uplink: Plume as the site's data logger towards one regulator platform.

- A sink with its own cursor in the durable log. Record sources (2011 here; 2051/2061/2031 once the processing
  stage feeds aggregates) turn records into data packets in DataTime order.
- Each packet asks for a 9014 (Flag A); it is resent after `answer_timeout_s`, `retries` times, then the
  connection is dropped and re-opened with backoff, and the same packet is sent again: a packet is never skipped,
  and the cursor moves only over what the platform acknowledged. While the platform is away the log keeps
  everything; afterwards the gap is sent in order, at most `backfill_per_s` packets a second.
- The platform's commands are answered on the same connection (commands.py). After a process start the logger
  reports 2081 (restart time) once. HJ 212-2025 links get a heartbeat (9015) after `heartbeat_s` of silence.
- Every timestamp is on the gateway's clock (gateway.core.clock): a platform's 1012 (within max_clock_step_s)
  corrects that one clock, so readings, windows, DataTime, QN and SystemTime all follow the platform's time. When
  the clock is known to be off (the kernel says unsynchronised and nobody corrected it yet, or a platform's
  request QN is further off than HJ 477's 0.5 per mille allows) the uplink asks for the time with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.audit import Actor, audit
from gateway.core.clock import CLOCK, now_ms
from gateway.hj212.aggregates import AggregateSource, AggregateSources
from gateway.hj212.codec import VERSION_BITS, Cp, Packet, encode, make_flag, split
from gateway.hj212.commands import CommandHandler, History
from gateway.hj212.config import UplinkConfig
from gateway.hj212.link import Link, LinkClosed
from gateway.hj212.names import CN_NAMES
from gateway.hj212.realtime import RealtimeSource
from gateway.hj212.routes import Route
from gateway.hj212.sources import AggregateFeed, Outgoing, RecordSource
from gateway.hj212.state import StateFile, UplinkState
from gateway.hj212.timefmt import parse_qn, qn_text, time_text
from gateway.logsetup import add_secret
from gateway.sinks.backoff import Backoff, Outage
from gateway.sinks.base import DeliveredHook, HealthProvider, SinkStatus
from gateway.store.log import DurableLog

log = logging.getLogger("plume.hj212")

CN_ORDER = {"2011": 0, "2051": 1, "2061": 2, "2031": 3}
TIME_REQUEST_GAP_S = 600.0


class NoAnswer(ConnectionError):
    """The platform did not answer a packet after every retry."""


class Pump:
    """Reads the log with the uplink's cursor, feeds every record to every source, queues the packets."""

    def __init__(self, log_: DurableLog, acked: Callable[[], int], ack: Callable[[int], None],
                 sources: Sequence[RecordSource], batch: int = 500):
        self.log = log_
        self._acked = acked
        self._ack = ack
        self.sources = sources
        self.batch = batch
        self.after = acked()
        self.queue: deque[Outgoing] = deque()

    async def next(self) -> Outgoing | None:
        """The oldest packet not yet acknowledged; None once the log closes with nothing more to build.
        Cancel-safe: a cancellation can only land while waiting for the log."""
        while not self.queue:
            self.after = max(self.after, self._acked())  # the disk cap may have moved the cursor past us
            records = await self.log.read(self.after, self.batch)
            if not records:
                return None
            ready: list[Outgoing] = []
            for rec in records:
                for src in self.sources:
                    ready += src.feed(rec)
            self.after = records[-1].id
            ready.sort(key=lambda o: (o.data_time, CN_ORDER.get(o.cn, 9)))
            self.queue.extend(ready)
            if not self.queue:
                self._ack(self.safe_id())  # records no packet needs (yet): let retention and the depth move on
        return self.queue[0]

    def safe_id(self) -> int:
        """Highest log id the cursor may pass: below every record an unsent packet or open window uses."""
        lows = [o.first_id for o in self.queue]
        lows += [w for w in (s.low_water() for s in self.sources) if w is not None]
        return min(lows) - 1 if lows else self.after


class UplinkSink:
    """Delivers the log to one HJ 212 platform."""

    type = "hj212"

    def __init__(
        self,
        cfg: UplinkConfig,
        site_id: str,
        tz: ZoneInfo,
        routes: list[Route],
        log_: DurableLog,
        *,
        pw: str,
        state_path: Path,
        aggregates: AggregateFeed | None = None,
        on_delivered: DeliveredHook | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self.cfg = cfg
        self.name = cfg.name
        self.site_id = site_id
        self.tz = tz
        self.routes = routes
        self.log = log_
        self.consumer = log_.consumer(cfg.name)
        self.mn = cfg.mn
        self.st = cfg.st
        self.version_bits = cfg.flag_version_bits if cfg.flag_version_bits is not None else VERSION_BITS[cfg.version]
        self._clock = clock or (lambda: now_ms() / 1000)  # the gateway's clock, a platform's 1012 included
        self._last_time_request = -math.inf
        self._on_delivered = on_delivered  # called with [] per packet: packets are built from many records
        self.status = SinkStatus(cfg.name, "hj212", cfg.target)
        self._outage = Outage(log, f"hj212[{cfg.name}] {cfg.target}")
        self.state_file = StateFile(state_path, fsync=log_.config.durability == "full")
        self.state: UplinkState = self.state_file.load()
        s = self.state.settings
        self._pw = s.pw or pw
        add_secret(self._pw)
        self.answer_timeout_s = s.answer_timeout_s or cfg.answer_timeout_s
        self.retries = s.retries if s.retries is not None else cfg.retries
        self.started_ms = int(self._clock() * 1000)
        self._restart_reported = False
        self._last_qn = 0
        self._last_send = 0.0
        self._last_data_send = 0.0
        self.counters: Counter[str] = Counter()
        self.bad_from_platform: Counter[str] = Counter()
        self._health: HealthProvider | None = None
        self.link: Link | None = None  # the current (or last) connection
        now = self.started_ms
        not_before = now - int(cfg.backfill_max_age_h * 3_600_000)
        self.realtime: RealtimeSource | None = None
        sources: list[RecordSource] = []
        if cfg.send.realtime is not None:
            self.realtime = RealtimeSource(
                routes, interval_s=s.rtd_interval_s or cfg.send.realtime.interval_s, grace_s=cfg.grace_s, tz=tz,
                flags=cfg.flags, already_sent=self.state.last_sent.get("2011"), not_before=not_before)
            sources.append(self.realtime)
        self.aggregate_sources: dict[str, AggregateSource] = {}
        windows = self._aggregate_windows()
        if aggregates is not None:
            for cn, window in windows.items():
                self.aggregate_sources[cn] = AggregateSource(
                    cn, window, routes, aggregates, tz=tz, flags=cfg.flags, already_sent=self.state.last_sent.get(cn),
                    not_before=not_before)
            if self.aggregate_sources:
                sources.append(AggregateSources(aggregates, list(self.aggregate_sources.values())))
        elif windows:
            log.warning("hj212[%s]: %s data need the processing stage's aggregates, which are not wired to the "
                        "uplink yet; only real-time data (2011) is sent", cfg.name, "/".join(windows))
        self.sources = sources
        self.commands = CommandHandler(self)

    def _aggregate_windows(self) -> dict[str, str]:
        send = self.cfg.send
        out: dict[str, str] = {}
        minutes = self.min_interval_min()
        if minutes is not None:
            out["2051"] = "1h" if minutes == 60 else f"{minutes}m"
        if send.hour:
            out["2061"] = "1h"
        if send.day:
            out["2031"] = "1d"
        return out

    def set_health(self, provider: HealthProvider, interval_s: float | None = None) -> None:
        self._health = provider  # the platform has no place for Plume's health; kept for the Sink shape

    # --- Controls (what commands may read and change) ---------------------------------------------------------
    @property
    def pw(self) -> str:
        return self._pw

    def clock_ms(self) -> int:
        """The logger's clock: the gateway's (which a platform's 1012 corrects)."""
        return int(self._clock() * 1000)

    def next_qn(self) -> str:
        return self._qn()

    @property
    def answer(self) -> bool:
        return self.cfg.answer

    def set_clock(self, platform_ms: int) -> bool:
        step = platform_ms - self.clock_ms()
        if abs(step) > self.cfg.max_clock_step_s * 1000:
            log.warning("hj212[%s]: platform set time %s refused: %+.1f s from the gateway's clock, more than "
                        "max_clock_step_s %g", self.name, time_text(platform_ms, self.tz), step / 1000,
                        self.cfg.max_clock_step_s)
            return False
        c = CLOCK.correct(platform_ms, by=f"HJ 212 platform {self.name} (MN {self.mn}, {self.cfg.target})")
        log.info("hj212[%s]: platform set the clock to %s (%+.3f s, %s); every timestamp follows it", self.name,
                 time_text(platform_ms, self.tz), step / 1000, "system clock" if c.applied == "system" else "offset")
        return True

    def rtd_interval_s(self) -> int | None:
        if self.cfg.send.realtime is None:
            return None
        return self.state.settings.rtd_interval_s or self.cfg.send.realtime.interval_s

    def set_rtd_interval(self, seconds: int) -> None:
        self.state.settings.rtd_interval_s = seconds
        if self.realtime is not None:
            self.realtime.set_interval(seconds)
        self._save()

    def min_interval_min(self) -> int | None:
        if self.cfg.send.minute is None:
            return None
        return self.state.settings.min_interval_min or self.cfg.send.minute.interval_min

    def set_min_interval(self, minutes: int) -> None:
        self.state.settings.min_interval_min = minutes
        src = self.aggregate_sources.get("2051")
        if src is not None:
            src.window = "1h" if minutes == 60 else f"{minutes}m"
        self._save()

    def set_answer(self, timeout_s: float, retries: int) -> None:
        self.answer_timeout_s, self.retries = timeout_s, retries
        self.state.settings.answer_timeout_s, self.state.settings.retries = timeout_s, retries
        self._save()

    def set_pw(self, pw: str) -> None:
        add_secret(pw)
        self._pw = pw
        self.state.settings.pw = pw
        self._save()

    def history(self, cn: str) -> History | None:
        return self.aggregate_sources.get(cn)

    def sends(self, cn: str) -> bool:
        send = self.cfg.send
        return {"2011": send.realtime is not None, "2051": send.minute is not None, "2061": send.hour,
                "2031": send.day}.get(cn, False)

    def _save(self) -> None:
        try:
            self.state_file.save(self.state)
        except OSError as exc:
            log.error("hj212[%s]: cannot write %s: %s", self.name, self.state_file.path, exc)
            raise

    # --- running ----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = Backoff(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
        pump = Pump(self.log, lambda: self.consumer.acked, self._ack_log, self.sources)
        while True:
            if self.log.closing and not pump.queue and self.log.depth(self.consumer) == 0:
                return
            try:
                link = await Link.open(self.cfg.host, self.cfg.port, self.cfg.connect_timeout_s, self.name)
            except (OSError, TimeoutError) as exc:
                self._failed(f"cannot connect: {exc or type(exc).__name__}")
                if self.log.closing or await self.log.sleep(backoff.next()):
                    return
                continue
            self.status.connected = True
            self.status.connects += 1
            if self.status.connects > 1:
                self.status.reconnects += 1
            self._outage.ok("connected")
            log.info("hj212[%s]: connected to %s (MN %s, HJ 212-%d)", self.name, self.cfg.target, self.mn,
                     self.cfg.version)
            finished = False
            self.link = link
            try:
                finished = await self._session(link, pump, backoff)
            except (LinkClosed, NoAnswer) as exc:
                self._failed(str(exc))
            finally:
                self.status.connected = False
                for reason, n in link.bad.items():
                    self.bad_from_platform[reason] += n
                await link.close()
            if finished:
                log.info("hj212[%s]: everything committed was delivered; disconnecting", self.name)
                return
            if self.log.closing or await self.log.sleep(backoff.next()):
                left = len(pump.queue)
                log.info("hj212[%s]: stopping with %d packets not yet acknowledged; they are rebuilt from the log "
                         "at the next start", self.name, left)
                return

    def _failed(self, message: str) -> None:
        self.status.failures += 1
        self.status.last_error = message
        self._outage.fail(message)

    async def _session(self, link: Link, pump: Pump, backoff: Backoff) -> bool:
        """Deliver until the log closes (True) or the link fails (raises)."""
        helpers = [asyncio.create_task(self._answer_commands(link), name=f"hj212[{self.name}].commands")]
        if self.cfg.version == 2025 and self.cfg.heartbeat_s > 0:
            helpers.append(asyncio.create_task(self._heartbeat(link), name=f"hj212[{self.name}].heartbeat"))
        closed = asyncio.create_task(link.closed.wait(), name=f"hj212[{self.name}].closed")
        try:
            await self._ask_time(link, force=True)
            while True:
                if not self._restart_reported and not pump.queue and pump.after >= self.log.committed_id:
                    await self._report_restart(link)  # caught up: nothing older is waiting
                nxt = asyncio.create_task(pump.next(), name=f"hj212[{self.name}].next")
                done, _ = await asyncio.wait((nxt, closed), return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    await asyncio.gather(nxt, return_exceptions=True)
                    raise LinkClosed(link.close_reason or "connection closed")
                out = nxt.result()
                if not self._restart_reported and (out is None or out.data_time > self.started_ms):
                    await self._report_restart(link)  # in DataTime order: after the back-filled older data
                if out is None:
                    return True
                await self._pace()
                await self._deliver(link, self._packet(out))
                backoff.reset()
                self._sent(pump, out)
        finally:
            for t in (*helpers, closed):
                t.cancel()
            await asyncio.gather(*helpers, closed, return_exceptions=True)

    async def _pace(self) -> None:
        """At most backfill_per_s data packets a second (live data, one packet an interval, never waits)."""
        gap = 1.0 / self.cfg.backfill_per_s - (time.monotonic() - self._last_data_send)
        if gap > 0:
            await asyncio.sleep(gap)
        self._last_data_send = time.monotonic()

    def _qn(self) -> str:
        ms = max(self.clock_ms(), self._last_qn + 1)
        self._last_qn = ms
        return qn_text(ms, self.tz)

    def _packet(self, out: Outgoing) -> Packet:
        flag = make_flag(version_bits=self.version_bits, answer=self.cfg.answer)
        return Packet(self._qn(), self.st, out.cn, self._pw, self.mn, flag, out.cp)

    async def _report_restart(self, link: Link) -> None:
        await self._deliver(link, self._restart_packet())
        self._restart_reported = True

    def _restart_packet(self) -> Packet:
        flag = make_flag(version_bits=self.version_bits, answer=self.cfg.answer)
        cp = Cp.of({"DataTime": time_text(self.clock_ms(), self.tz)},
                   {"RestartTime": time_text(self.started_ms, self.tz)})
        return Packet(self._qn(), self.st, "2081", self._pw, self.mn, flag, cp)

    async def _deliver(self, link: Link, packet: Packet) -> None:
        """Send (split if needed) and wait for each part's 9014, resending on timeout; NoAnswer after the last
        retry, LinkClosed when the connection dies."""
        for part in split(packet):
            raw = encode(part)
            for attempt in range(self.retries + 1):
                if self.cfg.answer:
                    link.expect_ack(part.qn)
                await link.send(raw)
                self._last_send = time.monotonic()
                self.counters["sent" if attempt == 0 else "resent"] += 1
                if not self.cfg.answer:
                    break
                if await link.wait_ack(part.qn, self.answer_timeout_s):
                    link.forget_ack(part.qn)
                    break
                self.counters["timeouts"] += 1
                log.debug("hj212[%s]: no 9014 for %s QN %s within %g s (try %d of %d)", self.name, part.cn,
                          part.qn, self.answer_timeout_s, attempt + 1, self.retries + 1)
            else:
                link.forget_ack(part.qn)
                raise NoAnswer(f"no 9014 for {part.cn} QN {part.qn} after {self.retries + 1} tries of "
                               f"{self.answer_timeout_s:g} s; reconnecting")

    def _sent(self, pump: Pump, out: Outgoing) -> None:
        """The platform acknowledged `out`: remember it (state file first), then move the log cursor."""
        pump.queue.popleft()
        self.state.last_sent[out.cn] = max(out.data_time, self.state.last_sent.get(out.cn, out.data_time))
        self._save()
        self._ack_log(pump.safe_id())
        self.counters[f"acked_{out.cn}"] += 1
        now = self._clock() * 1000
        self.status.last_delivery_ms = int(now)
        self.status.latencies_ms.append(now - out.data_time)
        if self._on_delivered is not None:
            self._on_delivered([])

    def _ack_log(self, upto: int) -> None:
        before = self.consumer.acked
        if upto > before:
            self.log.ack(self.consumer, upto, records=upto - before)

    async def _answer_commands(self, link: Link) -> None:
        while True:
            req = await link.incoming.get()
            try:
                off = self._observe(req)
                reply = await self.commands.handle(req)
                self._audit(req, reply.packets, reply.note)
                if off and req.cn != "1012":
                    await self._ask_time(link)
                for p in reply.packets:
                    if p.answer_wanted:
                        await self._deliver(link, p)  # a history upload: its own QN, acknowledged by 9014
                        continue
                    await link.send(encode(p))
                    self._last_send = time.monotonic()
                if reply.after is not None:
                    reply.after()
                self.counters["commands"] += 1
            except LinkClosed:
                return
            except NoAnswer as exc:
                log.warning("hj212[%s]: reply to command %s abandoned: %s", self.name, req.cn, exc)
            except Exception:
                log.exception("hj212[%s]: command %s failed", self.name, req.cn)

    def _audit(self, req: Packet, answers: list[Packet], note: str | None = None) -> None:
        """Every platform command (refused ones too) in the audit trail, secrets (PW, NewPW) masked; `note` is
        added to the result (a weak password taken)."""
        if req.cn in ("9011", "9012", "9013", "9014"):
            return
        codes = [f"{k} {v}" for a in answers if a.cn in ("9011", "9012") for g in a.cp.groups for k, v in g
                 if k in ("QnRtn", "ExeRtn")]
        params = {k: v for g in req.cp.groups for k, v in g}
        audit(self.log, Actor("hj212", f"{self.name} MN {req.mn} QN {req.qn}", self.cfg.target),
              f"hj212 {req.cn} {CN_NAMES.get(req.cn, 'unknown command')}", params,
              (", ".join(codes) or ("9013" if any(a.cn == "9013" for a in answers) else "no answer"))
              + (f" ({note})" if note else ""), site=self.site_id)

    def _observe(self, req: Packet) -> bool:
        """A request from this platform carries its time (QN): True when the gateway's clock is off by more than
        HJ 477 allows."""
        if req.mn != self.mn or req.cn in ("9011", "9012", "9013", "9014"):
            return False
        try:
            theirs = parse_qn(req.qn, self.tz)
        except ValueError:
            return False
        return CLOCK.observe(theirs, f"platform {self.name}'s request QN")

    async def _ask_time(self, link: Link, *, force: bool = False) -> None:
        """CN 1013 (time calibration request) when the clock is known to be off: at every connection, and at
        most once every TIME_REQUEST_GAP_S otherwise. No answer is wanted: the platform answers with a 1012."""
        why = CLOCK.off
        now = time.monotonic()
        if why is None or (not force and now - self._last_time_request < TIME_REQUEST_GAP_S):
            return
        self._last_time_request = now
        p = Packet(self._qn(), self.st, "1013", self._pw, self.mn, make_flag(version_bits=self.version_bits), Cp())
        await link.send(encode(p))
        self._last_send = now
        self.counters["time_requests"] += 1
        log.info("hj212[%s]: asked the platform for the time (1013): %s", self.name, why)

    async def _heartbeat(self, link: Link) -> None:
        while True:
            wait = self.cfg.heartbeat_s - (time.monotonic() - self._last_send)
            if wait > 0:
                await asyncio.sleep(wait)  # a timer, not a synchronisation
                continue
            p = Packet(self._qn(), self.st, "9015", self._pw, self.mn, make_flag(version_bits=self.version_bits),
                       Cp())
            with contextlib.suppress(LinkClosed):
                await link.send(encode(p))
            self._last_send = time.monotonic()
            self.counters["heartbeats"] += 1
