"""The fleet broker config (deploy/mosquitto/) on a real Mosquitto: TLS only, per-gateway credentials from
add-gateway.sh, and the ACL — a gateway publishes under its own site only, Telegraf reads everything and writes
nothing, several Telegraf instances share the load with `$share/plume-ingest/...`."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.sinks.config import MqttSinkConfig
from gateway.sinks.contract import data_topic, health_topic, status_topic
from gateway.sinks.mqtt import MqttSink, tls_context
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog

from .fleet import Client, FleetBroker, add_gateway, generated_password, wait_until
from .helpers import DEPLOY, need

INGEST_PASSWORD = "ingest-Pa55-word"
OPS_PASSWORD = "ops-Pa55-word"
SHARED = "$share/plume-ingest/plume/+/+/data"


def start_broker(folder: Path) -> FleetBroker:
    for tool in ("mosquitto", "mosquitto_passwd", "openssl"):
        need(tool)
    b = FleetBroker(folder)
    b.add_site("site-a")
    b.add_site("site-b")
    b.add_service("telegraf", INGEST_PASSWORD)
    b.add_service("dashboard", "dash-Pa55-word")
    b.add_operator("ops-li", OPS_PASSWORD, ["site-a"])
    b.start()
    return b


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetBroker]:
    """One broker for the tests that only connect, publish and subscribe (each with its own client ids)."""
    b = start_broker(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def connect(broker: FleetBroker, clients: list[Client], user: str | None, password: str | None = None,
            **kw: object) -> Client:
    c = Client(broker, user, password if password is not None else broker.passwords.get(user or ""), **kw)  # type: ignore[arg-type]
    clients.append(c)
    return c


def test_a_gateway_publishes_under_its_own_site_only(broker: FleetBroker, clients: list[Client]) -> None:
    ingest = connect(broker, clients, "telegraf")
    assert ingest.accepted
    assert not ingest.subscribe("plume/#").is_failure
    site_a = connect(broker, clients, "site-a")
    assert site_a.accepted

    assert not site_a.publish("plume/site-a/dust-1/data", b"mine").is_failure
    refused = site_a.publish("plume/site-b/dust-1/data", b"forged")
    assert refused.is_failure and refused.getName() == "Not authorized"
    assert site_a.publish("plume/site-a-extra/dust-1/data", b"prefix trick").is_failure
    assert site_a.publish("elsewhere/site-a", b"outside plume/").is_failure
    assert not site_a.publish("plume/site-a/dust-1/data", b"marker").is_failure

    # One publisher's messages arrive in order: once the marker is in, the forged ones would have been too.
    wait_until(lambda: (b"marker" in [p for _, p in ingest.snapshot()]), 5, "the marker")
    assert ingest.snapshot() == [("plume/site-a/dust-1/data", b"mine"), ("plume/site-a/dust-1/data", b"marker")]


def test_a_gateway_reads_its_own_command_topics_and_nothing_else(broker: FleetBroker, clients: list[Client]) -> None:
    # Mosquitto 2 grants any SUBSCRIBE and applies `read` to each message it would deliver: what counts is what
    # arrives. site-a subscribes wide; only its own command topic may reach it.
    site_a = connect(broker, clients, "site-a")
    for topic in ("plume/site-a/cmd/#", "plume/site-b/cmd/#", "plume/+/+/data", "#"):
        site_a.subscribe(topic)
    site_b = connect(broker, clients, "site-b")
    assert not site_b.publish("plume/site-b/cmd/reboot", b"not for site-a").is_failure
    assert not site_b.publish("plume/site-b/dust-1/data", b"site-b data").is_failure
    assert not site_a.publish("plume/site-a/dust-1/data", b"its own data").is_failure
    # The broker routes on receipt, in order: site-b's messages were queued for site-a before this one.
    assert not site_a.publish("plume/site-a/cmd/marker", b"marker").is_failure
    wait_until(lambda: any(p == b"marker" for _, p in site_a.snapshot()), 5, "the command marker")
    # (Overlapping subscriptions may each deliver the marker.)
    assert set(site_a.snapshot()) == {("plume/site-a/cmd/marker", b"marker")}


def test_the_gateways_own_topics_and_last_will_pass_the_acl(broker: FleetBroker, clients: list[Client],
                                                             tmp_path: Path) -> None:
    """The real MQTT sink, as a gateway of site-a over TLS: data, retained status and health all arrive."""
    ingest = connect(broker, clients, "telegraf")
    ingest.subscribe("plume/#")

    async def run_gateway() -> MqttSink:
        cfg = MqttSinkConfig.model_validate({
            "type": "mqtt", "name": "fleet", "host": "127.0.0.1", "port": broker.port, "username": "site-a",
            "tls": {"ca_file": str(broker.ca)}, "reconnect_min_s": 0.05, "reconnect_max_s": 0.3,
            "health_interval_s": 0.2,
        })
        log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
        await log.open(["fleet"])
        for i in range(5):
            log.append(DeviceReading("site-a", "dust-1", "dust", 1_767_225_600_000 + i,
                                     {"pm10": ChannelValue(40.0 + i, "ug/m3", Flag.N)}))
        await log.flush()
        sink = MqttSink(cfg, "site-a", log, password=broker.passwords["site-a"], tls=tls_context(cfg))

        async def health() -> dict[str, object]:
            return {"ok": True}

        sink.set_health(health, 0.2)
        task = asyncio.create_task(sink.run())
        try:
            deadline = asyncio.get_running_loop().time() + 15
            while sink.consumer.acked < 5 or not any(t.endswith("/health") for t, _ in ingest.snapshot()):
                assert asyncio.get_running_loop().time() < deadline, "the gateway did not deliver"
                await asyncio.sleep(0.02)
        finally:
            log.begin_close()
            await asyncio.wait_for(task, 10)
            await log.close()
        return sink

    asyncio.run(run_gateway())
    topics = [t for t, _ in ingest.snapshot()]
    assert topics.count(data_topic("plume", "site-a", "dust-1")) == 5
    assert status_topic("plume", "site-a") in topics and health_topic("plume", "site-a") in topics
    seqs = [json.loads(p)["seq"] for t, p in ingest.snapshot() if t.endswith("/data")]
    assert seqs == [1, 2, 3, 4, 5]


def test_ingest_and_dashboard_users_read_but_never_write(broker: FleetBroker, clients: list[Client]) -> None:
    for user in ("telegraf", "dashboard"):
        c = connect(broker, clients, user)
        assert c.accepted
        assert not c.subscribe("plume/#").is_failure
        assert c.publish("plume/site-a/dust-1/data", b"forged").is_failure
        assert c.publish(f"plume/{user}/dust-1/data", b"own subtree").is_failure, "the deny line"


@pytest.mark.parametrize("who", ["anonymous", "wrong password", "unknown user"])
def test_connections_without_valid_credentials_are_refused(broker: FleetBroker, clients: list[Client],
                                                            who: str) -> None:
    user, password = {"anonymous": (None, None), "wrong password": ("site-a", "guess"),
                      "unknown user": ("site-z", "guess")}[who]
    c = connect(broker, clients, user, password)
    assert c.connack is not None and c.connack.is_failure
    assert c.connack.getName() in ("Not authorized", "Bad user name or password")


def test_plain_tcp_to_the_tls_port_gets_no_mqtt_answer(broker: FleetBroker) -> None:
    # A bare MQTT 3.1.1 CONNECT (client id "p"); a TLS listener answers with an alert or closes, never a CONNACK.
    connect_packet = bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 1]) + b"p"
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
        s.sendall(connect_packet)
        try:
            answer = s.recv(64)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"\x20"), f"got a CONNACK over plain TCP: {answer!r}"


def test_shared_subscription_splits_the_stream_between_telegraf_instances(broker: FleetBroker,
                                                                          clients: list[Client]) -> None:
    """Telegraf's mqtt_consumer speaks MQTT 3.1.1; Mosquitto honours `$share/` for 3.1.1 clients too."""
    instances = [connect(broker, clients, "telegraf", client_id=f"telegraf-{i}", v5=False) for i in range(2)]
    for inst in instances:
        assert inst.accepted and not inst.subscribe(SHARED).is_failure
    site_a = connect(broker, clients, "site-a")
    sent = [f"m{i}".encode() for i in range(20)]
    for payload in sent:
        site_a.publish("plume/site-a/dust-1/data", payload)
    site_a.publish("plume/site-a/health", b"not data")
    wait_until(lambda: sum(len(i.snapshot()) for i in instances) >= len(sent), 5, "20 messages")
    got = [[p for _, p in inst.snapshot()] for inst in instances]
    assert all(got), f"each instance takes a share: {[len(g) for g in got]}"
    assert sorted(got[0] + got[1]) == sorted(sent), "every message exactly once, no health message"


