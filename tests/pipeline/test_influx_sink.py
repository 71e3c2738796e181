"""The InfluxDB sink against real servers: InfluxDB 1.6 through the v1 /write API, VictoriaMetrics through the v2
/api/v2/write API (httpx, like v1). Readings are built by hand and committed to a real durable log."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.pipeline.consumers import build_consumers
from gateway.sinks.config import InfluxSinkConfig
from gateway.sinks.influx import InfluxSink
from gateway.site.model import Site
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog

from .helpers import reading
from .servers import InfluxDB, VictoriaMetrics

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


async def until(cond: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def v1_sink(db: InfluxDB, log: DurableLog, name: str = "tsdb", **kw: Any) -> InfluxSink:
    cfg = InfluxSinkConfig(type="influx", name=name, url=db.url, database="plume", linger_ms=0, retry_min_s=0.05,
                           retry_max_s=0.2, **kw)
    return InfluxSink(cfg, "test-site", log)


async def deliver(sink: InfluxSink, log: DurableLog) -> None:
    """Run the sink until it has confirmed everything committed, then stop it the way the app does."""
    await log.flush()
    task = asyncio.create_task(sink.run())
    await until(lambda: sink.consumer.acked >= log.committed_id or task.done(), what="delivery")
    log.begin_close()
    await asyncio.wait_for(task, 10)


async def test_points_follow_the_documented_schema(tmp_path: Path, influxdb: InfluxDB) -> None:
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["tsdb"])
    log.append(DeviceReading("test-site", "dust-1", "dust", T0, {
        "pm10": ChannelValue(41.5, "ug/m3", Flag.N),
        "tsp": ChannelValue(None, "ug/m3", Flag.B, "timeout"),
        "heater_on": ChannelValue(True, "", Flag.N),  # type: ignore[arg-type]  # a bool from a coil
        "count": ChannelValue(7, "", Flag.C),  # type: ignore[arg-type]  # an int
        "serial": ChannelValue('AB "12"', "", Flag.N),
        "bad": ChannelValue(float("nan"), "mg/m3", Flag.D),
    }))
    log.append(reading("stack 1", T0 + 1, {"so2": 35.25}, kind="cems"))  # a space in a tag value is escaped
    await deliver(v1_sink(influxdb, log), log)
    await log.close()

    dust = influxdb.rows("dust")
    assert dust == [{
        "time": T0, "site": "test-site", "device": "dust-1",
        "pm10": 41.5, "pm10_flag": "N", "tsp_flag": "B", "heater_on": 1, "heater_on_flag": "N",
        "count": 7, "count_flag": "C", "serial": 'AB "12"', "serial_flag": "N", "bad_flag": "D",
    }], "no value (None, NaN) means no field; the flag field says why"
    keys = influxdb.query('SHOW FIELD KEYS FROM "dust"')[0]["values"]
    assert dict(keys) == {"pm10": "float", "pm10_flag": "string", "tsp_flag": "string", "heater_on": "float",
                          "heater_on_flag": "string", "count": "float", "count_flag": "string",
                          "serial": "string", "serial_flag": "string", "bad_flag": "string"}
    assert influxdb.rows("cems") == [{"time": T0 + 1, "site": "test-site", "device": "stack 1", "so2": 35.25,
                                      "so2_flag": "N"}]


async def test_sending_the_same_readings_again_overwrites_instead_of_doubling(tmp_path: Path,
                                                                              influxdb: InfluxDB) -> None:
    path = tmp_path / "log.sqlite"
    log = DurableLog(path, StoreConfig())
    await log.open(["first"])
    for i in range(200):
        log.append(reading(f"d{i % 4}", T0 + i * 250))
    await deliver(v1_sink(influxdb, log, "first"), log)
    await log.close()
    assert influxdb.count("dust", "pm10") == 200

    log = DurableLog(path, StoreConfig())
    await log.open(["first", "again"])  # a new sink replays the whole log: what a crash before an ack does
    await deliver(v1_sink(influxdb, log, "again"), log)
    await log.close()
    assert influxdb.count("dust", "pm10") == 200
    rows = influxdb.rows("dust", where="device='d1'")
    assert [r["pm10"] for r in rows] == [float((T0 + i * 250) % 997) for i in range(1, 200, 4)]


async def test_a_refused_point_is_isolated_recorded_and_skipped(tmp_path: Path, influxdb: InfluxDB) -> None:
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["tsdb"])
    log.append(reading("d1", T0))  # pm10 becomes a float field
    await deliver(v1_sink(influxdb, log), log)
    await log.close()

    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["tsdb"])
    for i in range(1, 41):
        log.append(reading("d1", T0 + i * 1000))
    bad = log.append(reading("d1", T0 + 20_500, {"pm10": "not a number"}))  # field type conflict: HTTP 400
    for i in range(41, 60):
        log.append(reading("d1", T0 + i * 1000))
    sink = v1_sink(influxdb, log)
    await deliver(sink, log)
    assert sink.consumer.acked == log.committed_id, "the queue moved past the bad point"
    assert sink.consumer.rejected == 1
    rejected = await log.rejected("tsdb")
    await log.close()

    assert [(r[1], r[2]) for r in rejected] == [(bad.id, T0 + 20_500)]
    assert "field type conflict" in rejected[0][4] and rejected[0][3].startswith("dust,site=test-site,device=d1 ")
    times = [r["time"] for r in influxdb.rows("dust")]
    assert times == [T0 + i * 1000 for i in range(60)], "every good point is stored"
    assert sink.writes < 30, "bisection, not one request per point"


async def test_database_down_for_a_while_loses_nothing(tmp_path: Path, influxdb: InfluxDB) -> None:
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig(commit_interval_ms=50))
    await log.open(["tsdb"])
    committer = asyncio.create_task(log.run())
    sink = v1_sink(influxdb, log)
    task = asyncio.create_task(sink.run())
    try:
        log.append(reading("d1", T0))
        await until(lambda: sink.consumer.acked == 1, what="the first point")
        influxdb.stop()
        for i in range(1, 101):
            log.append(reading(f"d{i % 3}", T0 + i * 100))
        await until(lambda: sink.status.failures >= 2, what="failed writes while the database is down")
        assert sink.consumer.acked == 1
        influxdb.start()
        await until(lambda: sink.consumer.acked == 101, what="the backlog to drain")
    finally:
        log.begin_close()
        await asyncio.wait_for(task, 10)
        committer.cancel()
        await log.close()
    assert [r["time"] for r in influxdb.rows("dust")] == [T0 + i * 100 for i in range(101)]


async def test_v2_write_api_against_victoria_metrics(tmp_path: Path, victoria: VictoriaMetrics,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # the gateway needs no InfluxDB client library for v2: the body is our line protocol, httpx posts it
    for lib in ("influxdb_client", "aiohttp", "reactivex"):
        monkeypatch.setitem(sys.modules, lib, None)  # importing it now raises ImportError
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["vm"])
    now = int(time.time() * 1000) - 60_000
    for i in range(30):
        log.append(reading(f"dust-{i % 3}", now + i * 1000))
    cfg = InfluxSinkConfig(type="influx", name="vm", api="v2", url=victoria.url, org="plume", bucket="plume",
                           token="t0ken-secret", linger_ms=0)  # type: ignore[arg-type]
    sink = InfluxSink(cfg, "test-site", log, secret="t0ken-secret")
    await deliver(sink, log)
    await log.close()
    assert sink.consumer.delivered == 30

    def series() -> list[dict[str, Any]]:
        return victoria.export('{__name__="dust_pm10"}')

    deadline = time.monotonic() + 20
    while sum(len(s["values"]) for s in series()) < 30 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # VictoriaMetrics makes new series searchable within about a second
    got = {s["metric"]["device"]: list(zip(s["timestamps"], s["values"], strict=True)) for s in series()}
    assert {s["metric"]["site"] for s in series()} == {"test-site"}
    assert got == {
        f"dust-{d}": [(now + i * 1000, float((now + i * 1000) % 997)) for i in range(d, 30, 3)] for d in range(3)
    }


def test_a_v2_site_builds_its_sink_without_an_influxdb_client_library(make_site: Callable[..., Site],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "influxdb_client", None)
    site = make_site("""
        site: {{id: s}}
        store: {{dir: '{tmp}/log'}}
        sinks:
          - {{type: influx, name: cloud, api: v2, url: 'http://127.0.0.1:1', org: o, bucket: b, token: t}}
    """)
    assert len(build_consumers(site)) == 1
