"""The regulatory stage inside the Gateway, with real Mosquitto and InfluxDB: window aggregates and alarm events are
written to the durable log and reach MQTT (agg topics, alarm events, retained active state) and InfluxDB (the exact
schema the dashboards use); an acknowledgement published over MQTT becomes an `acknowledged` event; a second
gateway on the same log neither repeats nor loses an alarm.

The source plays ten minutes in fast motion, so windows close as fast as readings arrive."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest

from gateway.core.model import ChannelValue, DeviceReading
from gateway.pipeline.gateway import Gateway
from gateway.site.model import Site
from gateway.store.records import AGGREGATE, ALARM, LogRecord

from .servers import InfluxDB, Mosquitto, MqttCollector

# a full hour tomorrow: ahead of the wall clock, so the stage's timer never closes a window before its readings
# came, and retention never takes them
T0 = (int(time.time()) // 3600 + 24) * 3_600_000
MIN = 60_000
BURST = range(4 * 60, 7 * 60)  # seconds 240..419: minutes 4, 5, 6 at 400 ug/m3


def pm10_at(s: int) -> float:
    return 400.0 if s in BURST else 40.0 + s % 7


class Replay:
    """One dust monitor at 1 s, seconds [first, last), then nothing more to poll; `done` when emitted."""

    first, last = 0, 10 * 60
    done: asyncio.Event
    gate: asyncio.Event | None = None  # wait for this before emitting

    def __init__(self, site: Site, emit: Callable[[DeviceReading], None]):
        self.emit = emit

    async def run(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        for s in range(self.first, self.last):
            self.emit(DeviceReading("test-site", "dust-1", "dust", T0 + s * 1000, {
                "pm10": ChannelValue(pm10_at(s), "ug/m3"), "noise": ChannelValue(55.0, "dB(A)")}))
            if s % 50 == 49:
                await asyncio.sleep(0.01)
        type(self).done.set()

    def health(self) -> Mapping[str, Any]:
        return {}


SITE = """
    site: {{id: test-site, timezone: Asia/Shanghai}}
    store: {{dir: "{tmp}/log", commit_interval_ms: 50}}
    buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: 1}}]
    devices: [{{name: dust-1, bus: lan, address: 1, profile: dust-monitor}}]
    windows: {{periods: [1m, 5m, 1h, 1d], lateness_s: 5}}
    rules:
      - {{id: pm10-1m, type: threshold, title: PM10 1-minute average, channel: pm10, window: 1m, limit: 150,
          clear: 120, unit: ug/m3}}
    sinks:
      - {{type: mqtt, name: broker, host: 127.0.0.1, port: {mqtt}}}
      - {{type: influx, name: tsdb, url: "http://127.0.0.1:{influx}", database: plume, linger_ms: 50}}