@pytest.mark.parametrize("forged", ["site-b", "plume-site-b-fleet"])
def test_a_site_cannot_take_another_sites_client_id(broker: FleetBroker, clients: list[Client], forged: str) -> None:
    """A client id is one per broker: a new connection with one in use disconnects the old session (and publishes
    its last will). Site A's valid login asking for site B's client id must not do that to B's gateway."""
    watcher = connect(broker, clients, "dashboard")
    watcher.subscribe("plume/site-b/status")
    site_b = connect(broker, clients, "site-b", client_id=forged, will=("plume/site-b/status", b"offline"))
    assert site_b.accepted
    assert not site_b.publish("plume/site-b/status", b"online").is_failure
    intruder = connect(broker, clients, "site-a", client_id=forged)
    assert intruder.accepted, "a valid login is accepted, as site-a's own client"
    assert intruder.publish("plume/site-b/status", b"offline").is_failure, "and stays site-a"
    # round trips on both sessions: had the broker dropped site-b, it would have happened by now
    assert not intruder.publish("plume/site-a/status", b"online").is_failure
    assert not site_b.publish("plume/site-b/status", b"online").is_failure
    assert not site_b.disconnected.is_set(), "site-b's gateway was knocked off"
    wait_until(lambda: watcher.snapshot().count(("plume/site-b/status", b"online")) >= 2, 5, "site-b's status")
    assert ("plume/site-b/status", b"offline") not in watcher.snapshot(), "site-b's last will was published"


