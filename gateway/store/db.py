"""The SQLite side of the durable log. Synchronous: every method runs on the log's single worker thread.

Invariants
- `readings.id` only grows (AUTOINCREMENT): an id is never reused, even after every row was deleted, so a cursor
  can never point past a row that is yet to come.
- Rows are deleted only from the front (oldest ids first): ids in the table are contiguous.
- A cursor (`cursors.acked`) means: every row with id <= acked was confirmed by that consumer's target.
- Rows, schemas, device sequence numbers and cursors are written in one transaction, so a crash leaves them
  consistent with each other.

On-disk format: see `gateway.store.codec` (one row per device poll; the device layout is a shared schema row).
Records other than readings (aggregates, alarm events, actuations, commands) are rows of the same table with
`kind` > 0, so they share the one id sequence (log order); a partial index covers only them, so readings pay
nothing for it. Version 1 files (readings only) are migrated in place at open (one ALTER TABLE, no rewrite).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from gateway.store.codec import KindRow, Row, Schema

SCHEMA_VERSION = 2
SQLITE_FULL = 13
WAL_PAGES_MAX = 1000  # SQLite's default auto-checkpoint (4 MB of 4 KB pages)
WAL_LIMIT_MAX = 16_777_216  # the WAL is truncated back to this after checkpoints

_DDL = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schemas(id INTEGER PRIMARY KEY, layout TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS readings(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    schema INTEGER NOT NULL,
    flags TEXT NOT NULL,
    vals TEXT NOT NULL,
    extra TEXT,
    kind INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS devices(name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors(
    name TEXT PRIMARY KEY,
    acked INTEGER NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rejected(
    id INTEGER PRIMARY KEY,
    consumer TEXT NOT NULL,
    record INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    error TEXT NOT NULL
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS records_by_kind_ts ON readings(kind, ts) WHERE kind != 0;
CREATE INDEX IF NOT EXISTS records_by_kind_id ON readings(kind) WHERE kind != 0;
"""
_COLUMNS = "id, ts, seq, schema, flags, vals, extra, kind"


@dataclass(slots=True)
class CursorRow:
    name: str
    acked: int
    dropped: int = 0
    rejected: int = 0


@dataclass(slots=True)
class RejectRow:
    consumer: str
    record: int
    ts: int
    at: int
    payload: str
    error: str


@dataclass(slots=True)
class OpenState:
    """What the log needs in memory after opening a file."""

    first_id: int  # oldest id present (last_id + 1 when empty)
    last_id: int  # highest id ever assigned
    seqs: dict[str, int]
    schemas: dict[int, Schema]
    cursors: dict[str, CursorRow]


@dataclass(slots=True)
class Batch:
    """One transaction's worth of changes."""

    rows: list[Row] = field(default_factory=list)
    records: list[KindRow] = field(default_factory=list)  # rows of other kinds (aggregates, events, ...)
    schemas: list[Schema] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)
    cursors: list[CursorRow] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.rows or self.records or self.schemas or self.cursors or self.rejects)


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's "database or disk is full" (SQLITE_FULL), or ENOSPC from the OS."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is still open. SQLite has already rolled back by itself after some errors (a full disk):
    a second ROLLBACK would replace the real error with "cannot rollback - no transaction is active"."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


