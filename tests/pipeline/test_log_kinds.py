"""Records other than readings in the durable log: aggregates, alarm events, actuations and commands share the one
id sequence, read back identically from the in-memory tail and from the file, and answer the queries the stages
need at a restart (latest aggregate, aggregates by window and start, records by kind since a time, the first
reading at a time). A version 1 file (readings only) is migrated in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.records import AlarmEntry, AlarmRecord
from gateway.core.model import Flag
from gateway.processing.records import AggregateRecord, aggregate_ts_range, select_aggregates
from gateway.processing.windows import ChannelAggregate, WindowAggregate
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog
from gateway.store.records import AGGREGATE, ALARM, COMMAND, READING, CommandRecord, ReadingRecord

from .helpers import log_records, reading

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000


def aggregate(device: str, window: str, start: int, length: int, avg: float, partial: bool = False) -> WindowAggregate:
    return WindowAggregate("test-site", device, "dust", window, start, start + length, 0, partial, {
        "pm10": ChannelAggregate("ug/m3", avg - 1, avg, avg + 1, 60, 59, Flag.N),
        "so2_rate": ChannelAggregate("kg/h", 1.0, 1.5, 2.0, 60, 10, Flag.C, cou=0.025, cou_unit="kg"),
    })


def event(kind: EventType, ts: int) -> AlarmEvent:
    return AlarmEvent(kind, "test-site", "pm10-1m", "d1", "pm10", "1m", T0, ts, 180.0, 150.0, "ug/m3",
                      message="PM10 over the limit")


async def aggregates(lg: DurableLog, window: str, start_from: int, start_to: int | None = None) -> list:
    """The windows starting in [start_from, start_to], as the uplinks' history and a restart ask for them."""
    return select_aggregates(await lg.records_of_kind(AGGREGATE, *aggregate_ts_range(start_from, start_to)), window,
                             start_from, start_to)


async def open_log(path: Path) -> DurableLog:
    lg = DurableLog(path, StoreConfig())
    await lg.open(["a"])
    return lg


async def test_records_of_every_kind_share_the_id_sequence_and_read_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    lg = await open_log(path)
    live = []
    lg.on_commit(live.extend)
    lg.append(reading("d1", T0))
    agg = aggregate("d1", "1m", T0, MIN, 42.5)
    lg.append_record(AGGREGATE, agg, agg.end, "test-site")
    alarm = AlarmEntry(event(EventType.RAISED, T0 + MIN), {"alarm_id": "x", "acked": False})
    lg.append_record(ALARM, alarm, T0 + MIN, "test-site")
    lg.append_record(COMMAND, {"type": "ack", "alarm_id": "x", "by": "li"}, T0 + 2 * MIN, "test-site")
    lg.append(reading("d1", T0 + 3 * MIN))
    await lg.flush()
    await lg.close()
    assert [(r.id, r.kind) for r in live] == [(1, READING), (2, AGGREGATE), (3, ALARM), (4, COMMAND), (5, READING)]
    assert [r.seq for r in live if isinstance(r, ReadingRecord)] == [1, 2], "only readings count a device's seq"
    assert [type(r) for r in live] == [ReadingRecord, AggregateRecord, AlarmRecord, CommandRecord, ReadingRecord]
    assert live[1].ts == agg.end and live[1].site == "test-site" and not hasattr(live[1], "reading")

    lg = await open_log(path)
    try:
        stored = await lg.read(0, 100)  # from the file this time
        assert [(r.id, r.kind) for r in stored] == [(r.id, r.kind) for r in live]
        assert stored[1].payload == agg
        assert stored[2].payload.event == alarm.event and stored[2].payload.active == alarm.active
        assert stored[3].payload["by"] == "li"
        assert stored[4].reading == live[4].reading
    finally:
        await lg.close()
    assert [rid for rid, _, _ in log_records(path)] == [1, 5], "tools reading the file see the readings only"


async def test_the_queries_of_a_restart(tmp_path: Path) -> None:
    lg = await open_log(tmp_path / "log.sqlite")
    try:
        for i in range(30):
            lg.append(reading("d1", T0 + i * 20_000))
            if i % 3 == 2:  # a minute closed
                start = T0 + (i // 3) * MIN
                a = aggregate("d1", "1m", start, MIN, float(i))
                lg.append_record(AGGREGATE, a, a.end, "test-site")
        five = aggregate("d1", "5m", T0, 5 * MIN, 7.0, partial=True)
        lg.append_record(AGGREGATE, five, five.end, "test-site")
        for k, ts in ((EventType.RAISED, T0 + 2 * MIN), (EventType.CLEARED, T0 + 8 * MIN)):
            lg.append_record(ALARM, AlarmEntry(event(k, ts)), ts, "test-site")
        await lg.flush()
        latest = await lg.latest_of_kind(AGGREGATE)
        assert latest is not None and latest.payload.end == T0 + 10 * MIN
        assert [a.start for a in await aggregates(lg, "1m", T0 + 8 * MIN)] == [T0 + 8 * MIN, T0 + 9 * MIN]
        assert [a.window for a in await aggregates(lg, "5m", T0, T0)] == ["5m"]
        assert (await aggregates(lg, "5m", T0, T0))[0].partial is True
        assert [r.payload.event.type for r in await lg.records_of_kind(ALARM, T0 + 5 * MIN)] == [EventType.CLEARED]
        batches = [b async for b in lg.readings_since(T0 + 500_000)]
        got = [r for b in batches for r in b]
        assert got[0].kind == READING and got[0].reading.ts == T0 + 500_000
        assert got[-1].kind == ALARM, "everything from there on, of every kind"
        assert await lg.reading_span() == (T0, T0 + 29 * 20_000)
        found, upto = await lg.read_kinds(0, (ALARM,))
        assert [r.payload.event.type for r in found] == [EventType.RAISED, EventType.CLEARED]
        assert upto == lg.committed_id
    finally:
        await lg.close()


async def test_a_version_1_log_is_migrated_and_keeps_its_readings(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    lg = await open_log(path)
    lg.append(reading("d1", T0))
    await lg.flush()
    await lg.close()
    conn = sqlite3.connect(path)  # make it a version 1 file: no kind column
    conn.executescript("DROP INDEX records_by_kind_ts; DROP INDEX records_by_kind_id; "
                       "ALTER TABLE readings DROP COLUMN kind; UPDATE meta SET value='1' WHERE key='schema_version';")
    conn.close()
    lg = await open_log(path)
    try:
        lg.append_record(COMMAND, {"type": "maintenance", "on": True}, T0 + 1, "test-site")
        await lg.flush()
        assert [(r.id, r.kind) for r in await lg.read(0, 10)] == [(1, READING), (2, COMMAND)]
    finally:
        await lg.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
    conn.close()