def test_a_gateway_account_cannot_log_in_on_the_services_listener(broker: FleetBroker, clients: list[Client]) -> None:
    c = connect(broker, clients, "site-a", client_id="site-b", port=broker.services_port)
    assert c.connack is not None and c.connack.is_failure


def test_the_gateways_default_client_id_is_its_username(tmp_path: Path) -> None:
    async def client_ids() -> list[str]:
        log = DurableLog(tmp_path / "log.sqlite")
        await log.open(["fleet"])
        try:
            out = []
            for extra in ({"username": "site-a"}, {}, {"username": "site-a", "client_id": "mine"}):
                cfg = MqttSinkConfig.model_validate({"type": "mqtt", "name": "fleet", "host": "127.0.0.1",
                                                     "port": 8883, **extra})
                out.append(MqttSink(cfg, "site-a", log, password="x").client_id)
            return out
        finally:
            await log.close()

    assert asyncio.run(client_ids()) == ["site-a", "plume-site-a-fleet", "mine"]


def test_an_operator_writes_the_command_topics_of_its_sites_only(broker: FleetBroker, clients: list[Client]) -> None:
    site_a = connect(broker, clients, "site-a")
    site_a.subscribe("plume/site-a/cmd/#")
    ops = connect(broker, clients, "ops-li")
    assert ops.accepted
    ack = b'{"alarm_id": "x", "by": "officer li"}'
    assert not ops.publish("plume/site-a/cmd/ack", ack).is_failure
    assert ops.publish("plume/site-b/cmd/ack", ack).is_failure, "not its site"
    assert ops.publish("plume/site-a/dust-1/data", b"forged").is_failure, "commands only"
    assert ops.publish("plume/site-a/status", b"offline").is_failure, "commands only"
    wait_until(lambda: ("plume/site-a/cmd/ack", ack) in site_a.snapshot(), 5, "the acknowledgement at site-a")
    assert not ops.subscribe("plume/site-a/#").is_failure