"""


def table(influxdb: InfluxDB, q: str) -> list[dict[str, Any]]:
    return [dict(zip(s["columns"], v, strict=True)) for s in influxdb.query(q) for v in s["values"]]


async def until(cond: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await asyncio.to_thread(cond)
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def run_until(gw: Gateway, cond: Callable[[], object], what: str) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        await until(lambda: task.done() or cond(), what=what)
        if task.done():
            task.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_windows_and_alarms_reach_the_log_mqtt_and_influxdb_and_survive_a_restart(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, make_site: Callable[..., Site]) -> None:
    site = make_site(SITE, mqtt=mosquitto.port, influx=influxdb.port)
    collector = MqttCollector(mosquitto.port, "plume/#", client_id="stage-collector")
    records: list[LogRecord] = []
    alarms: list[LogRecord] = []
    try:
        # first run: up to the middle of the burst (the alarm is raised, not cleared)
        Replay.first, Replay.last, Replay.done = 0, 5 * 60 + 30, asyncio.Event()
        gw = Gateway(site, source=Replay)
        gw.on_commit(records.extend)
        gw.on_alarm(alarms.append)
        await run_until(gw, lambda: Replay.done.is_set() and any(
            t.endswith("/alarms/events") for t, _, _ in collector.snapshot()), "the raised event on MQTT")
        raised = [r.payload.event for r in alarms]
        assert [(e.type.value, e.start) for e in raised] == [("raised", T0 + 4 * MIN)]
        alarm_id = raised[0].alarm_id
        active = await until(lambda: [p for t, p, _ in collector.snapshot()
                                      if t == "plume/test-site/alarms/active/pm10-1m/dust-1/pm10"], what="retained")
        state = json.loads(active[-1])
        assert (state["alarm_id"], state["state"], state["acked"]) == (alarm_id, "raised", False)

        # second run on the same log: acknowledged over MQTT, then the rest of the burst and its end
        Replay.first, Replay.last, Replay.done = 5 * 60 + 30, 10 * 60, asyncio.Event()
        Replay.gate = gate = asyncio.Event()  # the rest of the burst only once the alarm was acknowledged
        gw2 = Gateway(site, source=Replay)
        gw2.on_commit(records.extend)
        gw2.on_alarm(alarms.append)
        loop = asyncio.get_running_loop()

        def progress() -> bool:
            types = [r.payload.event.type.value for r in alarms]
            if "acknowledged" in types:
                loop.call_soon_threadsafe(gate.set)
            elif gw2.stage is not None and gw2.stage.alarms.active():  # (again until the sink has subscribed)
                ack = json.dumps({"alarm_id": alarm_id, "by": "officer li"})
                mqtt_publish.single("plume/test-site/cmd/ack", ack, qos=1, hostname="127.0.0.1", port=mosquitto.port)
            return Replay.done.is_set() and "cleared" in types

        await run_until(gw2, progress, "acknowledged and cleared")
        events = [(r.payload.event.type.value, r.payload.event.alarm_id) for r in alarms]
        assert events == [("raised", alarm_id), ("acknowledged", alarm_id), ("cleared", alarm_id)], \
            "one alarm, acknowledged once, cleared once: nothing repeated by the restart"
        cleared = alarms[-1].payload.event
        assert cleared.ts == T0 + 8 * MIN, "judged when the first minute back under 120 closed"
        assert alarms[1].payload.event.by == "officer li"

        # MQTT: every event once (by event_id), the retained state emptied, aggregates on their topics
        def mqtt_events() -> list[dict[str, Any]]:
            return [json.loads(p) for t, p, _ in collector.snapshot() if t == "plume/test-site/alarms/events"]

        got = await until(lambda: (lambda e: e if len(e) >= 3 else None)(mqtt_events()), what="three events")
        assert sorted({e["event_id"] for e in got}) == sorted(f"{alarm_id}/{k}" for k in
                                                             ("raised", "acknowledged", "cleared"))
        assert all(e["idempotency_key"] and e["v"] == 1 for e in got)
        await until(lambda: [p for t, p, _ in collector.snapshot()
                             if t.startswith("plume/test-site/alarms/active/")][-1] == b"", what="retained cleared")
        def minutes_on_mqtt() -> list[dict[str, Any]]:
            return [json.loads(p) for t, p, _ in collector.snapshot() if t == "plume/test-site/dust-1/agg/1m"]

        # the last minute's aggregate may be committed after the clear: wait for it as for the events (under load
        # the test read the collector before minute 8 had reached it)
        want = {T0 + i * MIN for i in range(9)}
        aggs = await until(lambda: (lambda a: a if {x["start"] for x in a} >= want else None)(minutes_on_mqtt()),
                           what="the 1m aggregates of minutes 0-8 on MQTT")
        assert {a["start"] for a in aggs} >= want
        minute4 = next(a for a in aggs if a["start"] == T0 + 4 * MIN)
        assert minute4["values"]["pm10"] == {"unit": "ug/m3", "avg": 400.0, "min": 400.0, "max": 400.0, "n": 60,
                                             "valid": 60, "flag": "N"}
        assert minute4["partial"] is False and minute4["window"] == "1m" and minute4["kind"] == "dust"

        # the log: no window twice across the restart
        keys = [(r.payload.device, r.payload.window, r.payload.start) for r in records if r.kind == AGGREGATE]
        assert len(keys) == len(set(keys)), "a window was written twice"
        five = [r.payload for r in records if r.kind == AGGREGATE and r.payload.window == "5m"]
        assert [(a.start, a.partial, a.channels["pm10"].n) for a in five] == [(T0, False, 5)], \
            "the first five minutes, whole (the next five are still open)"

        # InfluxDB: the exact schema
        await until(lambda: influxdb.rows("alarms") and len(influxdb.rows("alarms")) >= 3, what="alarm points")
        points = {p["state"]: p for p in influxdb.rows("alarms")}  # (the acknowledgement is stamped by the wall clock)
        assert {k: p["active"] for k, p in points.items()} == {"raised": 1, "acknowledged": 1, "cleared": 0}
        p0 = points["raised"]
        assert (p0["site"], p0["device"], p0["channel"], p0["rule"], p0["window"]) == (
            "test-site", "dust-1", "pm10", "pm10-1m", "1m")
        assert (p0["value"], p0["limit"], p0["started"], p0["event_id"]) == (400.0, 150.0, T0 + 4 * MIN,
                                                                             f"{alarm_id}/raised")
        assert p0["time"] == T0 + 5 * MIN and p0["message"]
        await until(lambda: len(influxdb.rows("dust_1m")) >= 9, what="dust_1m points")
        m4 = next(r for r in influxdb.rows("dust_1m") if r["time"] == T0 + 4 * MIN)
        assert (m4["pm10_avg"], m4["pm10_min"], m4["pm10_max"], m4["pm10_n"], m4["pm10_valid"], m4["pm10_flag"]) == (
            400.0, 400.0, 400.0, 60, 60, "N")
        assert m4["noise_avg"] == pytest.approx(55.0) and m4.get("partial") is None  # Leq of 55 dB(A)
        types = {r["fieldKey"]: r["fieldType"] for r in table(influxdb, 'SHOW FIELD KEYS FROM "dust_1m"')}
        assert (types["pm10_avg"], types["pm10_n"], types["pm10_valid"], types["pm10_flag"]) == (
            "float", "integer", "integer", "string")
        alarm_types = {r["fieldKey"]: r["fieldType"] for r in table(influxdb, 'SHOW FIELD KEYS FROM "alarms"')}
        assert alarm_types == {"state": "string", "active": "integer", "value": "float", "limit": "float",
                               "window": "string", "started": "integer", "event_id": "string", "message": "string"}
        tags = {r["tagKey"] for r in table(influxdb, 'SHOW TAG KEYS FROM "alarms"')}
        assert tags == {"site", "device", "channel", "rule"}
        assert [r.kind for r in records].count(ALARM) == 3
    finally:
        Replay.gate = None
        collector.close()
