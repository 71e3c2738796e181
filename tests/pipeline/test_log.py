"""The durable log on its own (real SQLite files): commit before visibility, cursors, sequence numbers, the disk
cap, retention, the single-process lock and the on-disk encoding."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.store.codec import Schema, decode, encode, schema_key
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog, LogLockedError

from .helpers import reading

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


async def open_log(path: Path, consumers: list[str], **cfg: object) -> DurableLog:
    log = DurableLog(path, StoreConfig(**cfg))  # type: ignore[arg-type]
    await log.open(consumers)
    return log


async def test_read_waits_until_records_are_committed(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "log.sqlite", ["a"])
    try:
        log.append(reading("d1", T0))
        log.append(reading("d1", T0 + 1000))
        pending = asyncio.create_task(log.read(0, 10))
        done, _ = await asyncio.wait({pending}, timeout=0.2)
        assert not done, "a sink must not see a reading before it is committed"
        await log.flush()
        records = await asyncio.wait_for(pending, 5)
        assert [r.id for r in records] == [1, 2]
        assert [r.seq for r in records] == [1, 2]
    finally:
        await log.close()


async def test_reopen_resumes_from_the_persisted_cursor_and_sequence(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = await open_log(path, ["a", "b"])
    for i in range(10):
        log.append(reading(f"d{i % 2}", T0 + i * 1000))
    await log.flush()
    log.ack(log.consumer("a"), 4)
    await log.close()

    log = await open_log(path, ["a", "b"])
    try:
        a, b = log.consumer("a"), log.consumer("b")
        assert (a.acked, b.acked) == (4, 0)
        rest = await log.read(a.acked, 100)
        assert [r.id for r in rest] == list(range(5, 11))
        # the database was read back, not a cache: values and flags survived the round trip
        assert rest[0].reading.values["pm10"].value == float((T0 + 4000) % 997)
        rec = log.append(reading("d0", T0 + 99_000))
        assert rec.id == 11
        assert rec.seq == 6, "the per-device sequence continues across restarts"
    finally:
        await log.close()


async def test_ids_are_never_reused_after_every_row_was_deleted(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = await open_log(path, ["a"], max_disk_mb=0.001)
    for i in range(50):
        log.append(reading("d1", T0 + i))
    await log.flush()
    await log.maintain()  # a 1 kB cap: every row goes
    assert log.first_id == 51
    await log.close()

    log = await open_log(path, ["a"])
    try:
        assert log.consumer("a").acked == 50
        assert log.append(reading("d1", T0 + 100)).id == 51
        await log.flush()
        assert [r.id for r in await log.read(log.consumer("a").acked, 10)] == [51]
    finally:
        await log.close()


async def test_disk_cap_drops_the_oldest_and_counts_what_each_sink_lost(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = await open_log(path, ["live", "dead"], max_disk_mb=0.2)
    n = 6000
    for i in range(n):
        log.append(reading(f"d{i % 5}", T0 + i * 200))
    await log.flush()
    live, dead = log.consumer("live"), log.consumer("dead")
    log.ack(live, n)  # the live sink delivered everything; the dead one nothing
    await log.maintain()
    assert log.stats().used_bytes <= 0.2e6
    first = log.first_id
    assert first > 1, "the cap must have dropped something"
    assert live.dropped == 0
    assert dead.dropped == first - 1, "every dropped reading was undelivered for the dead sink"
    assert dead.acked == first - 1
    remaining = await log.read(dead.acked, n)
    assert remaining[0].id == first and remaining[-1].id == n, "the newest readings are kept, the oldest dropped"
    await log.close()

    log = await open_log(path, ["live", "dead"], max_disk_mb=0.2)
    try:
        assert log.consumer("dead").dropped == first - 1, "the drop count survives a restart"
    finally:
        await log.close()


async def test_retention_deletes_only_what_every_sink_delivered(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "log.sqlite", ["a", "b"], retention_days=1)
    old = int(time.time() * 1000) - 3 * 86_400_000
    for i in range(10):
        log.append(reading("d1", old + i * 1000))
    for i in range(5):
        log.append(reading("d1", int(time.time() * 1000) + i))
    await log.flush()
    try:
        log.ack(log.consumer("a"), 15)
        log.ack(log.consumer("b"), 6)  # b has not delivered old readings 7..10 yet
        await log.maintain()
        assert log.first_id == 7, "old readings that b still needs must stay"
        log.ack(log.consumer("b"), 15)
        await log.maintain()
        assert log.first_id == 11, "delivered old readings go; young ones stay"
        assert log.consumer("b").dropped == 0
    finally:
        await log.close()


async def test_a_new_sink_starts_with_the_oldest_reading_held(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = await open_log(path, ["a"])
    for i in range(3):
        log.append(reading("d1", T0 + i))
    await log.close()
    log = await open_log(path, ["a", "new"])
    try:
        assert [r.id for r in await log.read(log.consumer("new").acked, 10)] == [1, 2, 3]
    finally:
        await log.close()


async def test_a_second_gateway_cannot_open_the_same_log(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = await open_log(path, [])
    try:
        with pytest.raises(LogLockedError, match="in use by another plume process"):
            await open_log(path, [])
    finally:
        await log.close()


async def test_rejected_records_are_kept_with_the_servers_message(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "log.sqlite", ["a"])
    try:
        rec = log.append(reading("d1", T0))
        await log.flush()
        log.reject(log.consumer("a"), rec, "dust,site=s pm10=oops", "HTTP 400: bad")
        await log.flush()
        assert await log.rejected("a") == [("a", 1, T0, "dust,site=s pm10=oops", "HTTP 400: bad")]
        assert log.consumer("a").rejected == 1
    finally:
        await log.close()


async def test_commit_listeners_see_each_committed_batch(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "log.sqlite", [])
    seen: list[int] = []
    log.on_commit(lambda recs: seen.extend(r.id for r in recs))
    try:
        log.append(reading("d1", T0))
        assert seen == []
        await log.flush()
        assert seen == [1]
    finally:
        await log.close()


values = st.one_of(st.none(), st.floats(allow_nan=False), st.text(max_size=20), st.integers(-(2**53), 2**53))
channels = st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
                           st.tuples(values, st.sampled_from(list(Flag)), st.text(max_size=8), st.text(max_size=12)),
                           max_size=12)


@settings(max_examples=200, deadline=None)
@given(channels, st.booleans(), st.text(max_size=30), st.integers(0, 2**62))
def test_codec_round_trip(chs: dict[str, tuple[object, Flag, str, str]], ok: bool, error: str, ts: int) -> None:
    cvs = {ch: ChannelValue(v, unit, flag, note) for ch, (v, flag, unit, note) in chs.items()}  # type: ignore[arg-type]
    r = DeviceReading("site", "dev", "dust", ts, cvs, ok, error)
    schema = Schema(7, *schema_key(r))
    row = encode(1, 5, schema.id, r)
    assert row[:4] == (1, ts, 5, 7)
    rts, flags, vals, extra = row[1], row[4], row[5], row[6]
    back = decode(schema, rts, flags, vals, extra)
    assert back == r


async def test_memory_holds_only_what_some_sink_has_not_acknowledged(tmp_path: Path) -> None:
    log = await open_log(tmp_path / "log.sqlite", ["a", "b"])
    try:
        for i in range(100):
            log.append(reading(f"d{i % 3}", T0 + i * 100))
        await log.flush()
        assert log.stats().tail == 100
        log.ack(log.consumer("a"), 100)
        log.ack(log.consumer("b"), 40)
        log.append(reading("d0", T0 + 100_000))
        await log.flush()
        assert log.stats().tail == 61, "records every sink acknowledged are not kept in memory"
        behind = await log.read(40, 100)
        assert [r.id for r in behind] == list(range(41, 102))
        again = await log.read(10, 5)  # a reader further back gets the same records from the database
        assert [(r.id, r.reading.values) for r in again] == [  # type: ignore[attr-defined]
            (i, reading(f"d{(i - 1) % 3}", T0 + (i - 1) * 100).values) for i in range(11, 16)]
        log.ack(log.consumer("a"), 101)
        log.ack(log.consumer("b"), 101)
        log.append(reading("d1", T0 + 100_100))
        await log.flush()
        assert log.stats().tail == 1
    finally:
        await log.close()
