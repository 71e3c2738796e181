"""The durable log: readings are committed to SQLite before any sink sees them; each sink reads with its own cursor.

- `append()` is called on the event loop for every poll and never blocks: it assigns the record id and the
  per-device sequence number and buffers the encoded row. The committer writes the buffer in one transaction
  (one fsync with durability `full`) as soon as the previous transaction finished: group commit, so a reading
  waits about one commit and slow storage gets larger transactions, not a queue. `commit_interval_ms` > 0 adds a
  minimum spacing between transactions.
- Committed records are handed to consumers from an in-memory tail (no read-back, no decoding) while they keep
  up. The tail holds only what some consumer has not acknowledged yet, and at most `tail_size` records and
  `tail_values` channel values (so wide devices do not inflate memory); a consumer that fell behind (outage,
  restart) reads from the database in batches.
- All SQLite work runs on one worker thread, so a slow SD card never stalls the event loop (acquisition timing).
- The disk cap drops the oldest rows, delivered or not; what a consumer had not yet delivered is counted as
  dropped for it, logged and kept in its cursor row (it survives restarts). Records of `KEPT_KINDS` (the audit
  trail) among them are first copied to the end of the log, so they outlive the readings of their time.
  Retention deletes only rows every consumer has delivered.
- A full disk: when the file system has less than `min_free_mb` free and the file no freed pages to reuse, the
  oldest 5% are dropped the same way. A commit that fails for a full disk (SQLITE_FULL) keeps its readings in
  memory, at most `max_buffered` of them: newer readings are refused and counted (`lost`); commits resume by
  themselves once there is room. A stop while the disk is full says how many readings could not be committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from gateway.core.clock import now_ms
from gateway.core.model import DeviceReading
from gateway.core.secrets import redact
from gateway.store.codec import KindRow, Row, Schema, decode, encode, schema_key
from gateway.store.config import StoreConfig
from gateway.store.db import Batch, CursorRow, LogDb, RejectRow, is_disk_full
from gateway.store.records import (
    KEPT_KINDS,
    KIND_CODES,
    LogRecord,
    PayloadRecord,
    ReadingRecord,
    SchemaKey,
    StoredReading,
    UnknownRecord,
    record_type,
    record_type_of,
    value_count,
)

log = logging.getLogger("plume.store")
T = TypeVar("T")

CAP_CHECK_S = 1.0
RETENTION_CHECK_S = 3600.0
CAP_HEADROOM = 0.9  # when over the cap, drop down to 90% of it, so drops come in few large steps
LOW_DISK_DROP = 20  # a full file system: drop 1/20 (5%) of the rows at a time
RECORDS_ALLOWANCE = 1000  # records of other kinds (alarms, aggregates) may exceed max_buffered by this much


class LogLockedError(RuntimeError):
    """Another process uses this log file."""


@dataclass(slots=True)
class Consumer:
    """One reader of the log (a sink) and its counters.

    `acked` is persisted; `delivered`/`delivered_values` count since start; `dropped`/`rejected` are totals.
    """

    name: str
    acked: int
    dropped: int = 0
    rejected: int = 0
    delivered: int = 0
    delivered_values: int = 0
    dirty: bool = False

    def row(self) -> CursorRow:
        return CursorRow(self.name, self.acked, self.dropped, self.rejected)


@dataclass(slots=True)
class LogStats:
    first_id: int
    last_id: int
    committed_id: int
    used_bytes: int
    commits: int
    committed_records: int
    buffered: int
    dropped_total: int
    lost: int = 0  # readings refused while the memory buffer was full (never in the log)
    max_buffered: int = 0
    disk_free: int | None = None  # bytes free on the log's file system (at the last check)
    tail: int = 0  # committed records held in memory for consumers that have not acknowledged them


def _values_bounded(records: list[LogRecord], max_values: int) -> list[LogRecord]:
    """The leading records of `records` that carry at most `max_values` channel values (at least one record)."""
    n = 0
    for i, rec in enumerate(records):
        if isinstance(rec, ReadingRecord):
            n += len(rec.reading.values)
            if n > max_values:
                return records[: max(i, 1)]
    return records


class DurableLog:
    """SQLite (WAL) store-and-forward log with per-consumer cursors."""

    def __init__(self, path: Path, config: StoreConfig | None = None, *, tail_size: int = 2048,
                 tail_values: int = 40_000, max_batch: int = 5000):
        self.path = path
        self.config = config or StoreConfig()
        self._db = LogDb(path, self.config.durability, wal_budget=int(self.config.min_free_mb * 1e6 / 4))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plume-log")
        self._tail_size = tail_size
        self._max_batch = max_batch
        self._lock_file: IO[bytes] | None = None
        # state, valid after open()
        self.first_id = 1
        self.last_id = 0  # highest id assigned (committed or buffered)
        self.committed_id = 0
        self._seqs: dict[str, int] = {}
        self._schemas: dict[SchemaKey, Schema] = {}
        self._schemas_by_id: dict[int, Schema] = {}
        self._next_schema = 1
        self._consumers: dict[str, Consumer] = {}
        self._buffer: list[LogRecord] = []
        self._rows: list[Row] = []
        self._records: list[KindRow] = []
        self._new_schemas: list[Schema] = []
        self._new_seqs: dict[str, int] = {}
        self._rejects: list[RejectRow] = []
        self._tail: list[LogRecord] = []
        self._tail_values = 0  # channel values of the readings in the tail
        self._tail_value_budget = tail_values
        self._committed = asyncio.Event()
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._closing_event = asyncio.Event()
        self._opened = False
        self._listeners: list[Callable[[list[LogRecord]], None]] = []
        self._commit_lock = asyncio.Lock()
        self._used_bytes = 0
        self._last_cap_check = 0.0
        self._last_retention = 0.0
        self.commits = 0
        self.committed_records = 0
        self.commit_failures = 0
        self.lost = 0  # readings refused because max_buffered were waiting for a commit
        self._refusing = False
        self.disk_full = False  # the last commit failed for a full disk
        self._disk_free: int | None = None
        self.carried = 0  # records of KEPT_KINDS copied forward by the disk cap

    # --- lifecycle -------------------------------------------------------------------------------------------
    async def open(self, consumers: Iterable[str] = ()) -> None:
        """Open (or create) the log; register `consumers`; forget cursors of consumers no longer configured."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.path.with_suffix(".lock"), "wb")  # noqa: SIM115 - held while open
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise LogLockedError(f"{self.path} is in use by another plume process") from None
        state = await self._run(self._db.open)
        self.first_id = state.first_id
        self.last_id = self.committed_id = state.last_id
        self._seqs = dict(state.seqs)
        self._schemas_by_id = dict(state.schemas)
        self._schemas = {s.key: s for s in state.schemas.values()}
        self._next_schema = max(state.schemas, default=0) + 1
        names = list(dict.fromkeys(consumers))
        for name in names:
            row = state.cursors.get(name)
            if row is None:  # a new sink starts with the oldest retained reading (back-fill)
                self._consumers[name] = Consumer(name, self.first_id - 1, dirty=True)
            else:
                self._consumers[name] = Consumer(name, row.acked, row.dropped, row.rejected)
        stale = [n for n in state.cursors if n not in self._consumers]
        if stale:
            log.info("log: forgetting cursors of sinks no longer configured: %s", ", ".join(stale))
            await self._run(self._db.delete_cursors, stale)
        self._used_bytes = await self._run(self._db.used_bytes)
        self._opened = True
        log.info(
            "log: %s opened, %d readings held (ids %d..%d), %.1f MB",
            self.path, self.committed_id - self.first_id + 1, self.first_id, self.committed_id,
            self._used_bytes / 1e6,
        )
        await self._maintain(force=True)

    @property
    def closing(self) -> bool:
        return self._closing

    def begin_close(self) -> None:
        """No more appends are expected: readers return [] once they have everything committed."""
        self._closing = True
        self._closing_event.set()
        self._committed.set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep (a retry backoff) but wake up when the log starts closing; True if it is closing."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing_event.wait()
        return self._closing

    async def close(self) -> None:
        """Commit what is buffered and the cursors, then close the file."""
        if not self._opened:
            self._executor.shutdown(wait=False)
            return
        self.begin_close()
        try:
            await self._final_flush()
        finally:
            self._opened = False
            await self._run(self._db.close)
            self._executor.shutdown(wait=True)
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None

    async def _final_flush(self) -> None:
        """The last commit. On a full disk: make room once more, then say what could not be committed."""
        for attempt in range(2):
            try:
                await self.flush(force_cursors=True)
                return
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                if attempt == 0:
                    await self._make_room()
        log.error("log: stopping with the disk full (%s): %d readings could not be committed (disk full) and are "
                  "lost%s", self._free_text(), sum(1 for r in self._buffer if r.kind == "reading"),
                  f"; {self.lost} more were refused while the buffer was full" if self.lost else "")

    def _free_text(self) -> str:
        try:
            free = self._db.fs_free_bytes()
        except OSError:
            return "free space unknown"
        return f"{free / 1e6:.2f} MB free on its file system"

    async def __aenter__(self) -> DurableLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- writing ---------------------------------------------------------------------------------------------
    def append(self, reading: DeviceReading) -> ReadingRecord:
        """Buffer one poll for the next commit. Cheap and non-blocking: called on the loop for every poll.

        While `max_buffered` readings already wait for a commit (the disk is full), the reading is refused: it
        is counted in `lost`, its device's `seq` still moves on (subscribers see the gap), and the record
        returned has id 0 (it is not in the log)."""
        key = schema_key(reading)
        schema = self._schemas.get(key) or self._schema_for(key)
        seq = self._seqs.get(reading.device, 0) + 1
        self._seqs[reading.device] = seq
        self._new_seqs[reading.device] = seq
        if len(self._buffer) >= self.config.max_buffered:
            self._refuse()
            return ReadingRecord(0, reading.ts, reading.site, seq, reading)
        self.last_id += 1
        record = ReadingRecord(self.last_id, reading.ts, reading.site, seq, reading)
        self._buffer.append(record)
        self._rows.append(encode(record.id, seq, schema.id, reading))
        self._wake.set()
        if len(self._buffer) >= self._max_batch:
            self._full.set()
        return record

    def append_record(self, kind: str, payload: Any, ts: int, site: str = "") -> PayloadRecord[Any]:
        """Buffer a record that is not a reading (gateway.store.records: the payload of a registered kind). Same
        id sequence, same commit. Raises ValueError for a kind no module registered."""
        rt = record_type(kind)
        enc = rt.encode(payload, ts)
        if len(self._buffer) >= self.config.max_buffered + RECORDS_ALLOWANCE:
            self._refuse()
            return rt.record(0, enc.ts, site, payload)
        schema_id = 0
        if enc.layout is not None:
            schema_id = self._schema_for(enc.layout).id
        self.last_id += 1
        rid = self.last_id
        record = rt.record(rid, enc.ts, site, payload)
        self._buffer.append(record)
        self._records.append((rid, enc.ts, 0, schema_id, enc.flags, enc.vals, None, rt.code))
        self._wake.set()
        if len(self._buffer) >= self._max_batch:
            self._full.set()
        return record

    def _refuse(self) -> None:
        self.lost += 1
        if not self._refusing:
            self._refusing = True
            log.warning("log: %d readings wait in memory for a commit (store.max_buffered); newer readings are "
                        "refused and counted as lost until commits work again (%d lost in total)",
                        len(self._buffer), self.lost)

    def _schema_for(self, key: SchemaKey) -> Schema:
        schema = self._schemas.get(key)
        if schema is None:
            schema = Schema(self._next_schema, *key)
            self._next_schema += 1
            self._schemas[key] = schema
            self._schemas_by_id[schema.id] = schema
            self._new_schemas.append(schema)
        return schema

    def on_commit(self, listener: Callable[[list[LogRecord]], None]) -> None:
        """Call `listener(records)` on the loop after each commit (e.g. `plume demo` showing readings)."""
        self._listeners.append(listener)

    async def flush(self, force_cursors: bool = False) -> None:
        """Commit everything buffered now (and the cursors that moved)."""
        async with self._commit_lock:
            cursors = [c for c in self._consumers.values() if c.dirty or force_cursors]
            batch = Batch(self._rows, self._records, self._new_schemas, self._new_seqs, [c.row() for c in cursors],
                          self._rejects)
            if not batch:
                return
            records = self._buffer
            self._buffer, self._rows, self._records, self._new_schemas, self._new_seqs, self._rejects = (
                [], [], [], [], {}, [])
            self._full.clear()
            for c in cursors:
                c.dirty = False
            commit = asyncio.ensure_future(self._run(self._db.commit, batch))
            try:
                await asyncio.shield(commit)
            except asyncio.CancelledError:
                # the worker thread goes on and commits anyway: learn how it ended before passing the cancellation
                # on, so a committed batch is never put back (and written a second time), however many times the
                # wait itself is cancelled (shutdown cancels the committer, a caller giving up cancels it again)
                while not commit.done():
                    try:
                        await asyncio.shield(commit)
                    except asyncio.CancelledError:
                        continue
                    except BaseException:
                        break  # the commit failed: put back below
                if commit.cancelled() or commit.exception() is not None:
                    self._put_back(records, batch, cursors)
                    raise
                self._committed_batch(records)
                raise
            except BaseException:
                self._put_back(records, batch, cursors)
                raise
            self._committed_batch(records)

    def _put_back(self, records: list[LogRecord], batch: Batch, cursors: list[Consumer]) -> None:
        """A batch that did not commit goes back in front of what arrived meanwhile; the next commit retries it."""
        self._buffer[:0] = records
        self._rows[:0] = batch.rows
        self._records[:0] = batch.records
        self._new_schemas[:0] = batch.schemas
        self._new_seqs = {**batch.seqs, **self._new_seqs}
        self._rejects[:0] = batch.rejects
        for c in cursors:
            c.dirty = True

    def _committed_batch(self, records: list[LogRecord]) -> None:
        """Bookkeeping after a commit: committed id, the in-memory tail, waiting readers, listeners."""
        self.commits += 1
        self.disk_full = False
        if self._refusing:
            self._refusing = False
            log.warning("log: committing again; %d readings were refused while the buffer was full", self.lost)
        if records:
            self.committed_id = records[-1].id
            self.committed_records += len(records)
            self._tail.extend(records)
            self._tail_values += value_count(records)
            self._bound_tail()
            self._committed.set()
            self._committed = asyncio.Event()
            for listener in self._listeners:
                try:
                    listener(records)
                except Exception:
                    log.exception("log: commit listener failed")

    async def _flush_for_query(self) -> None:
        """Commit what is buffered before a query reads the database; on a full disk the query reads what is
        committed (the buffered records stay buffered; the committer says so and retries)."""
        try:
            await self.flush()
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self.disk_full = True

    async def run(self) -> None:
        """The committer: batches appends into transactions (group commit: the next one starts when the previous
        one finished), enforces the disk cap and retention. Runs until cancelled; a final flush happens in
        close()."""
        interval = self.config.commit_interval_ms / 1000
        last = 0.0
        failing = False
        while True:
            try:
                async with asyncio.timeout(CAP_CHECK_S):
                    await self._wake.wait()
            except TimeoutError:
                await self._maintain()
                continue
            delay = last + interval - time.monotonic()
            if delay > 0 and not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._full.wait()
            if interval <= 0:
                await asyncio.sleep(0)  # polls that complete in this same loop turn join the transaction
            self._wake.clear()
            last = time.monotonic()
            try:
                await self.flush()
                if failing:
                    log.info("log: commits work again")
                failing = False
            except Exception as exc:
                self.commit_failures += 1
                full = self.disk_full = is_disk_full(exc)
                if failing:
                    log.debug("log: commit failed again: %s", exc)
                elif full:
                    log.warning("log: commit failed: the disk is full (%s); %d readings are held in memory (at "
                                "most store.max_buffered %d) and committed once there is room",
                                self._free_text(), len(self._buffer), self.config.max_buffered)
                else:
                    log.error("log: commit failed (%s); readings stay buffered in memory and are retried", exc)
                failing = True
                if full:
                    await self._make_room()
                self._wake.set()
                await asyncio.sleep(1.0)
                continue
            await self._maintain()

    # --- reading ---------------------------------------------------------------------------------------------
    def consumer(self, name: str) -> Consumer:
        try:
            return self._consumers[name]
        except KeyError:
            raise KeyError(f"log consumer {name!r} was not registered when the log was opened") from None

    @property
    def consumers(self) -> dict[str, Consumer]:
        return self._consumers

    async def read(self, after: int, limit: int, linger_s: float = 0.0,
                   max_values: int | None = None, rows: bool = False) -> list[LogRecord]:
        """Committed records with id > after, oldest first, at most `limit`. Waits until there is at least one;
        returns [] once the log is closing and everything committed was read. With `linger_s`, waits up to that
        long for a full batch (fewer, larger writes). With `max_values`, the batch also ends before the record
        that would take it past that many channel values (at least one record): what a sink holds while it
        delivers a batch is bounded by values, however wide the devices (lingering ends at that bound too). With
        `rows`, readings read back from the database come undecoded, as StoredReading (from the tail they are
        ReadingRecords either way)."""
        while True:
            after = max(after, self.first_id - 1)
            if self.committed_id > after:
                break
            if self._closing:
                return []
            await self._committed.wait()
        if linger_s > 0 and self.committed_id - after < limit and not self._closing:
            deadline = time.monotonic() + linger_s
            while self.committed_id - after < limit and not self._closing:
                if max_values is not None and self._tail_values_after(after, max_values) >= max_values:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._committed.wait()
            after = max(after, self.first_id - 1)
        tail = self._tail
        if tail and tail[0].id <= after + 1:
            start = after + 1 - tail[0].id
            part = tail[start : start + limit]
            return part if max_values is None else _values_bounded(part, max_values)
        return await self._run(self._read_db, after, limit, max_values, rows)

    def _tail_values_after(self, after: int, enough: int) -> int:
        """Channel values of the committed records after `after` held in the tail (counting stops at `enough`)."""
        tail = self._tail
        if not tail or tail[0].id > after + 1:
            return 0
        n = 0
        for rec in tail[after + 1 - tail[0].id :]:
            if isinstance(rec, ReadingRecord):
                n += len(rec.reading.values)
                if n >= enough:
                    break
        return n

    def _read_db(self, after: int, limit: int, max_values: int | None = None, stored: bool = False) -> list[LogRecord]:
        return self._decode_rows(self._db.read_records(after, limit), max_values, stored)

    def _decode_rows(self, rows: list[KindRow], max_values: int | None = None,
                     stored: bool = False) -> list[LogRecord]:
        schemas = self._schemas_by_id
        out: list[LogRecord] = []
        budget = max_values
        for rid, ts, seq, sid, flags, vals, extra, kind in rows:
            if kind == 0:
                if budget is not None:  # the row's width is its schema's: known before decoding it
                    budget -= len(schemas[sid].channels)
                    if budget < 0 and out:
                        break
                if stored:
                    layout = schemas[sid]
                    out.append(StoredReading(rid, ts, layout.site, seq, layout, flags, vals, extra))
                    continue
                reading = decode(schemas[sid], ts, flags, vals, extra)
                out.append(ReadingRecord(rid, ts, reading.site, seq, reading))
                continue
            rt = record_type_of(kind)
            if rt is None:  # written by a newer gateway, or its module is not loaded: keep it as text
                out.append(UnknownRecord(rid, ts, "", vals))
                continue
            payload = rt.decode(schemas[sid].key if sid else None, ts, flags, vals)
            out.append(rt.record(rid, ts, rt.site_of(payload), payload))
        return out

    async def read_kinds(self, after: int, kinds: tuple[str, ...], limit: int = 500) -> tuple[list[LogRecord], int]:
        """Committed records of `kinds` (not readings) with id > after, oldest first, and the id up to which the
        log was looked through (a reader may move its cursor that far). Waits like `read`; ([], after) once the
        log is closing and everything committed was looked through."""
        while True:
            after = max(after, self.first_id - 1)
            if self.committed_id > after:
                break
            if self._closing:
                return [], after
            await self._committed.wait()
        tail = self._tail
        if tail and tail[0].id <= after + 1:
            start = after + 1 - tail[0].id
            part = tail[start:]
            found = [r for r in part if r.kind in kinds]
            if len(found) > limit:
                found = found[:limit]
                return found, found[-1].id
            return found, part[-1].id if part else after
        codes = tuple(KIND_CODES[k] for k in kinds)
        upto = self.committed_id
        rows = await self._run(self._db.read_kinds, after, codes, limit)
        found = [r for r in self._decode_rows(rows) if r.id <= upto]
        if len(found) >= limit:
            return found, found[-1].id
        return found, upto

    # --- queries of the processing and alarm stages (restart, history) ---------------------------------------
    async def records_of_kind(self, kind: str, ts_from: int, ts_to: int | None = None) -> list[LogRecord]:
        """Committed records of one kind (not readings) with ts_from <= ts (<= ts_to), in log order. An aggregate's
        ts is its end; an alarm's, actuation's or command's when it happened (a checkpoint's: when it was written)."""
        await self._flush_for_query()
        rows = await self._run(self._db.kind_between, KIND_CODES[kind], ts_from, ts_to)
        return self._decode_rows(rows)

    async def latest_of_kind(self, kind: str) -> LogRecord | None:
        await self._flush_for_query()
        row = await self._run(self._db.latest_of_kind, KIND_CODES[kind])
        return None if row is None else self._decode_rows([row])[0]

    async def readings_since(self, ts: int, batch: int = 2000) -> AsyncIterator[list[LogRecord]]:
        """Async iterator over committed records (every kind) from the first reading with ts >= `ts` on, in log
        order, in batches (lists)."""
        await self._flush_for_query()
        first = await self._run(self._db.first_reading_at, ts)
        if first is None:
            return
        after = first - 1
        while after < self.committed_id:
            recs = await self._run(self._read_db, after, batch)
            recs = [r for r in recs if r.id <= self.committed_id]
            if not recs:
                return
            yield recs
            after = recs[-1].id

    async def reading_span(self) -> tuple[int | None, int | None]:
        """(ts of the oldest reading held, ts of the newest)."""
        await self._flush_for_query()
        return await self._run(self._db.first_ts), await self._run(self._db.last_reading_ts)

    def ack(self, consumer: Consumer, upto_id: int, records: int = 0, values: int = 0) -> None:
        """`consumer`'s target confirmed everything up to `upto_id`. Persisted with the next commit."""
        if upto_id > consumer.acked:
            consumer.acked = min(upto_id, self.committed_id)
            consumer.dirty = True
        consumer.delivered += records
        consumer.delivered_values += values

    def reject(self, consumer: Consumer, record: LogRecord, payload: str, error: str) -> None:
        """`consumer`'s target refused this record for good (malformed): keep it aside, count it, move on."""
        consumer.rejected += 1
        consumer.dirty = True
        self._rejects.append(RejectRow(consumer.name, record.id, record.ts, int(time.time() * 1000),
                                       payload, redact(error)))
        self._wake.set()

    async def rejected(self, consumer: str | None = None) -> list[tuple[str, int, int, str, str]]:
        """Rejected records kept aside: (consumer, record id, ts, payload, error)."""
        await self._flush_for_query()
        return await self._run(self._db.rejected_rows, consumer)

    async def oldest_pending_ts(self, consumer: Consumer) -> int | None:
        """Poll time of the oldest record `consumer` has not delivered (None when it is caught up)."""
        nxt = max(consumer.acked + 1, self.first_id)
        if nxt > self.committed_id:
            return None
        tail = self._tail
        if tail and tail[0].id <= nxt <= tail[-1].id:
            return tail[nxt - tail[0].id].ts
        return await self._run(self._db.ts_of, nxt)

    def depth(self, consumer: Consumer) -> int:
        """Committed records `consumer` has not delivered yet."""
        return max(0, self.committed_id - max(consumer.acked, self.first_id - 1))

    def stats(self) -> LogStats:
        return LogStats(
            first_id=self.first_id,
            last_id=self.last_id,
            committed_id=self.committed_id,
            used_bytes=self._used_bytes,
            commits=self.commits,
            committed_records=self.committed_records,
            buffered=len(self._buffer),
            dropped_total=sum(c.dropped for c in self._consumers.values()),
            lost=self.lost,
            max_buffered=self.config.max_buffered,
            disk_free=self._disk_free,
            tail=len(self._tail),
        )

    # --- disk cap and retention ------------------------------------------------------------------------------
    async def maintain(self) -> None:
        """Enforce the disk cap and retention now (the committer does it every few seconds / every hour)."""
        await self._maintain(force=True)

    async def _maintain(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_cap_check >= CAP_CHECK_S:
            self._last_cap_check = now
            self._used_bytes = await self._run(self._db.used_bytes)
            if self._used_bytes > self.config.max_disk_mb * 1e6:
                await self._free_disk()
            await self._check_free_space()
        if force or now - self._last_retention >= RETENTION_CHECK_S:
            self._last_retention = now
            await self._expire()

    async def _expire(self) -> None:
        cutoff = now_ms() - int(self.config.retention_days * 86_400_000)
        through = min((c.acked for c in self._consumers.values()), default=self.committed_id)
        through = min(through, self.committed_id)
        if through < self.first_id:
            return
        async with self._commit_lock:
            n = await self._run(self._db.expire, cutoff, through)
            if n:
                first = await self._run(self._db.first_id)
                self.first_id = first if first is not None else self.committed_id + 1
                self._trim_tail()
                log.info("log: retention removed %d delivered readings older than %g days", n,
                         self.config.retention_days)

    async def _check_free_space(self) -> None:
        """Below `min_free_mb` free on the file system, stop growing: drop the oldest 5% when the file has no
        freed pages left to reuse (their space is what the next commits take)."""
        try:
            self._disk_free = free = await self._run(self._db.fs_free_bytes)
        except OSError:
            return
        if free >= self.config.min_free_mb * 1e6:
            return
        reusable = await self._run(self._db.free_page_bytes)
        if reusable >= max(self._used_bytes / LOW_DISK_DROP / 2, 65536):
            return
        await self._free_disk(emergency=True, why=f"the disk is almost full ({free / 1e6:.2f} MB free, "
                                                  f"store.min_free_mb {self.config.min_free_mb:g})")

    async def _make_room(self) -> None:
        """A commit failed for a full disk: give the WAL's space back, and drop the oldest 5% unless the file
        still has freed pages from the last drop (then dropping more would not help)."""
        if not await self._run(self._db.checkpoint):
            log.debug("log: checkpoint on the full disk failed")
        try:
            reusable = await self._run(self._db.free_page_bytes)
        except Exception:
            reusable = 0
        if reusable < max(self._used_bytes / LOW_DISK_DROP / 2, 65536):
            await self._free_disk(emergency=True, why=f"the disk is full ({self._free_text()})")
            await self._run(self._db.checkpoint)

    async def _free_disk(self, emergency: bool = False, why: str = "") -> None:
        """Drop the oldest rows until the log is back under the cap (or, on a full disk, 5% of the rows)."""
        try:
            await self._drop_oldest(emergency, why)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            log.debug("log: dropping the oldest readings failed on the full disk: %s", exc)

    async def _drop_oldest(self, emergency: bool, why: str) -> None:
        cap = self.config.max_disk_mb * 1e6
        reason = why or f"disk cap {self.config.max_disk_mb:g} MB reached"
        for _ in range(20):
            if not emergency:
                await self._carry_kept(cap)
            async with self._commit_lock:
                rows = self.committed_id - self.first_id + 1
                if rows <= 0:
                    return
                if emergency:
                    n = max(1, rows // LOW_DISK_DROP)
                else:
                    used = self._used_bytes
                    if used <= cap:
                        return
                    per_row = used / rows
                    n = max(1, math.ceil((used - cap * CAP_HEADROOM) / per_row))
                through = min(self.first_id + n - 1, self.committed_id)
                moved: list[tuple[Consumer, int]] = []
                rows_out: list[CursorRow] = []
                for c in self._consumers.values():
                    if c.acked < through:
                        lost = through - max(c.acked, self.first_id - 1)
                        moved.append((c, lost))
                        rows_out.append(CursorRow(c.name, through, c.dropped + lost, c.rejected))
                # counters move only once the rows are gone (a full disk can make the delete fail)
                deleted = await self._run(self._db.delete_through, through, rows_out)
                for c, lost in moved:
                    c.dropped += lost
                    c.acked = through
                    c.dirty = False
                    log.warning("log: %s: dropped %d readings not yet delivered to %s (ids %d..%d, the oldest; "
                                "%d dropped in total)", reason, lost, c.name, through - lost + 1, through, c.dropped)
                self.first_id = through + 1
                self._trim_tail()
                self._used_bytes = await self._run(self._db.used_bytes)
                log_at = log.warning if emergency and not moved else log.info
                log_at("log: removed the %d oldest readings (%s); %.1f MB used", deleted, reason,
                       self._used_bytes / 1e6)
            if emergency:
                return

    async def _carry_kept(self, cap: float) -> None:
        """Before the cap drops the oldest rows: copy the records of KEPT_KINDS (the audit trail) among them to the
        end of the log, so they outlive the readings of their time. Not on a full disk, and not when the rows to
        drop are mostly such records (nothing would be gained)."""
        rows = self.committed_id - self.first_id + 1
        if rows <= 0 or self._used_bytes <= cap:
            return
        n = max(1, math.ceil((self._used_bytes - cap * CAP_HEADROOM) / (self._used_bytes / rows)))
        through = min(self.first_id + n - 1, self.committed_id)
        codes = tuple(KIND_CODES[k] for k in KEPT_KINDS)
        found = [r for r in await self._run(self._db.read_kinds, self.first_id - 1, codes, n) if r[0] <= through]
        if not found or len(found) * 2 > through - self.first_id + 1:
            return
        for _, ts, _seq, sid, flags, vals, extra, kind in found:
            self.last_id += 1
            row = (self.last_id, ts, 0, sid, flags, vals, extra, kind)
            self._records.append(row)
            self._buffer.extend(self._decode_rows([row]))
        await self.flush()
        self.carried += len(found)
        log.info("log: disk cap: %d audit records copied ahead of the readings being dropped (%d so far)",
                 len(found), self.carried)

    def _trim_tail(self) -> None:
        tail = self._tail
        if tail and tail[0].id < self.first_id:
            self._drop_tail_front(min(len(tail), self.first_id - tail[0].id))

    def _bound_tail(self) -> None:
        """Keep in memory only records some consumer has not acknowledged, and at most `tail_size` records and
        `tail_values` channel values (with some slack, so trimming happens in steps): wide devices must not make
        the tail a memory hog. A consumer only ever reads again after its acknowledged id (a reconnect, a retry),
        so what every consumer acknowledged is never read from the tail again."""
        tail = self._tail
        if tail and self._consumers:
            done = min(c.acked for c in self._consumers.values())
            if done >= tail[0].id:
                self._drop_tail_front(min(len(tail), done - tail[0].id + 1))
        if len(tail) > self._tail_size + 512:
            self._drop_tail_front(len(tail) - self._tail_size)
        if self._tail_values > self._tail_value_budget * 5 // 4:
            excess, k = self._tail_values - self._tail_value_budget, 0
            while excess > 0 and k < len(tail):
                excess -= value_count(tail[k : k + 1])
                k += 1
            self._drop_tail_front(k)

    def _drop_tail_front(self, k: int) -> None:
        tail = self._tail
        self._tail_values -= value_count(tail[:k])
        del tail[:k]

    # --- plumbing --------------------------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def open_log_path(path: Path) -> Path:
    """The log file for a store folder or file path (tests and tools)."""
    return path if path.suffix else path / "log.sqlite"


def file_size(path: Path) -> int:
    """Size of the log file plus its WAL (what `du` would show)."""
    total = 0
    for p in (path, Path(str(path) + "-wal")):
        with contextlib.suppress(OSError):
            total += os.path.getsize(p)
    return total
