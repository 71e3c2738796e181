"""Per-device availability on the native contract (`availability: true` on an mqtt sink): the simulator serves
two devices over Modbus TCP, the real gateway polls them and delivers to a real Mosquitto; a device silenced by a
simulator fault turns `offline` (retained), and `online` again when it answers; the site's last will covers all."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from plume_sim import Simulator

from gateway.core.model import DeviceReading
from gateway.pipeline.gateway import Gateway
from gateway.sinks.availability import Availability
from gateway.site.model import Site
from gateway.store.records import ReadingRecord

from .servers import Mosquitto, MqttCollector, free_port, wait_for

SITE = """
site: {{id: av}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - {{name: dust-1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 0.2, timeout_s: 0.3,
      backoff_max_s: 0.4}}
  - {{name: dust-2, bus: lan, address: 2, profile: dust-monitor, poll_interval_s: 0.2, timeout_s: 0.3}}
store: {{dir: "{tmp}/log", commit_interval_ms: 50, durability: normal}}
sinks:
  - {{type: mqtt, name: broker, host: 127.0.0.1, port: {mqtt_port}, availability: true, reconnect_min_s: 0.1,
      reconnect_max_s: 0.5}}
"""


def statuses(col: MqttCollector, topic: str) -> list[str]:
    return [p.decode() for t, p, _ in col.snapshot() if t == topic]


async def until(cond: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.05)
    assert cond(), what


async def test_a_silenced_device_goes_offline_and_comes_back_online(
        mosquitto: Mosquitto, make_site: Callable[..., Site], tmp_path: Path) -> None:
    site = make_site(SITE, sim_port=free_port(), mqtt_port=mosquitto.port)
    col = MqttCollector(mosquitto.port, "plume/av/#", client_id="av-watch")
    try:
        async with Simulator(site, seed=1) as sim:
            gw = Gateway(site, grace_s=2.0)
            stop = asyncio.Event()
            run = asyncio.create_task(gw.run(stop))
            try:
                one, two = "plume/av/dust-1/status", "plume/av/dust-2/status"
                await until(lambda: statuses(col, one) == ["online"] and statuses(col, two) == ["online"],
                            "both devices online")
                sim.set_fault("dust-1", "dead")
                await until(lambda: statuses(col, one)[-1:] == ["offline"], "dust-1 offline")
                sim.set_fault("dust-1", None)
                await until(lambda: statuses(col, one)[-1:] == ["online"], "dust-1 back online")
                assert statuses(col, one) == ["online", "offline", "online"], "one message per change"
                assert statuses(col, two) == ["online"], "the neighbour on the same bus stayed online"
                data = [m for m in col.data() if m["device"] == "dust-1"]
                last_ok = max(i for i, m in enumerate(data) if m["ok"] and i < next(
                    i for i, m in enumerate(data) if not m["ok"]))
                assert not data[last_ok + 1]["ok"], "offline follows failed polls on the data topic"
            finally:
                stop.set()
                await asyncio.wait_for(run, 15)
        # a dashboard that connects now sees the retained states, and the site offline (clean stop)
        late = MqttCollector(mosquitto.port, "plume/av/#", client_id="av-late")
        try:
            wait_for(lambda: statuses(late, "plume/av/status") and statuses(late, one), 10, "retained statuses")
            assert statuses(late, "plume/av/status") == ["offline"]
            assert statuses(late, one) == ["online"] and statuses(late, two) == ["online"]
        finally:
            late.close()
    finally:
        col.close()


def _rec(rid: int, device: str, ok: bool) -> ReadingRecord:
    return ReadingRecord(rid, rid, "av", rid, DeviceReading("av", device, "dust", rid, {}, ok=ok))


def test_availability_counts_a_resent_reading_once_and_republishes_after_a_reconnect() -> None:
    av = Availability(offline_after=2)
    assert av.observe(_rec(1, "d", False)) is None, "one failed poll is not offline yet"
    av.new_session()  # the connection broke: record 1 is sent again
    assert av.observe(_rec(1, "d", False)) is None, "the re-sent failure is not a second failure"
    assert av.observe(_rec(2, "d", False)) == "offline"
    assert av.observe(_rec(3, "d", False)) is None, "published once per change"
    av.new_session()
    assert av.observe(_rec(3, "d", False)) == "offline", "a status lost with the connection is sent again"
    assert av.observe(_rec(4, "d", True)) == "online"