class LogDb:
    """One SQLite connection in WAL mode.

    `wal_budget` (bytes): the most the WAL may take between checkpoints (a quarter of the free space the log keeps
    on its file system), so a small disk is not filled by the WAL before the checkpoint moves it into the file."""

    def __init__(self, path: Path, durability: str = "full", wal_budget: int = WAL_LIMIT_MAX):
        self.path = path
        self.durability = durability
        self.wal_budget = wal_budget
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "log database is not open"
        return self._conn

    def open(self) -> OpenState:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
        # truncate the WAL back to at most 16 MB after checkpoints (less on a small disk)
        conn.execute(f"PRAGMA journal_size_limit={min(WAL_LIMIT_MAX, self.wal_budget)}")
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        conn.execute(f"PRAGMA wal_autocheckpoint={max(16, min(WAL_PAGES_MAX, self.wal_budget // page))}")
        # a 512 KB page cache: the log appends at the end and deletes at the front, sinks read what they missed
        # once (and from the in-memory tail mostly); a larger cache only holds pages nobody reads again - 4 MB of
        # them filled up within minutes at 10,000 values/s (RSS matters on a Pi), with no CPU saved
        conn.execute("PRAGMA cache_size=-512")
        conn.executescript(_DDL)
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if version is None:
            conn.execute("INSERT INTO meta VALUES('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(version[0]) == 1:  # readings only: add the kind column (a constant default: no table rewrite)
            cols = [r[1] for r in conn.execute("PRAGMA table_info(readings)")]
            if "kind" not in cols:
                conn.execute("ALTER TABLE readings ADD COLUMN kind INTEGER NOT NULL DEFAULT 0")
            conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        elif int(version[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: log format {version[0]} is not supported (expected {SCHEMA_VERSION})")
        conn.executescript(_INDEXES)
        seq_row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='readings'").fetchone()
        max_row = conn.execute("SELECT min(id), max(id) FROM readings").fetchone()
        last_id = max(seq_row[0] if seq_row else 0, max_row[1] or 0)
        first_id = max_row[0] if max_row[0] is not None else last_id + 1
        seqs = dict(conn.execute("SELECT name, seq FROM devices").fetchall())
        schemas = {sid: Schema.from_json(sid, text) for sid, text in conn.execute("SELECT id, layout FROM schemas")}
        cursors = {
            name: CursorRow(name, acked, dropped, rejected)
            for name, acked, dropped, rejected in conn.execute("SELECT name, acked, dropped, rejected FROM cursors")
        }
        return OpenState(first_id, last_id, seqs, schemas, cursors)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None

    def commit(self, batch: Batch) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if batch.schemas:
                conn.executemany(
                    "INSERT INTO schemas(id, layout) VALUES(?, ?)", [(s.id, s.to_json()) for s in batch.schemas]
                )
            if batch.rows:
                conn.executemany("INSERT INTO readings(id, ts, seq, schema, flags, vals, extra) "
                                 "VALUES(?, ?, ?, ?, ?, ?, ?)", batch.rows)
            if batch.records:
                conn.executemany(f"INSERT INTO readings({_COLUMNS}) VALUES(?, ?, ?, ?, ?, ?, ?, ?)", batch.records)
            if batch.seqs:
                conn.executemany(
                    "INSERT INTO devices(name, seq) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET seq=excluded.seq",
                    list(batch.seqs.items()),
                )
            if batch.cursors:
                conn.executemany(
                    "INSERT INTO cursors(name, acked, dropped, rejected) VALUES(?, ?, ?, ?) ON CONFLICT(name) "
                    "DO UPDATE SET acked=excluded.acked, dropped=excluded.dropped, rejected=excluded.rejected",
                    [(c.name, c.acked, c.dropped, c.rejected) for c in batch.cursors],
                )
            if batch.rejects:
                conn.executemany(
                    "INSERT INTO rejected(consumer, record, ts, at, payload, error) VALUES(?, ?, ?, ?, ?, ?)",
                    [(r.consumer, r.record, r.ts, r.at, r.payload, r.error) for r in batch.rejects],
                )
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def read(self, after: int, limit: int) -> list[tuple[int, int, int, int, str, str, str | None]]:
        """Readings only (kind 0), for tools that know nothing else; ids of other records are skipped."""
        return self.conn.execute(
            "SELECT id, ts, seq, schema, flags, vals, extra FROM readings WHERE id > ? AND kind = 0 ORDER BY id "
            "LIMIT ?",
            (after, limit),
        ).fetchall()

    def read_records(self, after: int, limit: int) -> list[KindRow]:
        """Every record with id > after, oldest first."""
        return self.conn.execute(
            f"SELECT {_COLUMNS} FROM readings WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        ).fetchall()

    def read_kinds(self, after: int, kinds: tuple[int, ...], limit: int) -> list[KindRow]:
        """Records of the given kinds (not readings) with id > after, oldest first (the partial index)."""
        marks = ",".join("?" * len(kinds))
        return self.conn.execute(
            f"SELECT {_COLUMNS} FROM readings WHERE kind != 0 AND kind IN ({marks}) AND id > ? ORDER BY id LIMIT ?",
            (*kinds, after, limit),
        ).fetchall()

    def kind_between(self, kind: int, ts_from: int, ts_to: int | None = None) -> list[KindRow]:
        """Records of one kind (not readings) with ts_from <= ts (<= ts_to), in log order."""
        sql = f"SELECT {_COLUMNS} FROM readings WHERE kind != 0 AND kind = ? AND ts >= ?"
        args: tuple[int, ...] = (kind, ts_from)
        if ts_to is not None:
            sql += " AND ts <= ?"
            args += (ts_to,)
        return self.conn.execute(sql + " ORDER BY id", args).fetchall()

    def latest_of_kind(self, kind: int) -> KindRow | None:
        """The record of `kind` with the highest ts (not readings)."""
        return self.conn.execute(
            f"SELECT {_COLUMNS} FROM readings WHERE kind != 0 AND kind = ? ORDER BY ts DESC, id DESC LIMIT 1",
            (kind,),
        ).fetchone()

    def first_reading_at(self, ts: int) -> int | None:
        """The id of the first reading with ts >= `ts`, found by bisection over ids (reading times follow log
        order within a poll's duration; callers ask a little earlier than they need). None: there is none."""
        conn = self.conn
        lo_hi = conn.execute("SELECT min(id), max(id) FROM readings WHERE kind = 0").fetchone()
        if lo_hi[0] is None:
            return None
        lo, hi = int(lo_hi[0]), int(lo_hi[1])
        last = conn.execute("SELECT ts FROM readings WHERE id = ?", (hi,)).fetchone()
        if last is None or last[0] < ts:
            return None
        def first_from(x: int) -> tuple[int, int]:
            return conn.execute("SELECT id, ts FROM readings WHERE id >= ? AND kind = 0 ORDER BY id LIMIT 1",
                                (x,)).fetchone()

        while lo < hi:  # smallest x whose first reading at or after it is at or after ts
            mid = (lo + hi) // 2
            if first_from(mid)[1] >= ts:
                hi = mid
            else:
                lo = mid + 1
        return int(first_from(lo)[0])

    def first_ts(self) -> int | None:
        row = self.conn.execute("SELECT ts FROM readings WHERE kind = 0 ORDER BY id LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def last_reading_ts(self) -> int | None:
        row = self.conn.execute("SELECT ts FROM readings WHERE kind = 0 ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def ts_of(self, record_id: int) -> int | None:
        row = self.conn.execute("SELECT ts FROM readings WHERE id >= ? ORDER BY id LIMIT 1", (record_id,)).fetchone()
        return None if row is None else int(row[0])

    def used_bytes(self) -> int:
        """Bytes of the database that hold data (freed pages are reused, so the file itself does not shrink)."""
        conn = self.conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def free_page_bytes(self) -> int:
        """Bytes of freed pages in the file, reused by the next inserts before the file grows."""
        conn = self.conn
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int(free * size)

    def fs_free_bytes(self) -> int:
        """Free space on the log's file system (for an unprivileged process)."""
        st = os.statvfs(self.path.parent)
        return int(st.f_bavail * st.f_frsize)

    def checkpoint(self) -> bool:
        """Move the WAL into the database file and truncate it (gives its space back). False if that failed."""
        try:
            busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            return False
        return not busy

    def delete_through(self, last_id: int, cursors: list[CursorRow]) -> int:
        """Drop every row up to `last_id` and store the cursors that moved because of it, in one transaction."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute("DELETE FROM readings WHERE id <= ?", (last_id,)).rowcount
            conn.executemany(
                "INSERT INTO cursors(name, acked, dropped, rejected) VALUES(?, ?, ?, ?) ON CONFLICT(name) "
                "DO UPDATE SET acked=excluded.acked, dropped=excluded.dropped, rejected=excluded.rejected",
                [(c.name, c.acked, c.dropped, c.rejected) for c in cursors],
            )
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return int(n)

    def expire(self, cutoff_ts: int, through_id: int, chunk: int = 5000) -> int:
        """Retention: delete delivered rows (id <= through_id) older than cutoff_ts, oldest first, in chunks."""
        conn = self.conn
        total = 0
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT max(id) FROM (SELECT id, ts FROM readings WHERE id <= ? ORDER BY id LIMIT ?) "
                    "WHERE ts < ?",
                    (through_id, chunk, cutoff_ts),
                ).fetchone()
                upto = row[0]
                n = 0
                if upto is not None:
                    # only the contiguous old prefix: a younger row stops the sweep, so ids stay contiguous
                    first_young = conn.execute(
                        "SELECT min(id) FROM readings WHERE id <= ? AND ts >= ?", (upto, cutoff_ts)
                    ).fetchone()[0]
                    if first_young is not None:
                        upto = first_young - 1
                    n = conn.execute("DELETE FROM readings WHERE id <= ?", (upto,)).rowcount
                conn.execute("DELETE FROM rejected WHERE at < ?", (cutoff_ts,))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            total += n
            if n < chunk:
                return total

    def first_id(self) -> int | None:
        row = self.conn.execute("SELECT min(id) FROM readings").fetchone()
        return None if row[0] is None else int(row[0])

    def delete_cursors(self, names: list[str]) -> None:
        self.conn.executemany("DELETE FROM cursors WHERE name = ?", [(n,) for n in names])

    def rejected_rows(self, consumer: str | None = None) -> list[tuple[str, int, int, str, str]]:
        sql = "SELECT consumer, record, ts, payload, error FROM rejected"
        args: tuple[str, ...] = ()
        if consumer is not None:
            sql += " WHERE consumer = ?"
            args = (consumer,)
        return self.conn.execute(sql + " ORDER BY id", args).fetchall()
