"""Back-pressure: while the broker is down the backlog waits in the durable log on disk, not in the gateway's
memory, and draining it afterwards reads the log in bounded batches. Memory is measured with tracemalloc (Python
allocations of this process); nothing here is timed."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from gateway.localservers import free_port
from gateway.sinks.config import MqttSinkConfig
from gateway.sinks.mqtt import MqttSink
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog

from .helpers import need, reading
from .servers import Mosquitto

T0 = 1_767_225_600_000
ROUND = 1_000  # polls appended per round (one commit each)


async def until(cond: Callable[[], object], timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_memory_stays_flat_while_the_broker_is_down_and_the_backlog_grows(tmp_path: Path) -> None:
    need("mosquitto")
    port = free_port()  # nothing listens here until the broker starts at the end
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig(durability="normal"))
    await log.open(["broker"])
    committer = asyncio.create_task(log.run())
    cfg = MqttSinkConfig(type="mqtt", name="broker", host="127.0.0.1", port=port, health_interval_s=0,
                         reconnect_min_s=0.05, reconnect_max_s=0.2)  # type: ignore[arg-type]
    sink = MqttSink(cfg, "test-site", log)
    task = asyncio.create_task(sink.run())
    broker: Mosquitto | None = None
    tracemalloc.start()
    try:
        n = 0

        async def one_round() -> None:
            nonlocal n
            for _ in range(ROUND):
                log.append(reading(f"d{n % 10}", T0 + n * 100))
                n += 1
            await log.flush()

        for _ in range(3):  # warm up: schemas, sequence numbers, the in-memory tail fill up
            await one_round()
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(12):  # the backlog grows five-fold
            await one_round()
        grown, _ = tracemalloc.get_traced_memory()
        assert sink.consumer.acked == 0 and log.depth(sink.consumer) == n == 15 * ROUND
        # 12,000 more readings held in memory would take well over 10 MB (a reading object is ~1 KB)
        assert grown - base < 1_000_000, f"memory grew by {(grown - base) / 1e6:.1f} MB with the backlog"

        broker = Mosquitto(tmp_path / "mosquitto", port)
        broker.start()
        tracemalloc.reset_peak()
        await until(lambda: sink.consumer.acked == log.committed_id, what="the backlog to drain")
        _, peak = tracemalloc.get_traced_memory()
        # the drain holds a batch and the in-flight window, not the backlog
        assert peak - grown < 15_000_000, f"draining took {(peak - grown) / 1e6:.1f} MB at its peak"
        assert sink.consumer.delivered == n
    finally:
        tracemalloc.stop()
        log.begin_close()
        await asyncio.wait_for(task, 30)
        committer.cancel()
        await log.close()
        if broker is not None:
            broker.stop()


async def test_the_in_memory_tail_is_bounded_by_values_not_only_by_readings(tmp_path: Path) -> None:
    """Consumers that keep up read committed records from memory; with wide devices (50 channels a poll) that tail
    must not grow to thousands of readings (it was 2,560 readings: ~15 MB at 50 channels)."""
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig(durability="normal"))
    await log.open(["broker"])
    channels = {f"r{i}": float(i) for i in range(50)}
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for n in range(3000):
            log.append(reading(f"d{n % 20}", T0 + n * 5, dict(channels)))
            if n % 100 == 99:
                await log.flush()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await log.close()
    assert held - base < 6_000_000, f"the log holds {(held - base) / 1e6:.1f} MB of committed readings in memory"
