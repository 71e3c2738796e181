"""Recovery after an outage: a real Mosquitto / InfluxDB stopped until the sink's back-off has grown, then started
again on the same port. The sink must notice the return within its probe interval (1 s), not after the back-off
delay it was in: asserted on the wait's schedule (planned delay, probes made, ended early) rather than on wall
time. And an endpoint that refuses every point (HTTP 400) is reported as a standing problem, not counted as
delivered.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.health import HealthMonitor
from gateway.sinks.config import InfluxSinkConfig, MqttSinkConfig
from gateway.sinks.influx import REFUSED_ALARM_AFTER, InfluxSink
from gateway.sinks.mqtt import MqttSink
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog

from .helpers import reading
from .servers import InfluxDB, Mosquitto

T0 = 1_767_225_600_000
LONG_WAIT_S = 4.0  # the back-off the sink is in when the server returns: several probe intervals


async def until(cond: Callable[[], object], timeout: float = 40.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_mqtt_reconnects_when_the_broker_returns_not_when_the_backoff_ends(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["broker"])
    cfg = MqttSinkConfig.model_validate({"type": "mqtt", "name": "broker", "host": "127.0.0.1",
                                         "port": mosquitto.port, "reconnect_min_s": 0.5, "reconnect_max_s": 60,
                                         "health_interval_s": 0})
    sink = MqttSink(cfg, "test-site", log)
    task = asyncio.create_task(sink.run())
    try:
        await until(lambda: sink.status.connected, what="the first connection")
        await asyncio.to_thread(mosquitto.stop)
        # the back-off doubles while the broker is away: wait for a wait of several seconds
        await until(lambda: sink.recovery.last is not None and sink.recovery.last.delay_s >= LONG_WAIT_S, 60,
                    "a back-off of several seconds")
        wait = sink.recovery.last
        assert wait is not None
        await asyncio.to_thread(mosquitto.start)
        await until(lambda: sink.status.reconnects >= 1, what="the reconnect")
        assert sink.recovery.last is wait, "reconnected from within the wait that was running"
        assert wait.woke_early, f"waited out the whole back-off of {wait.delay_s:.1f} s"
        assert wait.probes < wait.delay_s / sink.recovery.interval_s, wait
        log.append(reading("dust-1", T0))
        await log.flush()
        await until(lambda: sink.consumer.acked == 1, what="delivery after the reconnect")
    finally:
        log.begin_close()
        await asyncio.wait_for(task, 10)
        await log.close()


async def test_influx_writes_again_when_the_database_returns(tmp_path: Path, influxdb: InfluxDB) -> None:
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig(commit_interval_ms=50))
    await log.open(["tsdb"])
    cfg = InfluxSinkConfig.model_validate({"type": "influx", "name": "tsdb", "url": influxdb.url,
                                           "database": "plume", "linger_ms": 0, "retry_min_s": 0.5,
                                           "retry_max_s": 60, "health_interval_s": 0})
    sink = InfluxSink(cfg, "test-site", log)
    committer = asyncio.create_task(log.run())
    task = asyncio.create_task(sink.run())
    try:
        log.append(reading("dust-1", T0))
        await until(lambda: sink.consumer.acked == 1, what="the first write")
        await asyncio.to_thread(influxdb.stop)
        log.append(reading("dust-1", T0 + 1000))
        await until(lambda: sink.recovery.last is not None and sink.recovery.last.delay_s >= LONG_WAIT_S, 60,
                    "a back-off of several seconds")
        wait = sink.recovery.last
        assert wait is not None
        await asyncio.to_thread(influxdb.start)
        await until(lambda: sink.consumer.acked == 2, what="the write after the database returned")
        assert sink.recovery.last is wait and wait.woke_early, wait
        assert wait.probes < wait.delay_s / sink.recovery.interval_s, wait
    finally:
        log.begin_close()
        await asyncio.wait_for(task, 10)
        committer.cancel()
        await asyncio.gather(committer, return_exceptions=True)
        await log.close()


class Refuses(BaseHTTPRequestHandler):
    """Another service on the sink's URL: HTTP 400 to everything."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"error":"unknown request"}'
        self.send_response(400)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def refusing() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def test_a_sink_whose_points_are_all_refused_says_the_endpoint_is_wrong(tmp_path: Path,
                                                                              refusing: int) -> None:
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig(commit_interval_ms=50))
    await log.open(["tsdb"])
    cfg = InfluxSinkConfig.model_validate({"type": "influx", "name": "tsdb", "url": f"http://127.0.0.1:{refusing}",
                                           "database": "plume", "linger_ms": 0, "health_interval_s": 0})
    sink = InfluxSink(cfg, "test-site", log)
    committer = asyncio.create_task(log.run())
    task = asyncio.create_task(sink.run())
    n = REFUSED_ALARM_AFTER + 5
    try:
        for i in range(n):
            log.append(reading("dust-1", T0 + i * 1000))
        await until(lambda: sink.consumer.rejected == n, what="every point refused")
        snap = await HealthMonitor("test-site", log, [sink]).snapshot()
        tsdb = snap["sinks"]["tsdb"]
        assert tsdb["delivered"] == 0, "refused points are not delivered"
        assert tsdb["rejected"] == n
        assert "every point is refused" in tsdb["problem"] and "url" in tsdb["problem"], tsdb
    finally:
        log.begin_close()
        await asyncio.wait_for(task, 10)
        committer.cancel()
        await asyncio.gather(committer, return_exceptions=True)
        await log.close()


class Steady:
    """A source emitting a reading every 50 ms (a stand-in for acquisition: the test is about the sink)."""

    def __init__(self, site: Any, emit: Callable[[Any], None]):
        self.emit = emit

    async def run(self) -> None:
        i = 0
        while True:
            self.emit(reading("dust-1", int(time.time() * 1000), site="test-site"))
            i += 1
            await asyncio.sleep(0.05)

    def health(self) -> dict[str, Any]:
        return {}


async def test_the_refusing_endpoint_raises_the_sink_problem_alarm(refusing: int, make_site: Any) -> None:
    from gateway.pipeline.gateway import Gateway

    site = make_site("""
        site: {{id: test-site, timezone: Asia/Shanghai}}
        store: {{dir: "{tmp}/log", commit_interval_ms: 50}}
        windows: {{devices: []}}
        rule_packs: [{{pack: gateway-health, disable: [offline, bad-data]}}]
        sinks:
          - {{type: influx, name: tsdb, url: "http://127.0.0.1:{port}", database: plume, linger_ms: 0}}
    """, port=refusing)
    gw = Gateway(site, source=Steady)
    raised: list[Any] = []
    gw.on_alarm(lambda rec: raised.append(rec.payload.event))
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        await until(lambda: any(e.rule.endswith("sink-problem") for e in raised), 60, "the sink-problem alarm")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    ev = next(e for e in raised if e.rule.endswith("sink-problem"))
    assert ev.type.value == "raised" and ev.channel == "tsdb" and "every point is refused" in ev.note
