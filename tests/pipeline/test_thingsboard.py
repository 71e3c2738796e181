"""ThingsBoard gateway API (`type: thingsboard` sink), driven by a test client that speaks that API the way a
ThingsBoard server does (subscribes v1/gateway/#, sends RPC requests on v1/gateway/rpc) through a real Mosquitto;
no ThingsBoard server can run here. The simulator serves two dust monitors; the real gateway polls them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plume_sim import Simulator

from gateway.pipeline.gateway import Gateway
from gateway.site.model import Site
from gateway.store.records import COMMAND, CommandRecord, ReadingRecord

from .servers import Mosquitto, MqttCollector, free_port

SITE = """
site: {{id: tb}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - name: dust-1
    bus: lan
    address: 1
    profile: dust-monitor
    poll_interval_s: 0.2
    timeout_s: 0.3
    registers:
      - {{channel: fan_setpoint, address: 20, function: 3, type: u16, unit: "%", writable: true}}
  - {{name: dust-2, bus: lan, address: 2, profile: dust-monitor, poll_interval_s: 0.2, timeout_s: 0.3,
      backoff_max_s: 0.4}}
store: {{dir: "{tmp}/log", commit_interval_ms: 50, durability: normal}}
sinks:
  - {{type: thingsboard, name: tb, host: 127.0.0.1, port: {mqtt_port}, token: gateway-token, reconnect_min_s: 0.1}}
"""


class ThingsBoardClient(MqttCollector):
    """The server side of the gateway API: what the gateway published, and RPC requests to it."""

    def on(self, topic: str) -> list[Any]:
        return [json.loads(p) for t, p, _ in self.snapshot() if t == topic]

    def rpc(self, device: str, rid: int, method: str, params: dict[str, Any]) -> None:
        body = {"device": device, "data": {"id": rid, "method": method, "params": params}}
        self.client.publish("v1/gateway/rpc", json.dumps(body), qos=1)

    def reply(self, rid: int) -> dict[str, Any] | None:
        return next((m for m in self.on("v1/gateway/rpc") if m.get("id") == rid and "method" not in m.get("data", {})),
                    None)


async def until(cond: Callable[[], object], what: str, timeout: float = 30.0) -> Any:
    try:
        async with asyncio.timeout(timeout):
            while not (got := cond()):
                await asyncio.sleep(0.05)
            return got
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_thingsboard_connect_telemetry_rpc_ack_and_a_refused_write(
        mosquitto: Mosquitto, make_site: Callable[..., Site], tmp_path: Path) -> None:
    site = make_site(SITE, sim_port=free_port(), mqtt_port=mosquitto.port)
    tb = ThingsBoardClient(mosquitto.port, "v1/gateway/#", client_id="thingsboard-server")
    truth = tmp_path / "truth.jsonl"
    try:
        async with Simulator(site, seed=5, truth_path=truth) as sim:
            gw = Gateway(site, grace_s=3.0)
            stop = asyncio.Event()
            run = asyncio.create_task(gw.run(stop))
            try:
                await until(lambda: {m["device"] for m in tb.on("v1/gateway/connect")} == {"dust-1", "dust-2"},
                            "both devices connected")
                attrs = {k: v for m in tb.on("v1/gateway/attributes") for k, v in m.items()}
                assert attrs["dust-1"] == {"site": "tb", "kind": "dust", "profile": "dust-monitor", "bus": "lan",
                                           "address": 1}

                tb.rpc("dust-1", 1, "ack", {"alarm_id": "pm10-15m/dust-1/pm10/1", "by": "operator"})
                tb.rpc("dust-1", 2, "write", {"channel": "pm10", "value": 5})
                tb.rpc("dust-1", 3, "write", {"channel": "fan_setpoint", "value": 42})
                tb.rpc("dust-1", 4, "reboot", {})
                await until(lambda: all(tb.reply(i) for i in (1, 2, 3, 4)), "four RPC replies")
                assert tb.reply(1) == {"device": "dust-1", "id": 1, "data": {"success": True}}
                assert tb.reply(2) == {"device": "dust-1", "id": 2, "data": {"success": False, "error": (
                    "write: dust-1.pm10 is not marked writable in profile dust-monitor (only registers the profile "
                    "marks writable may be written)")}}
                assert tb.reply(3) == {"device": "dust-1", "id": 3, "data": {"success": True}}
                assert tb.reply(4)["data"] == {"success": False, "error": "unknown command 'rpc:reboot'"}
                await until(lambda: sim.written("dust-1"), "the allowed write at the device")
                assert [(w["function"], w["address"], w["values"]) for w in sim.written("dust-1")] == [(6, 20, [42])]

                sim.set_fault("dust-2", "dead")
                await until(lambda: tb.on("v1/gateway/disconnect"), "dust-2 disconnected")
                sim.set_fault("dust-2", None)
                await until(lambda: [m["device"] for m in tb.on("v1/gateway/connect")].count("dust-2") == 2,
                            "dust-2 connected again")

                assert gw.log is not None
                audit = [r.payload for r in await gw.log.records_of_kind(COMMAND, 0) if isinstance(r, CommandRecord)]
                by_type = {(c["type"], c.get("channel")): c for c in audit}
                assert by_type[("ack", None)]["source"] == "thingsboard:tb"
                assert "not marked writable" in by_type[("write", "pm10")]["refused"]
                assert "refused" not in by_type[("write", "fan_setpoint")]
                assert by_type[("rpc:reboot", None)]["refused"] == "unknown command 'rpc:reboot'"
                committed = [r for r in await gw.log.read(0, 1 << 30) if isinstance(r, ReadingRecord)]
            finally:
                stop.set()
                await asyncio.wait_for(run, 15)
        sent: dict[tuple[str, int], dict[str, Any]] = {}
        for msg in tb.on("v1/gateway/telemetry"):
            for device, entries in msg.items():
                for e in entries:
                    sent[(device, e["ts"])] = e["values"]
        assert {(r.reading.device, r.reading.ts) for r in committed} <= set(sent), "every committed reading sent"
        served = {(t["device"], t["channel"], t["value"]) for t in map(json.loads, truth.read_text().splitlines())
                  if "channel" in t}
        ok = [(r.reading.device, sent[(r.reading.device, r.reading.ts)]) for r in committed if r.reading.ok]
        assert ok
        for device, values in ok:
            for ch, v in values.items():
                if ch.endswith("_flag"):
                    continue
                if v is None:  # a poll the dead fault cut in two: the requests after the cut have no value, flag B
                    assert values[f"{ch}_flag"] == "B", (device, ch, values)
                else:
                    assert (device, ch, v) in served, (device, ch, v)
        assert all(values[f"{ch}_flag"] in "NBDCMTFS" for _, values in ok for ch in values if not ch.endswith("_flag"))
    finally:
        tb.close()


def test_only_a_coil_or_a_16_bit_holding_register_can_be_marked_writable() -> None:
    import pytest
    from pydantic import ValidationError

    from gateway.profile import RegisterSpec

    assert RegisterSpec(channel="fan", address=1, function=1, type="bits", writable=True).writable
    assert RegisterSpec(channel="sp", address=1, function=3, type="i16", writable=True).writable
    with pytest.raises(ValidationError, match="writable: only a coil"):
        RegisterSpec(channel="pm10", address=1, function=4, type="u16", writable=True)
    with pytest.raises(ValidationError, match="writable: only a coil"):
        RegisterSpec(channel="so2", address=1, function=3, type="f32", writable=True)
