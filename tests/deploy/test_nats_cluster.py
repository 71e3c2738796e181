"""The NATS reference deployment (deploy/central/nats/) as shipped: the three node configs, turned to loopback
ports and temp paths only, form a TLS cluster; a gateway's MQTT sink delivers through it and the central consumer
(ingest.py, a durable JetStream consumer joined as a queue group) writes its readings into a real InfluxDB 1.6;
the per-site authorization keeps another site's forged reading out. (The kill-a-node run at fleet scale is the
benchmark tests/bench/bench_fleet_nats.py.)"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.localservers import InfluxDB, free_port, make_tls, port_open
from gateway.sinks.config import MqttSinkConfig
from gateway.sinks.mqtt import MqttSink, tls_context
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog

from .helpers import DEPLOY, need

NATS = DEPLOY / "central" / "nats"
sys.path.insert(0, str(NATS))
from authz import authorization  # noqa: E402

PASSWORDS = {"site-a": "a-Pa55-word", "site-b": "b-Pa55-word"}
INGEST_PASSWORD = "ingest-Pa55-word"
T0 = 1_767_225_600_000


class Cluster:
    def __init__(self, folder: Path):
        self.folder = folder
        self.tls = make_tls(folder / "tls")
        (folder / "authorization.conf").write_text(authorization(PASSWORDS, INGEST_PASSWORD))
        self.client = [free_port() for _ in range(3)]
        self.mqtt = [free_port() for _ in range(3)]
        self.route = [free_port() for _ in range(3)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def config(self, i: int) -> str:
        """deploy/central/nats/nats-{i}.conf with only addresses and paths changed."""
        text = (NATS / f"nats-{i}.conf").read_text()
        for old, new in {
            "/etc/nats/server.crt": str(self.tls.cert), "/etc/nats/server.key": str(self.tls.key),
            "/etc/nats/ca.crt": str(self.tls.ca), "/var/lib/nats/jetstream": str(self.folder / f"js{i}"),
            "0.0.0.0:4222": f"127.0.0.1:{self.client[i - 1]}", "0.0.0.0:8883": f"127.0.0.1:{self.mqtt[i - 1]}",
            "0.0.0.0:6222": f"127.0.0.1:{self.route[i - 1]}", "127.0.0.1:8222": f"127.0.0.1:{free_port()}",
            "max_file_store: 50GB": "max_file_store: 1GB",
            "include nats/authorization.conf": "include authorization.conf",
        }.items():
            assert old in text, f"nats-{i}.conf no longer has {old!r}"
            text = text.replace(old, new)
        text, routes = re.subn(r"nats-route://nats-(\d)\.example\.com:6222",
                               lambda m: f"nats-route://127.0.0.1:{self.route[int(m.group(1)) - 1]}", text)
        assert routes == 2
        return text

    def start(self) -> None:
        for i in (1, 2, 3):
            conf = self.folder / f"nats-{i}.conf"
            conf.write_text(self.config(i))
            log = open(self.folder / f"nats-{i}.log", "wb")  # noqa: SIM115 - the server's whole life
            self.procs.append(subprocess.Popen(["nats-server", "-c", str(conf)], stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 20
        while not all(port_open(p) for p in self.client + self.mqtt):
            for i, p in enumerate(self.procs):
                assert p.poll() is None, (self.folder / f"nats-{i + 1}.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the cluster did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    need("nats-server")
    need("openssl")
    c = Cluster(tmp_path)
    c.start()
    yield c
    c.stop()


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxDB]:
    need("influxd")
    db = InfluxDB(tmp_path / "influx")
    db.start()
    db.create_db()
    yield db
    db.stop()


def points(influx: InfluxDB) -> list[tuple[str, int, float]]:
    try:
        series = influx.query('SELECT "pm10" FROM "dust" GROUP BY "site"')
    except RuntimeError:
        return []
    return sorted((s["tags"]["site"], v[0], v[1]) for s in series for v in s["values"])


def test_a_gateway_delivers_through_the_cluster_into_influxdb_and_a_forged_site_does_not(
        cluster: Cluster, influx: InfluxDB, tmp_path: Path) -> None:
    servers = ",".join(f"tls://127.0.0.1:{p}" for p in cluster.client)
    ingest = subprocess.Popen(
        [sys.executable, str(NATS / "ingest.py"), "--servers", servers, "--ca-file", str(cluster.tls.ca),
         "--password", INGEST_PASSWORD, "--create", "--linger-ms", "20",
         "--write-url", f"{influx.url}/write?db=plume&precision=ms"],
        stdout=open(tmp_path / "ingest.out", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        deadline = time.monotonic() + 60
        while "reading $MQTT_msgs" not in (tmp_path / "ingest.out").read_text():
            assert ingest.poll() is None and time.monotonic() < deadline, (tmp_path / "ingest.out").read_text()
            time.sleep(0.1)

        # site-b: a reading forged under site-a, then one of its own, on one connection (handled in order)
        forger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="site-b")
        forger.username_pw_set("site-b", PASSWORDS["site-b"])
        forger.tls_set_context(ssl.create_default_context(cafile=str(cluster.tls.ca)))
        forger.connect("127.0.0.1", cluster.mqtt[1])
        forger.loop_start()
        forged = {"v": 1, "site": "site-a", "device": "dust-1", "kind": "dust", "seq": 99, "ts": T0 + 99,
                  "ok": True, "values": {"pm10": {"value": 999.0, "unit": "ug/m3", "flag": "N"}}}
        own = dict(forged, site="site-b", seq=1, ts=T0 + 50, values={"pm10": {"value": 7.0, "unit": "ug/m3",
                                                                             "flag": "N"}})
        forger.publish("plume/site-a/dust-1/data", json.dumps(forged), qos=1).wait_for_publish(30)
        forger.publish("plume/site-b/dust-1/data", json.dumps(own), qos=1).wait_for_publish(30)
        forger.disconnect()
        forger.loop_stop()

        async def run_gateway() -> None:
            cfg = MqttSinkConfig.model_validate({
                "type": "mqtt", "name": "central", "host": "127.0.0.1", "port": cluster.mqtt[0],
                "failover": [f"127.0.0.1:{cluster.mqtt[1]}", f"127.0.0.1:{cluster.mqtt[2]}"],
                "username": "site-a", "tls": {"ca_file": str(cluster.tls.ca)}, "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.5, "health_interval_s": 0,
            })
            log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
            await log.open(["central"])
            for i in range(5):
                log.append(DeviceReading("site-a", "dust-1", "dust", T0 + i,
                                         {"pm10": ChannelValue(40.0 + i, "ug/m3", Flag.N)}))
            await log.flush()
            sink = MqttSink(cfg, "site-a", log, password=PASSWORDS["site-a"], tls=tls_context(cfg))
            task = asyncio.create_task(sink.run())
            try:
                while sink.consumer.acked < 5:
                    assert not task.done(), task
                    assert time.monotonic() < deadline, "the gateway did not deliver"
                    await asyncio.sleep(0.02)
            finally:
                log.begin_close()
                await asyncio.wait_for(task, 10)
                await log.close()

        deadline = time.monotonic() + 60
        asyncio.run(run_gateway())

        want = [("site-a", T0 + i, 40.0 + i) for i in range(5)] + [("site-b", T0 + 50, 7.0)]
        # site-b's own reading came after the forged one on the same connection: once it is in, so would the
        # forged one be had the broker let it through
        while (got := points(influx)) != want:
            assert ("site-a", T0 + 99, 999.0) not in got, "site-b published under site-a"
            assert time.monotonic() < deadline, (got, (tmp_path / "ingest.out").read_text())
            time.sleep(0.1)
    finally:
        ingest.terminate()
        ingest.wait(timeout=30)
    assert "written" in (tmp_path / "ingest.out").read_text()
