"""The NATS reference deployment (deploy/central/nats/) as shipped: the three node configs, turned to loopback
ports and temp paths only, form a TLS cluster; a gateway's MQTT sink delivers through it and the central consumer
(ingest.py, by default a durable JetStream pull consumer) writes its readings into a real InfluxDB 1.6; the
per-site authorization keeps another site's forged reading out. A node killed under a running ingest, the node
the ingest is connected to hanging, and a consumer that stops delivering while it has readings pending: every
reading the gateway got a PUBACK for still reaches the database. (The kill-a-node run at fleet scale is the
benchmark tests/bench/bench_fleet_nats.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import nats
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
from jsconsumer import consumer_config, ensure_consumer  # noqa: E402

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
        self.monitor = [free_port() for _ in range(3)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def config(self, i: int) -> str:
        """deploy/central/nats/nats-{i}.conf with only addresses and paths changed."""
        text = (NATS / f"nats-{i}.conf").read_text()
        for old, new in {
            "/etc/nats/server.crt": str(self.tls.cert), "/etc/nats/server.key": str(self.tls.key),
            "/etc/nats/ca.crt": str(self.tls.ca), "/var/lib/nats/jetstream": str(self.folder / f"js{i}"),
            "0.0.0.0:4222": f"127.0.0.1:{self.client[i - 1]}", "0.0.0.0:8883": f"127.0.0.1:{self.mqtt[i - 1]}",
            "0.0.0.0:6222": f"127.0.0.1:{self.route[i - 1]}", "127.0.0.1:8222": f"127.0.0.1:{self.monitor[i - 1]}",
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

    def node_of_connection(self, name: str) -> int:
        """Index of the node a NATS client connection named `name` is on (the nodes' monitoring /connz)."""
        for i, port in enumerate(self.monitor):
            if self.procs[i].poll() is not None:
                continue
            with contextlib.suppress(httpx.HTTPError):
                conns = httpx.get(f"http://127.0.0.1:{port}/connz", timeout=2).json().get("connections") or []
                if any(c.get("name") == name for c in conns):
                    return i
        raise AssertionError(f"no node has a connection named {name!r}")

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)  # a node a test froze
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


# --- the consumer under faults ----------------------------------------------------------------------------------

INGEST_NAME = "plume-ingest-test"


