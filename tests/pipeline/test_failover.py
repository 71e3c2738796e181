"""Broker failover: an mqtt sink with `failover` moves to the next broker when the current one dies, without
losing or reordering a reading. Two real Mosquitto processes, the simulator serving two devices (its truth log
says what was served), the real gateway; the first broker is killed (SIGKILL) mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from pathlib import Path

from plume_sim import Simulator

from gateway.core.model import DeviceReading
from gateway.pipeline.gateway import Gateway
from gateway.sinks.config import MqttSinkConfig
from gateway.site.model import Site

from .helpers import log_records, need
from .servers import Mosquitto, MqttCollector, free_port

SITE = """
site: {{id: fo}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - {{name: dust-1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 0.1, timeout_s: 0.3}}
  - {{name: dust-2, bus: lan, address: 2, profile: dust-monitor, poll_interval_s: 0.1, timeout_s: 0.3}}
store: {{dir: "{tmp}/log", commit_interval_ms: 50, durability: normal}}
sinks:
  - {{type: mqtt, name: broker, host: 127.0.0.1, port: {a}, failover: ["127.0.0.1:{b}"], reconnect_min_s: 0.1,
      reconnect_max_s: 0.5, timeout_s: 2}}
"""


async def until(cond: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not cond():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_failover_to_the_second_broker_loses_and_reorders_nothing(
        make_site: Callable[..., Site], tmp_path: Path) -> None:
    need("mosquitto")
    a, b = Mosquitto(tmp_path / "a"), Mosquitto(tmp_path / "b")
    a.start()
    b.start()
    site = make_site(SITE, sim_port=free_port(), a=a.port, b=b.port)
    col_a = MqttCollector(a.port, "plume/fo/+/data", client_id="fo-a")
    col_b = MqttCollector(b.port, "plume/fo/+/data", client_id="fo-b")
    truth = tmp_path / "truth.jsonl"
    try:
        async with Simulator(site, seed=4, truth_path=truth):
            gw = Gateway(site, grace_s=5.0)
            stop = asyncio.Event()
            run = asyncio.create_task(gw.run(stop))
            try:
                await until(lambda: len(col_a.data()) >= 20, "readings on the first broker")
                a.stop(signal.SIGKILL)
                await until(lambda: len(col_b.data()) >= 20, "readings on the second broker")
                assert gw.sinks[0].status.target == f"127.0.0.1:{b.port}"
            finally:
                stop.set()
                await asyncio.wait_for(run, 20)
        committed = [(seq, r) for _, seq, r in log_records(site.config.store.log_path(site.path))
                     if isinstance(r, DeviceReading)]
        # the last publishes were acknowledged just before the gateway stopped: the broker hands them on to the
        # collector a moment later (under load that moment was after this test read the collectors)
        with contextlib.suppress(AssertionError):
            await until(lambda: {(r.device, seq) for seq, r in committed}
                        <= {(m["device"], m["seq"]) for m in col_a.data() + col_b.data()},
                        "the acknowledged readings to reach the subscribers", timeout=10)
        arrived = col_a.data() + col_b.data()  # everything from a arrived before anything from b
        assert {(r.device, seq) for seq, r in committed} == {(m["device"], m["seq"]) for m in arrived}, (
            "every committed reading arrived on one broker or the other, nothing else")
        for device in ("dust-1", "dust-2"):
            firsts: list[int] = []
            for m in arrived:
                if m["device"] == device and m["seq"] not in firsts:
                    firsts.append(m["seq"])
            assert firsts == sorted(firsts) and firsts == list(range(1, len(firsts) + 1)), f"{device} in order"
        served = {(t["device"], t["channel"], t["value"]) for t in map(json.loads, truth.read_text().splitlines())
                  if "channel" in t}
        ok = [m for m in arrived if m["ok"]]
        assert ok and all((m["device"], ch, v["value"]) in served for m in ok for ch, v in m["values"].items()), (
            "every value is one the simulator served")
        assert col_b.data() and col_a.data()
    finally:
        col_a.close()
        col_b.close()
        a.stop()
        b.stop()


def test_failover_entries_are_host_or_host_port() -> None:
    cfg = MqttSinkConfig(type="mqtt", host="a", port=1884, failover=["b", "c:1999"])
    assert cfg.brokers == [("a", 1884), ("b", 1884), ("c", 1999)]
