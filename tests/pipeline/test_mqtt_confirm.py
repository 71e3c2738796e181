"""What a data message costs the MQTT sink, and that a broker which stops confirming still ends the session.

Issue 12: aiomqtt's publish() made a Task per message (the sink ran each publish concurrently to keep its window on
the wire), plus an Event, a wait_for Task and two walks over every pending call: ~59 us of CPU a message against
~26 us through paho with a Future (measured against a real Mosquitto, window 200). The sink now publishes data
messages through gateway.sinks.mqtt_confirm; these tests count Tasks (not time) and hang a real broker."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from gateway.sinks.mqtt import MqttSink
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog

from .helpers import reading
from .servers import Mosquitto, MqttCollector, wait_for
from .test_mqtt_sink import mqtt_cfg, until

T0 = 1_767_225_600_000


async def test_a_data_message_costs_no_task(tmp_path: Path, mosquitto: Mosquitto) -> None:
    loop = asyncio.get_running_loop()
    made: list[str] = []
    default = loop.get_task_factory()

    def counting(lp: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        made.append(getattr(coro, "__qualname__", "?"))
        if default is not None:
            return default(lp, coro, **kw)  # type: ignore[return-value]
        return asyncio.Task(coro, loop=lp, **kw)

    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["broker"])
    for i in range(300):
        log.append(reading(f"d{i % 3}", T0 + i))
    await log.flush()
    sink = MqttSink(mqtt_cfg(mosquitto.port, inflight=50), "test-site", log)
    loop.set_task_factory(counting)
    try:
        task = asyncio.create_task(sink.run())
        await until(lambda: sink.consumer.acked == 300, what="300 PUBACKs")
        during = len(made)
        log.begin_close()
        await asyncio.wait_for(task, 5)
    finally:
        loop.set_task_factory(default)
        await log.close()
    # the session's own tasks (pump, watcher, connect, status) are a handful; one per message would be >= 300
    assert during < 30, f"{during} tasks for 300 messages: {sorted(set(made))}"


async def test_a_broker_that_stops_confirming_ends_the_session_and_nothing_is_lost(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """SIGSTOP: a hung broker machine, its TCP connection open, no PUBACK ever. The sink gives up on the session
    after timeout_s, keeps its cursor before the unconfirmed messages, and delivers all of them once it answers."""
    collector = MqttCollector(mosquitto.port, "plume/#")
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["broker"])
    committer = asyncio.create_task(log.run())
    sink = MqttSink(mqtt_cfg(mosquitto.port, timeout_s=1), "test-site", log)
    task = asyncio.create_task(sink.run())
    assert mosquitto.proc is not None
    pid = mosquitto.proc.pid
    stopped = False
    try:
        log.append(reading("d0", T0))
        await until(lambda: sink.consumer.acked == 1, what="the first PUBACK")
        os.kill(pid, signal.SIGSTOP)
        stopped = True
        for i in range(1, 51):
            log.append(reading("d0", T0 + i))
        await until(lambda: sink.status.failures >= 1, what="the sink to give the hung session up")
        assert "timed out" in (sink.status.last_error or "")
        assert sink.consumer.acked == 1, "nothing unconfirmed was passed"
        os.kill(pid, signal.SIGCONT)
        stopped = False
        await until(lambda: sink.consumer.acked == 51, 30, what="everything after the broker answers again")
        wait_for(lambda: {m["seq"] for m in collector.data()} == set(range(1, 52)), 10, "all 51 messages")
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
        log.begin_close()
        await asyncio.wait_for(task, 10)
        committer.cancel()
        await log.close()
        collector.close()


async def test_qos_0_messages_are_passed_once_written(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """QoS 0 has no PUBACK: a message counts as delivered once paho has written it (its on_publish), as before."""
    collector = MqttCollector(mosquitto.port, "plume/#")
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["broker"])
    for i in range(50):
        log.append(reading("d0", T0 + i))
    await log.flush()
    sink = MqttSink(mqtt_cfg(mosquitto.port, qos=0), "test-site", log)
    task = asyncio.create_task(sink.run())
    try:
        await until(lambda: sink.consumer.acked == 50, what="50 messages written")
        wait_for(lambda: {m["seq"] for m in collector.data()} == set(range(1, 51)), 10, "all 50 messages")
    finally:
        log.begin_close()
        await asyncio.wait_for(task, 10)
        await log.close()
        collector.close()


async def test_the_sink_s_window_alone_bounds_what_is_in_flight(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """At most `inflight` log records unacknowledged, counted by the sink itself. On MQTT 3.1.1 paho's own limit
    is off: with it on, paho walks every message in flight at each PUBACK (its _update_inflight), 14 % of the
    CPU of a backlog drain (200,000 messages, py-spy). MQTT 5 keeps paho's limit as well."""
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["broker", "v5"])
    for i in range(2000):
        log.append(reading(f"d{i % 4}", T0 + i))
    await log.flush()
    for name, protocol in (("broker", "3.1.1"), ("v5", "5")):
        sink = MqttSink(mqtt_cfg(mosquitto.port, name=name, inflight=40, protocol=protocol), "test-site", log)
        clients: list[Any] = []
        make = sink._client

        def spy(make: Any = make, clients: list[Any] = clients) -> Any:
            clients.append(make())
            return clients[-1]

        sink._client = spy  # type: ignore[method-assign]
        task = asyncio.create_task(sink.run())
        most = 0
        deadline = asyncio.get_running_loop().time() + 20
        while sink.consumer.acked < 2000 and asyncio.get_running_loop().time() < deadline:
            if clients:
                most = max(most, len(clients[-1]._client._out_messages))
            await asyncio.sleep(0)
        assert sink.consumer.acked == 2000, f"{protocol}: {sink.consumer.acked} of 2000 PUBACKs"
        assert most <= 40 + 1, f"{protocol}: {most} messages in flight"  # + the online status
        assert most >= 20, f"{protocol}: the window was used ({most})"
        paho_limit = clients[-1]._client._max_inflight_messages
        assert paho_limit == (0 if protocol == "3.1.1" else 40), f"{protocol}: paho's own limit {paho_limit}"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await log.close()