def start_ingest(cluster: Cluster, influx: InfluxDB, out: Path, *flags: str) -> subprocess.Popen[bytes]:
    servers = ",".join(f"tls://127.0.0.1:{p}" for p in cluster.client)
    proc = subprocess.Popen(
        [sys.executable, str(NATS / "ingest.py"), "--servers", servers, "--ca-file", str(cluster.tls.ca),
         "--password", INGEST_PASSWORD, "--create", "--linger-ms", "20", "--name", INGEST_NAME, *flags,
         "--write-url", f"{influx.url}/write?db=plume&precision=ms"],
        stdout=open(out, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    deadline = time.monotonic() + 60
    while "reading $MQTT_msgs" not in out.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
        time.sleep(0.1)
    return proc


def stop_ingest(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def jetstream(cluster: Cluster, call: Any) -> Any:
    """`await call(js)` through a node that is up, as the ingest user."""
    servers = [f"tls://127.0.0.1:{p}" for i, p in enumerate(cluster.client) if cluster.procs[i].poll() is None]
    nc = await nats.connect(servers, user="ingest", password=INGEST_PASSWORD,
                            tls=ssl.create_default_context(cafile=str(cluster.tls.ca)), allow_reconnect=False)
    try:
        return await call(nc.jetstream())
    finally:
        await nc.close()


class Gateway:
    """site-a's real MQTT sink on its durable log, the three nodes as broker and failover brokers."""

    def __init__(self, log: DurableLog, sink: MqttSink):
        self.log, self.sink, self.count = log, sink, 0

    async def add(self, n: int) -> None:
        for _ in range(n):
            self.log.append(DeviceReading("site-a", "dust-1", "dust", T0 + self.count,
                                          {"pm10": ChannelValue(40.0 + self.count, "ug/m3", Flag.N)}))
            self.count += 1
        await self.log.flush()

    async def delivered(self, timeout_s: float = 60) -> None:
        """Until the broker acknowledged every reading added (each one committed: on a quorum's disks)."""
        deadline = time.monotonic() + timeout_s
        while self.sink.consumer.acked < self.count:
            assert time.monotonic() < deadline, f"the gateway got {self.sink.consumer.acked} of {self.count} PUBACKs"
            await asyncio.sleep(0.05)


@asynccontextmanager
async def gateway(cluster: Cluster, folder: Path) -> AsyncIterator[Gateway]:
    cfg = MqttSinkConfig.model_validate({
        "type": "mqtt", "name": "central", "host": "127.0.0.1", "port": cluster.mqtt[0],
        "failover": [f"127.0.0.1:{cluster.mqtt[1]}", f"127.0.0.1:{cluster.mqtt[2]}"],
        "username": "site-a", "tls": {"ca_file": str(cluster.tls.ca)}, "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.5, "health_interval_s": 0, "timeout_s": 5,
    })
    log = DurableLog(folder / "log.sqlite", StoreConfig())
    await log.open(["central"])
    sink = MqttSink(cfg, "site-a", log, password=PASSWORDS["site-a"], tls=tls_context(cfg))
    task = asyncio.create_task(sink.run())
    try:
        yield Gateway(log, sink)
    finally:
        log.begin_close()
        await asyncio.wait_for(task, 10)
        await log.close()


async def in_database(influx: InfluxDB, n: int, out: Path, timeout_s: float = 60) -> None:
    """Until the database holds site-a's readings 0..n-1, each at its own timestamp with its own value."""
    want = [("site-a", T0 + i, 40.0 + i) for i in range(n)]
    deadline = time.monotonic() + timeout_s
    while (got := await asyncio.to_thread(points, influx)) != want:
        assert time.monotonic() < deadline, (f"{len(got)} of {n} readings in the database; missing "
                                             f"{sorted(set(want) - set(got))[:5]}...\n" + out.read_text()[-3000:])
        await asyncio.sleep(0.2)


def test_the_default_pull_ingest_loses_nothing_when_the_stream_leader_is_killed(
        cluster: Cluster, influx: InfluxDB, tmp_path: Path) -> None:
    out = tmp_path / "ingest.out"
    ingest = start_ingest(cluster, influx, out)

    async def scenario() -> Any:
        async with gateway(cluster, tmp_path) as gw:
            await gw.add(10)
            await gw.delivered()
            await in_database(influx, 10, out)
            leader = (await jetstream(cluster, lambda js: js.stream_info("$MQTT_msgs"))).cluster.leader
            victim = cluster.procs[int(leader.rsplit("-", 1)[-1]) - 1]  # server_name nats-N
            victim.kill()
            victim.wait()
            await gw.add(20)  # committed after the kill: on the two nodes left
            await gw.delivered()
        await in_database(influx, 30, out)
        return await jetstream(cluster, lambda js: js.consumer_info("$MQTT_msgs", "plume-ingest-pull"))

    try:
        info = asyncio.run(scenario())
    finally:
        stop_ingest(ingest)
    assert info.config.deliver_subject is None, "the default ingest reads a push consumer"
    assert info.num_pending == 0 and info.num_ack_pending == 0


def test_the_ingest_moves_off_a_hung_node_and_delivers_what_came_meanwhile(
        cluster: Cluster, influx: InfluxDB, tmp_path: Path) -> None:
    """The node the ingest is connected to stops answering (SIGSTOP: a hung machine, its TCP connections stay
    open, so the client library notices only after minutes of missed pings). The watchdog sees no delivery and no
    answer from the consumer, reconnects to another node, binds again; readings the gateway committed meanwhile
    (through the other nodes) reach the database."""
    out = tmp_path / "ingest.out"
    ingest = start_ingest(cluster, influx, out, "--stall-s", "2", "--ack-wait-s", "3")

    async def scenario() -> None:
        async with gateway(cluster, tmp_path) as gw:
            await gw.add(5)
            await gw.delivered()
            await in_database(influx, 5, out)
            os.kill(cluster.procs[cluster.node_of_connection(INGEST_NAME)].pid, signal.SIGSTOP)
            await gw.add(15)
            await gw.delivered()
        await in_database(influx, 20, out)

    try:
        asyncio.run(scenario())
    finally:
        stop_ingest(ingest)
    assert re.search(r"ingest: STALLED plume-ingest-pull recovered .* by reconnect\b", out.read_text()), \
        out.read_text()


def test_a_consumer_that_stops_delivering_is_recreated_at_its_ack_floor_and_nothing_pending_is_lost(
        cluster: Cluster, influx: InfluxDB, tmp_path: Path) -> None:
    """A consumer with readings pending that delivers nothing, the stall nats-server 2.9 showed after a node kill,
    made on purpose: a client takes 5 readings from the consumer and never acknowledges them, the consumer allows
    5 unacknowledged and waits an hour before redelivering, so it gives the ingest nothing. Binding again cannot
    help; the watchdog re-creates the consumer at its ack floor (a bridge consumer holding the interest meanwhile,
    or the stream would drop the pending readings), and every reading reaches the database."""
    out = tmp_path / "ingest.out"
    flags = ["--ack-wait-s", "3600", "--max-ack-pending", "5"]

    async def scenario() -> None:
        nc = await nats.connect([f"tls://127.0.0.1:{p}" for p in cluster.client], user="ingest",
                                password=INGEST_PASSWORD, tls=ssl.create_default_context(cafile=str(cluster.tls.ca)))
        js = nc.jetstream()
        await ensure_consumer(js, consumer_config(3600, 5, 3))  # what `ingest.py --create` + flags make
        async with gateway(cluster, tmp_path) as gw:
            await gw.add(20)
            await gw.delivered()
        thief = await js.pull_subscribe_bind(durable="plume-ingest-pull", stream="$MQTT_msgs")
        held = await thief.fetch(5, timeout=10)
        info = await js.consumer_info("$MQTT_msgs", "plume-ingest-pull")
        assert (len(held), info.num_ack_pending, info.num_pending) == (5, 5, 15)
        ingest = await asyncio.to_thread(start_ingest, cluster, influx, out, *flags, "--stall-s", "2")
        try:
            await in_database(influx, 20, out)
        finally:
            await asyncio.to_thread(stop_ingest, ingest)
            await nc.close()

    asyncio.run(scenario())
    text = out.read_text()
    assert re.search(r"ingest: STALLED: consumer plume-ingest-pull re-created at stream seq 1\n", text), text
    assert re.search(r"ingest: STALLED plume-ingest-pull recovered .* by re-bind \+ re-create\b", text), text
