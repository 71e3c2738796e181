"""Scenarios of the issue, end to end with real processes: `plume-sim` serving the devices, `plume run` polling them,
a real Mosquitto, a real webhook receiver (a local HTTP server), `kill -9` for a crash.

- a dust burst raises exactly one alarm within the rule's window (1 minute) and clears it after the burst; the fog
  cannon's coil in the simulator is switched on and, after the clear plus its delay, off; a `kill -9` of the gateway
  in the middle of the alarm neither loses nor duplicates it; a webhook receiver that is down gets the notification
  after it comes back, once;
- a value flapping around the limit (between the clear level and above the limit) raises one alarm, never a storm;
- a dead device raises "offline", and clears when it answers again.

The burst is made by writing the simulated monitor's PM10 holding register (FC 6, as a test harness would), so the
times are known: the simulator then serves that value until it is written again.

The gateway runs in fast motion (`FastClock`, ten times real time): its one-minute windows close every 6 s and its
polls come ten times as often, and plume-sim's signals (a value wandering around a limit) move ten times as fast,
while Modbus timeouts, MQTT and the webhook receiver keep real time. Every time the tests compare with the
gateway's is read from the same fast clock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import sqlite3
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from tests.pipeline.helpers import FastClock, Proc, gateway_cmd, script
from tests.pipeline.servers import Mosquitto, MqttCollector, free_port

from .receiver import WebhookReceiver

SITE = """
site: {{id: scen, timezone: Asia/Shanghai}}
store: {{dir: "{tmp}/log", commit_interval_ms: 100}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - name: dust-1
    bus: lan
    address: 1
    kind: dust
    poll_interval_s: 1
    timeout_s: 0.5
    registers:
      - {{channel: pm10, address: 0, function: 3, type: u16, unit: ug/m3, max: 1000, sim: {{constant: 60}}}}
  - name: dust-2
    bus: lan
    address: 2
    kind: dust
    poll_interval_s: 1
    timeout_s: 0.5
    registers:
      - {{channel: pm10, address: 0, function: 3, type: u16, unit: ug/m3, max: 1000,
          sim: {{signal: walk, base: 100, amplitude: 12, period_s: 3}}}}
  - name: fog-plc
    bus: lan
    address: 3
    kind: actuator
    poll_interval_s: 1
    timeout_s: 0.5
    registers:
      - {{channel: fog_on, address: 16, function: 1, type: bits}}
windows:
  periods: [1m, 5m, 10m, 15m, 1h, 1d]
  exclude: [fog_on]
  lateness_s: 2
rules:
  - {{id: pm10-1m, type: threshold, title: PM10 1-minute average over 150 ug/m3, channel: pm10, devices: [dust-1],
      window: 1m, limit: 150, clear: 120, unit: ug/m3, actuate: [fog-1]}}
  - {{id: pm10-raw, type: threshold, title: PM10 over 100 ug/m3, channel: pm10, devices: [dust-2], limit: 100,
      clear: 70, unit: ug/m3}}
  - {{id: offline, type: offline, after_s: 30}}
actuators:
  - {{name: fog-1, device: fog-plc, function: 5, address: 16, off_delay_s: 2}}
notify:
  webhooks:
    - name: officers
      template: generic
      url: http://127.0.0.1:{hook_port}/hook
      events: [raised, cleared]
      rules: [pm10-1m]
      retry: {{initial_s: 0.5, max_s: 2}}
sinks:
  - {{type: mqtt, name: broker, host: 127.0.0.1, port: {mqtt_port}}}
"""


SPEEDUP = 10  # the gateway's clock runs ten times as fast as real time


class Rig:
    """plume-sim (with a control port) and plume run on one site file; what reached MQTT."""

    def __init__(self, tmp: Path, mqtt: Mosquitto, start: Callable[..., Proc]):
        self.tmp = tmp
        self.clock = FastClock(SPEEDUP)
        self.procs = start
        self.sim_port, self.control_port, self.hook_port = free_port(), free_port(), free_port()
        self.site = tmp / "site.yaml"
        self.site.write_text(textwrap.dedent(SITE).format(tmp=tmp, sim_port=self.sim_port, hook_port=self.hook_port,
                                                         mqtt_port=mqtt.port), encoding="utf-8")
        self.collector = MqttCollector(mqtt.port, "plume/#", client_id="scenario-collector")
        self.sim = start([script("plume-sim"), str(self.site), "--control", f"127.0.0.1:{self.control_port}",
                          "--quiet"], tmp / "sim.out", self.clock.env())  # the devices' signals on the same clock
        self.sim.wait_output("ready")
        self.gateway: Proc | None = None

    def start_gateway(self) -> Proc:
        self.gateway = self.procs(gateway_cmd(self.site), self.tmp / "gateway.out", self.clock.env())
        self.gateway.wait_output("running")
        return self.gateway

    def control(self, msg: dict[str, Any]) -> dict[str, Any]:
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=5) as s:
            s.sendall(json.dumps(msg).encode() + b"\n")
            answer: dict[str, Any] = json.loads(s.makefile("rb").readline())
        assert answer.get("ok"), answer
        return answer

    def written(self, device: str) -> list[dict[str, Any]]:
        return list(self.control({"get": "written", "device": device})["written"])

    async def set_register(self, device_id: int, address: int, value: int) -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=self.sim_port)
        await client.connect()
        try:
            rr = await client.write_register(address, value, device_id=device_id)
            assert not rr.isError(), rr
        finally:
            client.close()

    def events(self, rule: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(p) for t, p, _ in self.collector.snapshot() if t == "plume/scen/alarms/events"]
        return [e for e in out if rule is None or e["rule"] == rule]

    def data(self, device: str) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _ in self.collector.snapshot() if t == f"plume/scen/{device}/data"]

    def aggregates(self, device: str, window: str) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _ in self.collector.snapshot() if t == f"plume/scen/{device}/agg/{window}"]

    def log_alarms(self) -> list[dict[str, Any]]:
        """The alarm records of the durable log (not checkpoints), read from the file."""
        conn = sqlite3.connect(self.tmp / "log" / "log.sqlite")
        try:
            rows = conn.execute("SELECT vals FROM readings WHERE kind = 2 AND flags = '' ORDER BY id").fetchall()
        finally:
            conn.close()
        return [json.loads(v) for (v,) in rows]

    def log_actuations(self) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.tmp / "log" / "log.sqlite")
        try:
            rows = conn.execute("SELECT vals FROM readings WHERE kind = 3 ORDER BY id").fetchall()
        finally:
            conn.close()
        return [json.loads(v) for (v,) in rows]

    def close(self) -> None:
        self.collector.close()


async def until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Wait for a condition of what the processes produced (MQTT messages, simulator state)."""
    deadline = time.monotonic() + timeout
    while True:
        got = await asyncio.to_thread(cond)
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


def ids(events: list[dict[str, Any]]) -> list[str]:
    return sorted({e["event_id"] for e in events})


@pytest.mark.timeout(600)
async def test_a_dust_burst_raises_one_alarm_through_a_crash_switches_the_fog_cannon_and_reaches_a_webhook_once(
        tmp_path: Path, mosquitto: Mosquitto, procs: Callable[..., Proc]) -> None:
    rig = Rig(tmp_path, mosquitto, procs)
    receiver = WebhookReceiver(rig.hook_port)  # down until after the crash
    try:
        rig.start_gateway()
        # the gateway's first minute is partial (it started in the middle): alarms do not judge it
        (first,) = await until(lambda: rig.aggregates("dust-1", "1m"), 90, "the first minute of dust-1 on MQTT")
        assert first["partial"] is True

        # the burst: 400 ug/m3 from now on
        t_burst = rig.clock.now_ms()
        await rig.set_register(1, 0, 400)
        (raised,) = await until(lambda: rig.events("pm10-1m"), 150, "the PM10 alarm raised")
        assert raised["type"] == "raised" and raised["window"] == "1m" and raised["device"] == "dust-1"
        minutes = [(a["start"], a["values"]["pm10"]) for a in rig.aggregates("dust-1", "1m")]
        assert raised["start"] <= t_burst < raised["ts"] <= t_burst + 60_000 + 2_000, \
            f"raised when the first minute holding the burst closed: within the rule's window ({t_burst}: {minutes})"
        assert raised["value"] > 150 and raised["limit"] == 150
        await until(lambda: any(w["function"] == 5 and w["values"] == [1] for w in rig.written("fog-plc")), 20,
                    "the fog cannon's coil switched on in the simulator")

        # kill -9 in the middle of the alarm; the new process restores it from the log
        assert rig.gateway is not None
        rig.gateway.kill9()
        restarted = rig.clock.now_ms()
        rig.start_gateway()
        await until(lambda: [a for a in rig.aggregates("dust-1", "1m") if a["start"] >= restarted
                             and a["values"]["pm10"]["avg"] > 150], 150,
                    "a minute over the limit judged by the restarted gateway")
        assert ids(rig.events("pm10-1m")) == [f"{raised['alarm_id']}/raised"], "no second raise after the restart"

        # the burst ends (early in a minute, so this minute's average is back under 120)
        t_end = rig.clock.now_ms()
        await rig.set_register(1, 0, 60)
        # the webhook receiver comes back: the notification arrives, once
        await receiver.start()
        await receiver.wait_for(lambda reqs: len(reqs) >= 1, 60)

        cleared = await until(lambda: [e for e in rig.events("pm10-1m") if e["type"] == "cleared"], 150,
                              "the PM10 alarm cleared")
        assert cleared[0]["ts"] <= t_end + 2 * 60_000 + 2_000 and cleared[0]["alarm_id"] == raised["alarm_id"]
        await receiver.wait_for(lambda reqs: len(reqs) >= 2, 60)
        await until(lambda: rig.written("fog-plc")[-1]["values"] == [0], 30, "the fog cannon switched off")
        assert rig.gateway is not None and rig.gateway.terminate() == 0
    finally:
        await receiver.stop()
        rig.close()

    # MQTT: exactly one raised and one cleared event (by id: at-least-once may repeat a message after the crash)
    assert ids(rig.events("pm10-1m")) == sorted(f"{raised['alarm_id']}/{k}" for k in ("raised", "cleared"))
    # the log: one raised, one cleared, the same alarm
    logged = [(e["type"], e["alarm_id"]) for e in rig.log_alarms() if e["rule"] == "pm10-1m"]
    assert logged == [("raised", raised["alarm_id"]), ("cleared", raised["alarm_id"])]
    # the webhook: each event exactly once, with its idempotency key
    posted = [(r.body["event"]["type"], r.headers["idempotency-key"]) for r in receiver.requests]
    assert posted == [("raised", raised["idempotency_key"]), ("cleared", cleared[0]["idempotency_key"])]
    # the coil: its state written at each start (off, then on again after the crash), on at the raise, off 2 s
    # after the clear; every write is an actuation record with its reason
    coil = [w["values"] for w in rig.written("fog-plc") if w["function"] == 5 and w["address"] == 16]
    assert coil == [[0], [1], [1], [0]]
    reasons = [a["command"]["reason"] for a in rig.log_actuations()]
    assert reasons[0] == "resync after restart" and reasons[1] == "alarm raised: PM10 1-minute average over 150 ug/m3"
    assert reasons[2:] == ["resync after restart", "off 2 s after the last alarm cleared"]
    assert all(a["ok"] for a in rig.log_actuations())
    # a dashboard connecting now sees no active PM10 alarm: the retained state was emptied (the retained status
    # message tells when the subscription's retained messages have arrived)
    late = MqttCollector(mosquitto.port, "plume/scen/#", client_id="late-dashboard")
    try:
        await until(lambda: any(t == "plume/scen/status" for t, _, _ in late.snapshot()), 10, "retained messages")
    finally:
        late.close()
    assert not [t for t, p, _ in late.snapshot() if t.startswith("plume/scen/alarms/active/pm10-1m/") and p]


async def test_a_flapping_value_raises_once_and_a_dead_device_goes_offline(
        tmp_path: Path, mosquitto: Mosquitto, procs: Callable[..., Proc]) -> None:
    rig = Rig(tmp_path, mosquitto, procs)
    try:
        rig.start_gateway()

        # dust-2 wanders around 100 (88..112): over the limit (100) again and again, never down to clear (70)
        def crossings() -> int:
            values = [m["values"]["pm10"]["value"] for m in rig.data("dust-2")]
            return sum(1 for a, b in itertools.pairwise(values) if (a > 100) != (b > 100))

        await until(lambda: crossings() >= 8, 120, "the value crossing the limit 8 times")
        flap = rig.events("pm10-raw")
        assert [e["type"] for e in flap] == ["raised"], f"one alarm for {crossings()} crossings, not a storm"

        # dust-1 dies: offline after 30 s (on the fast clock) without a good reading; back when it answers again
        rig.control({"device": "dust-1", "fault": "dead"})
        (offline,) = await until(lambda: [e for e in rig.events("offline") if e["device"] == "dust-1"], 30,
                                 "offline raised for dust-1")
        assert offline["type"] == "raised" and offline["rule"] == "offline"
        others = [(e["type"], e["device"], e["ts"]) for e in rig.events("offline") if e["device"] != "dust-1"]
        assert not others, f"the others answer: {others}"
        rig.control({"device": "dust-1", "fault": None})
        await until(lambda: [e for e in rig.events("offline") if e["type"] == "cleared"], 60, "offline cleared")
        assert rig.gateway is not None and rig.gateway.terminate() == 0
    finally:
        rig.close()
    assert [e["type"] for e in rig.events("pm10-raw")] == ["raised"]
