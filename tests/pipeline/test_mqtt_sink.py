"""The MQTT sink against a real Mosquitto: the topic/payload contract, status and will, MQTT 5, a broker outage,
and TLS with a password (right credentials deliver; wrong ones fail with a clear line that never shows the
password)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.sinks.config import MqttSinkConfig
from gateway.sinks.mqtt import MqttSink, tls_context
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog

from .helpers import need, reading
from .servers import Mosquitto, MqttCollector, TlsFiles, make_passwd, make_tls, wait_for

T0 = 1_767_225_600_000
PASSWORD = "s3cret-Pa55word"


async def until(cond: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def mqtt_cfg(port: int, **kw: Any) -> MqttSinkConfig:
    base: dict[str, Any] = {"type": "mqtt", "name": "broker", "host": "127.0.0.1", "port": port,
                            "reconnect_min_s": 0.05, "reconnect_max_s": 0.3, "health_interval_s": 0}
    return MqttSinkConfig.model_validate({**base, **kw})


@pytest.fixture
def collector(mosquitto: Mosquitto) -> Iterator[MqttCollector]:
    c = MqttCollector(mosquitto.port, "plume/#")
    yield c
    c.close()


def retained(port: int, topic: str, **kw: Any) -> bytes:
    """The retained message of a topic, as a new subscriber gets it."""
    c = MqttCollector(port, topic, client_id=f"probe-{time.monotonic_ns()}", **kw)
    try:
        wait_for(lambda: c.snapshot(), 5, f"the retained message of {topic}")
        return c.snapshot()[-1][1]
    finally:
        c.close()


async def test_messages_follow_contract_v1(tmp_path: Path, mosquitto: Mosquitto, collector: MqttCollector) -> None:
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["broker"])
    for i in range(4):
        log.append(reading(f"dust-{i % 2}", T0 + i * 1000))
    log.append(DeviceReading("test-site", "dust-1", "dust", T0 + 9000, {
        "pm10": ChannelValue(None, "ug/m3", Flag.B, "timeout"), "pm25": ChannelValue(float("nan"), "ug/m3", Flag.D),
    }, ok=False, error="fc4@0+9: timeout"))
    await log.flush()
    sink = MqttSink(mqtt_cfg(mosquitto.port), "test-site", log)
    task = asyncio.create_task(sink.run())
    await until(lambda: sink.consumer.acked == 5, what="PUBACKs")
    wait_for(lambda: len(collector.data()) == 5, 5, "five data messages")
    assert retained(mosquitto.port, "plume/test-site/status") == b"online"
    log.begin_close()
    await asyncio.wait_for(task, 5)
    await log.close()

    msgs = collector.snapshot()
    topics = [t for t, _, _ in msgs if t.endswith("/data")]
    d0, d1 = "plume/test-site/dust-0/data", "plume/test-site/dust-1/data"
    assert topics == [d0, d1, d0, d1, d1]
    data = collector.data()
    assert data[0] == {
        "v": 1, "site": "test-site", "device": "dust-0", "kind": "dust", "seq": 1, "ts": T0, "ok": True,
        "values": {
            "pm10": {"value": float(T0 % 997), "unit": "ug/m3", "flag": "N"},
            "pm25": {"value": float(T0 % 499) / 2, "unit": "ug/m3", "flag": "N"},
            "tsp": {"value": float(T0 % 1999), "unit": "ug/m3", "flag": "N"},
        },
    }
    assert [(m["device"], m["seq"]) for m in data] == [("dust-0", 1), ("dust-1", 1), ("dust-0", 2), ("dust-1", 2),
                                                       ("dust-1", 3)]
    assert data[4] == {
        "v": 1, "site": "test-site", "device": "dust-1", "kind": "dust", "seq": 3, "ts": T0 + 9000, "ok": False,
        "error": "fc4@0+9: timeout",
        "values": {"pm10": {"value": None, "unit": "ug/m3", "flag": "B", "note": "timeout"},
                   "pm25": {"value": None, "unit": "ug/m3", "flag": "D"}},
    }, "no number is null, never NaN (not JSON) and never a silent zero"
    assert retained(mosquitto.port, "plume/test-site/status") == b"offline", "a clean stop says offline"


async def test_mqtt5_and_a_custom_prefix(tmp_path: Path, mosquitto: Mosquitto) -> None:
    c = MqttCollector(mosquitto.port, "site-data/#", client_id="v5-collector")
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["broker"])
    for i in range(20):
        log.append(reading("d1", T0 + i))
    await log.flush()
    sink = MqttSink(mqtt_cfg(mosquitto.port, protocol=5, topic_prefix="site-data", inflight=3), "test-site", log)
    task = asyncio.create_task(sink.run())
    try:
        await until(lambda: sink.consumer.acked == 20, what="PUBACKs over MQTT 5")
        wait_for(lambda: len(c.data()) == 20, 5, "twenty messages")
        assert [m["seq"] for m in c.data()] == list(range(1, 21))
        assert {t for t, _, _ in c.snapshot() if t.endswith("/data")} == {"site-data/test-site/d1/data"}
    finally:
        log.begin_close()
        await asyncio.wait_for(task, 5)
        await log.close()
        c.close()


async def test_broker_down_for_a_while_everything_arrives_in_order(tmp_path: Path, mosquitto: Mosquitto,
                                                                   collector: MqttCollector) -> None:
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig(commit_interval_ms=20))
    await log.open(["broker"])
    committer = asyncio.create_task(log.run())
    sink = MqttSink(mqtt_cfg(mosquitto.port), "test-site", log)
    task = asyncio.create_task(sink.run())
    try:
        log.append(reading("d0", T0))
        await until(lambda: sink.consumer.acked == 1, what="the first PUBACK")
        mosquitto.stop()  # SIGTERM: the broker saves the collector's persistent session
        for i in range(1, 301):
            log.append(reading(f"d{i % 3}", T0 + i * 10))
        await until(lambda: not sink.status.connected and sink.status.failures >= 1, what="the sink to notice")
        assert sink.consumer.acked == 1
        mosquitto.start()
        await until(lambda: sink.consumer.acked == 301, what="the backlog after the restart")
    finally:
        log.begin_close()
        await asyncio.wait_for(task, 10)
        committer.cancel()
        await log.close()
    assert sink.status.reconnects >= 1
    wait_for(lambda: {m["seq"] for m in collector.data() if m["device"] == "d1"} == set(range(1, 101)), 10,
             "every message of d1")
    for dev in ("d0", "d1", "d2"):
        seen: list[int] = []
        for m in collector.data():
            if m["device"] == dev and m["seq"] not in seen:
                seen.append(m["seq"])  # a duplicate (re-sent after the outage) is dropped by its seq
        assert seen == sorted(seen), f"{dev}: messages out of order"
        assert len(seen) == (101 if dev == "d0" else 100)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, TlsFiles]]:
    need("mosquitto")
    need("openssl")
    tls = make_tls(tmp_path / "tls")
    m = Mosquitto(tmp_path / "tls-broker", tls=tls, passwd=make_passwd(tmp_path, "plume", PASSWORD))
    m.start()
    yield m, tls
    m.stop()


async def test_tls_with_the_right_password_delivers(tmp_path: Path, tls_broker: tuple[Mosquitto, TlsFiles]) -> None:
    broker, tls = tls_broker
    c = MqttCollector(broker.port, "plume/#", client_id="tls-collector", tls=tls, username="plume", password=PASSWORD)
    cfg = mqtt_cfg(broker.port, username="plume", tls={"ca_file": str(tls.ca)})
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["broker"])
    for i in range(10):
        log.append(reading("d1", T0 + i))
    await log.flush()
    sink = MqttSink(cfg, "test-site", log, password=PASSWORD, tls=tls_context(cfg))
    task = asyncio.create_task(sink.run())
    try:
        await until(lambda: sink.consumer.acked == 10, what="PUBACKs over TLS")
        wait_for(lambda: len(c.data()) == 10, 5, "ten messages")
    finally:
        log.begin_close()
        await asyncio.wait_for(task, 5)
        await log.close()
        c.close()


@pytest.mark.parametrize("case", ["wrong password", "wrong CA"])
async def test_tls_with_wrong_credentials_fails_with_a_clear_line(
    tmp_path: Path, tls_broker: tuple[Mosquitto, TlsFiles], caplog: pytest.LogCaptureFixture, case: str
) -> None:
    broker, tls = tls_broker
    other_ca = make_tls(tmp_path / "other-ca") if case == "wrong CA" else tls
    cfg = mqtt_cfg(broker.port, username="plume", tls={"ca_file": str(other_ca.ca)})
    wrong = "not-" + PASSWORD
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["broker"])
    log.append(reading("d1", T0))
    await log.flush()
    sink = MqttSink(cfg, "test-site", log, password=PASSWORD if case == "wrong CA" else wrong,
                    tls=tls_context(cfg))
    caplog.set_level(logging.DEBUG, "plume")
    task = asyncio.create_task(sink.run())
    try:
        await until(lambda: sink.status.failures >= 3, what="three failed connection attempts")
    finally:
        log.begin_close()
        await asyncio.wait_for(task, 5)
        await log.close()
    assert sink.consumer.acked == 0 and sink.consumer.delivered == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, f"one ERROR line for the outage, repeats are quiet: {errors}"
    expected = ("broker refused the connection: Not authorized (check username and password)"
                if case == "wrong password" else "TLS handshake failed: ")
    assert f"mqtt[broker] 127.0.0.1:{broker.port}: {expected}" in errors[0]
    assert not any(PASSWORD in r.getMessage() for r in caplog.records)


def test_the_status_topic_turns_offline_when_the_gateway_dies(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The last will: a gateway killed with SIGKILL (or a dead 4G link) shows as offline."""
    import subprocess
    import sys

    code = f"""
import asyncio, sys
from pathlib import Path
from gateway.sinks.config import MqttSinkConfig
from gateway.sinks.mqtt import MqttSink
from gateway.store.log import DurableLog
async def main():
    log = DurableLog(Path({str(tmp_path / 'log.sqlite')!r}))
    await log.open(["broker"])
    cfg = MqttSinkConfig(type="mqtt", name="broker", host="127.0.0.1", port={mosquitto.port})
    sink = MqttSink(cfg, "test-site", log)
    asyncio.get_running_loop().call_later(0.3, lambda: print("up", flush=True))
    await sink.run()
asyncio.run(main())
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
        wait_for(lambda: retained(mosquitto.port, "plume/test-site/status") == b"online", 10, "online")
        proc.kill()
        proc.wait()
        wait_for(lambda: retained(mosquitto.port, "plume/test-site/status") == b"offline", 10, "the will")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
