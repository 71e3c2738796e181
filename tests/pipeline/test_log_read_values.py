"""`DurableLog.read(..., max_values=N)`: a batch a sink takes from the log is bounded by the channel values it
carries, not only by records, so a wide device (100 registers) or a sink that lingers for a fuller batch does not
hold hundreds of thousands of values in memory. Nothing here is timed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog
from gateway.store.records import value_count

from .helpers import reading

T0 = 1_767_225_600_000


def wide(n: int) -> dict[str, float | str | None]:
    return {f"r{i}": float(n + i) for i in range(100)}


async def filled(tmp: Path, polls: int, tail_values: int = 1_000_000) -> DurableLog:
    log = DurableLog(tmp / "log.sqlite", StoreConfig(durability="normal"), tail_values=tail_values)
    await log.open(["sink"])
    for n in range(polls):
        log.append(reading(f"d{n % 20}", T0 + n * 50, wide(n)))
    await log.flush()
    return log


async def test_a_read_from_the_tail_is_bounded_by_values(tmp_path: Path) -> None:
    log = await filled(tmp_path, 300)
    try:
        got = await log.read(0, 5000, max_values=10_000)
        assert [r.id for r in got] == list(range(1, 101))  # 100 polls of 100 values
        assert value_count(got) == 10_000
        assert len(await log.read(0, 5000)) == 300  # no bound: as before
        one = await log.read(0, 5000, max_values=10)  # at least one record, however wide
        assert [r.id for r in one] == [1]
    finally:
        await log.close()


async def test_a_read_from_the_database_is_bounded_by_values(tmp_path: Path) -> None:
    log = await filled(tmp_path, 300, tail_values=0)  # nothing in memory: every read decodes rows
    try:
        got = await log.read(50, 5000, max_values=2_500)
        assert [r.id for r in got] == list(range(51, 76))
        assert value_count(got) == 2_500
    finally:
        await log.close()


async def test_lingering_stops_at_the_value_bound(tmp_path: Path) -> None:
    """A sink waiting for a fuller batch (linger) gets it as soon as the bound is reached, not after the linger."""
    log = await filled(tmp_path, 0)
    try:
        async def append_later() -> None:
            for n in range(30):
                log.append(reading(f"d{n % 20}", T0 + n * 50, wide(n)))
                await log.flush()

        task = asyncio.create_task(append_later())
        got = await log.read(0, 5000, linger_s=3600, max_values=2_000)  # an hour's linger: the bound ends it
        await task
        assert 1 <= len(got) <= 20 and value_count(got) <= 2_000
    finally:
        await log.close()