def test_add_gateway_writes_and_rewrites_an_operators_acl_block(tmp_path: Path) -> None:
    need("mosquitto_passwd")
    acl = tmp_path / "acl"
    acl.write_bytes((DEPLOY / "mosquitto/acl").read_bytes())
    passwd = tmp_path / "passwd-services"
    assert "must start with ops-" in add_gateway(passwd, "--operator", "li", "--site", "a").stderr
    assert "which sites" in add_gateway(passwd, "--operator", "ops-li").stderr
    assert "reserved for operator" in add_gateway(tmp_path / "passwd", "ops-x").stderr
    for sites in (["site-a", "site-b"], ["site-c"]):
        args = [a for s in sites for a in ("--site", s)]
        ok = add_gateway(passwd, "--operator", "ops-li", *args, "--acl", str(acl), password="ops-Pa55")
        assert ok.returncode == 0, ok.stderr
    text = acl.read_text()
    assert text.count("user ops-li") == 1 and "topic write plume/site-c/cmd/#" in text
    assert "plume/site-a/" not in text, "the block was rewritten, not appended to"
    assert add_gateway(passwd, "--operator", "ops-li", "--remove", "--acl", str(acl)).returncode == 0
    assert "ops-li" not in acl.read_text().replace("ops-NAME", "")


def test_rotating_a_password_takes_effect_at_reload(tmp_path: Path, clients: list[Client]) -> None:
    broker = start_broker(tmp_path / "broker")
    try:
        rotate(broker, clients)
    finally:
        broker.stop()


def rotate(broker: FleetBroker, clients: list[Client]) -> None:
    old = broker.passwords["site-a"]
    proc = add_gateway(broker.passwd, "site-a")
    assert proc.returncode == 0
    new = generated_password(proc.stdout)
    assert new != old and len(new) >= 24
    broker.reload()
    assert connect(broker, clients, "site-a", new).accepted
    assert not connect(broker, clients, "site-a", old).accepted


def test_add_gateway_validates_names_and_never_puts_the_password_on_the_command_line(tmp_path: Path) -> None:
    need("mosquitto_passwd")
    passwd = tmp_path / "passwd"
    assert "not valid" in add_gateway(passwd, "bad/site").stderr
    assert "not valid" in add_gateway(passwd, "+").stderr
    assert "service account name" in add_gateway(passwd, "telegraf").stderr
    assert "unknown service account" in add_gateway(passwd, "--service", "root").stderr
    ok = add_gateway(passwd, "site-001")
    assert ok.returncode == 0
    assert oct(passwd.stat().st_mode & 0o777) == "0o640"
    line = passwd.read_text().strip()
    assert line.startswith("site-001:$7$"), "hashed (sha512-pbkdf2), never plain"
    assert generated_password(ok.stdout) not in passwd.read_text()
    script = (DEPLOY / "mosquitto/add-gateway.sh").read_text()
    assert '| mosquitto_passwd "$PASSWD" "$NAME"' in script and "mosquitto_passwd -b" not in script
    removed = add_gateway(passwd, "--remove", "site-001")
    assert removed.returncode == 0 and passwd.read_text().strip() == ""


def test_scripts_pass_shellcheck() -> None:
    shellcheck = need("shellcheck")
    scripts = [DEPLOY / "install.sh", DEPLOY / "mosquitto/add-gateway.sh", *sorted(DEPLOY.glob("docker/**/*.sh"))]
    proc = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_the_shipped_brokers_confirm_at_once() -> None:
    """Both broker configurations we ship turn Nagle off (set_tcp_nodelay, a global option; the broker tests start
    Mosquitto with these files, so it also has to be one Mosquitto accepts). Without it the PUBACKs of the last
    messages of a gateway's burst waited for the gateway's delayed TCP ACKs, ~40 ms a step: the loads benchmark's
    poll-to-PUBACK p95 at 10,000 values/s was 98 ms, 19-21 ms with it (speed is measured by the benchmark, not here)."""
    for conf in (DEPLOY / "mosquitto/plume.conf", DEPLOY / "docker/mosquitto/mosquitto.conf"):
        lines = [ln.split("#", 1)[0].split() for ln in conf.read_text().splitlines()]
        assert ["set_tcp_nodelay", "true"] in lines, conf
