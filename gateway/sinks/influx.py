"""InfluxDB sink: writes committed polls as line protocol (see `lineproto`), at least once, idempotently.

What an answer means:
- 2xx: the batch is stored; the cursor moves past it.
- no answer, 5xx, 429, 401/403, 404 (database missing — created once when allowed): the server or its setup is
  not ready; the same batch is retried with backoff, nothing moves, nothing is lost.
- 400/422 (bad data) and 413 (too large): the batch is split in halves until the offending points stand alone;
  good points are written, a bad point is kept aside in the log's `rejected` table with the server's message,
  counted and logged, and the queue moves on. InfluxDB 1.x writes the good points of a partial write already:
  writing them again in the halves only overwrites the same points.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import urllib.parse
from collections.abc import Mapping

from gateway.alarms.records import AlarmRecord
from gateway.processing.records import AggregateRecord
from gateway.sinks.backoff import Backoff, Outage, Recovery
from gateway.sinks.base import BATCH_VALUES, DeliveredHook, HealthProvider, SinkStatus
from gateway.sinks.config import InfluxSinkConfig
from gateway.sinks.influx_http import TransportError, Writer, make_writer
from gateway.sinks.lineproto import aggregate_line, alarm_line, health_lines, reading_line, row_line
from gateway.store.codec import decode_stored, decoded
from gateway.store.log import DurableLog
from gateway.store.records import LogRecord, ReadingRecord, StoredReading, value_count

REFUSED_ALARM_AFTER = 20  # points refused in a row before the sink says its endpoint is probably wrong

log = logging.getLogger("plume.sink.influx")

Item = tuple[LogRecord, str]


class Verdict(enum.Enum):
    OK = "ok"
    BAD = "bad"  # the server refuses the data itself
    TOO_LARGE = "too large"


class Closing(Exception):
    """The gateway is stopping while the server does not take the batch: leave it in the log."""


def record_line(rec: LogRecord, exact: Mapping[str, frozenset[str]] | None = None) -> str | None:
    """The point of a log record: readings, aggregates, alarm events (not checkpoints); None for other kinds.
    `exact`: device -> channels written as integer fields (gateway.acquisition.codec.exact_channels). A reading
    read back as its row (a backlog) is written from the row when it can be, else decoded first."""
    if isinstance(rec, StoredReading):
        line = row_line(rec)
        if line is not None:
            return line
        rec = decode_stored(rec)
    if isinstance(rec, ReadingRecord):
        return reading_line(rec.reading, exact.get(rec.reading.device, ()) if exact else ())
    if isinstance(rec, AggregateRecord):
        return aggregate_line(rec.payload)
    if isinstance(rec, AlarmRecord) and not rec.payload.checkpoint:
        return alarm_line(rec.payload.event)
    return None


class InfluxSink:
    """Delivers the log to one InfluxDB (v1 or v2 write API)."""

    type = "influx"

    def __init__(
        self,
        cfg: InfluxSinkConfig,
        site_id: str,
        log_: DurableLog,
        *,
        secret: str | None = None,
        writer: Writer | None = None,
        on_delivered: DeliveredHook | None = None,
        exact: Mapping[str, frozenset[str]] | None = None,
    ):
        self.cfg = cfg
        self.exact = exact or {}  # device -> exact 64-bit integer channels (integer fields)
        self.name = cfg.name
        self.site_id = site_id
        self.log = log_
        self.consumer = log_.consumer(cfg.name)
        self._writer = writer or make_writer(cfg, secret)
        self._on_delivered = on_delivered
        self._health: HealthProvider | None = None
        self._health_interval = cfg.health_interval_s
        where = cfg.database if cfg.api == "v1" else cfg.bucket
        self.status = SinkStatus(cfg.name, "influx", f"{cfg.url} ({cfg.api}, {where})")
        self._outage = Outage(log, f"influx[{cfg.name}] {cfg.url}")
        self._backoff = Backoff(cfg.retry_min_s, cfg.retry_max_s)
        url = urllib.parse.urlsplit(cfg.url)
        self.recovery = Recovery(url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80))
        self._refused_run = 0  # points refused in a row (none accepted in between)
        self._refused_ids: set[int] = set()
        self._created_db = False
        self.writes = 0

    def set_health(self, provider: HealthProvider, interval_s: float | None = None) -> None:
        self._health = provider
        if interval_s is not None:
            self._health_interval = interval_s

    async def run(self) -> None:
        await self._writer.open()
        health_task: asyncio.Task[None] | None = None
        if self._health is not None and self._health_interval > 0:
            health_task = asyncio.create_task(self._write_health(), name=f"influx[{self.name}].health")
        try:
            await self._deliver_log()
        except Closing:
            log.info("influx[%s]: stopping with %d readings not yet written; they stay in the log",
                     self.name, self.log.depth(self.consumer))
        finally:
            if health_task is not None:
                health_task.cancel()
                await asyncio.gather(health_task, return_exceptions=True)
            await self._writer.close()

    async def _deliver_log(self) -> None:
        cfg = self.cfg
        linger = cfg.linger_ms / 1000
        after = self.consumer.acked
        while True:
            after = max(after, self.consumer.acked)  # the disk cap may have moved the cursor past us
            records = await self.log.read(after, cfg.batch_size, linger_s=linger, max_values=BATCH_VALUES,
                                          rows=True)
            if not records:
                return
            items: list[Item] = []
            for rec in records:
                line = record_line(rec, self.exact)
                if line is not None:
                    items.append((rec, line))
            if items:
                await self._deliver(items)
            after = records[-1].id
            # readings the disk cap dropped while we were retrying were counted as dropped, not delivered;
            # points the server refused are counted as rejected, not delivered
            delivered = [r for r in records if r.id > self.consumer.acked and r.id not in self._refused_ids]
            self._refused_ids.clear()
            values = value_count(delivered)
            self.log.ack(self.consumer, after, len(delivered), values)
            self.status.delivered(delivered)
            if self._on_delivered is not None:
                self._on_delivered(decoded(delivered))

    async def _deliver(self, items: list[Item]) -> None:
        """Write `items`; on bad data, split until every bad point stands alone and is rejected."""
        verdict, message = await self._write(items)
        if verdict is Verdict.OK:
            return
        if len(items) == 1:
            rec, line = items[0]
            self.log.reject(self.consumer, rec, line, f"HTTP {verdict.value}: {message}")
            self._refused_ids.add(rec.id)
            self._refused(message)
            log.warning("influx[%s]: server refused reading %d of %s (ts %d): %s; kept in the log's rejected "
                        "table, moving on (%d rejected so far)", self.name, rec.id,
                        rec.reading.device if isinstance(rec, ReadingRecord) else
                        rec.layout.device if isinstance(rec, StoredReading) else rec.kind, rec.ts, message,
                        self.consumer.rejected)
            return
        mid = len(items) // 2
        await self._deliver(items[:mid])
        await self._deliver(items[mid:])

    async def _write(self, items: list[Item]) -> tuple[Verdict, str]:
        """One write, retried until the server gives a verdict on the data itself. Readings the disk cap drops
        meanwhile (the cursor moved past them) are left out of the next attempt: they count as dropped."""
        while True:
            if items[0][0].id <= self.consumer.acked:
                items = [it for it in items if it[0].id > self.consumer.acked]
                if not items:
                    return Verdict.OK, ""
            body = "\n".join(line for _, line in items)
            try:
                status, message = await self._writer.write(body)
            except TransportError as exc:
                status, message = 0, str(exc)
            self.writes += 1
            if 200 <= status < 300:
                self.status.connected = True
                self._backoff.reset()
                self._outage.ok()
                self._accepted()
                return Verdict.OK, ""
            if status in (400, 422):
                self.status.connected = True
                return Verdict.BAD, message
            if status == 413:
                return Verdict.TOO_LARGE, message
            if status == 404 and self.cfg.api == "v1" and "database not found" in message:
                if self.cfg.create_database and not self._created_db and await self._create_database():
                    continue
                message += f" (create it: CREATE DATABASE \"{self.cfg.database}\")"
            elif status in (401, 403):
                message += " (check the credentials of this sink)"
            self.status.connected = status != 0
            self.status.failures += 1
            self.status.last_error = f"HTTP {status}: {message}" if status else message
            self._outage.fail(f"write failed: {self.status.last_error}; retrying, nothing is lost")
            if self.log.closing or await self.recovery.wait(self._backoff.next(), self.log.sleep):
                raise Closing

    def _refused(self, message: str) -> None:
        """One more point refused with none accepted since the last: after REFUSED_ALARM_AFTER in a row the
        endpoint itself is probably wrong (a proxy, another service, a wrong database or API): say so in
        health (`problem`) and the log, once."""
        self._refused_run += 1
        if self._refused_run == REFUSED_ALARM_AFTER:
            self.status.problem = (f"every point is refused ({self._refused_run} in a row, none accepted: "
                                   f"{message[:120]}); check this sink's url, api and database")
            log.error("influx[%s] %s: %s", self.name, self.status.target, self.status.problem)

    def _accepted(self) -> None:
        if self.status.problem:
            log.info("influx[%s]: the server accepts points again", self.name)
        self._refused_run = 0
        self.status.problem = ""

    async def _create_database(self) -> bool:
        try:
            status, message = await self._writer.create_database()
        except TransportError:
            return False
        self._created_db = True
        if 200 <= status < 300:
            log.info("influx[%s]: created database %s", self.name, self.cfg.database)
            return True
        log.error("influx[%s]: cannot create database %s: HTTP %d %s", self.name, self.cfg.database, status, message)
        return False

    async def _write_health(self) -> None:
        assert self._health is not None
        while True:
            await asyncio.sleep(self._health_interval)
            try:
                lines = health_lines(await self._health(), int(time.time() * 1000))
                if lines:
                    await self._writer.write("\n".join(lines))
            except TransportError:
                pass  # best effort: the data path reports the outage
            except Exception:
                log.exception("influx[%s]: health write failed", self.name)
