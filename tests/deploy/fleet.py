"""The fleet broker of deploy/mosquitto/ as the tests run it: the shipped plume.conf and acl, credentials made
by add-gateway.sh, a CA and a server certificate made with openssl, on a free loopback port.

Only what cannot be the same on a test machine is rewritten in a temporary copy of plume.conf: the folder of the
certificate, password and ACL files, the listeners' ports (gateways, services; bound to 127.0.0.1), and
`user root` / `log_dest stderr` / `persistence false` appended (as root, Mosquitto would otherwise drop to user
mosquitto before reading the key).
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.localservers import free_port, port_open
from tests.pipeline.servers import wait_for

from .helpers import DEPLOY

__all__ = ["free_port", "port_open", "wait_until"]

CONF_DIR = "/etc/mosquitto/plume/"
ADD_GATEWAY = DEPLOY / "mosquitto/add-gateway.sh"


def wait_until(cond: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    return wait_for(cond, timeout, what, interval=0.01)


def make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for localhost/127.0.0.1 signed by it: (ca.crt, server.crt, server.key)."""
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(ca_key), "-out", str(ca),
        "-subj", "/CN=Plume test fleet CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
        "-out", str(cert), "-extfile", str(ext))
    return ca, cert, key


def add_gateway(passwd: Path, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("PLUME_MQTT_PASSWORD", None)
    if password is not None:
        env["PLUME_MQTT_PASSWORD"] = password
    return subprocess.run(["bash", str(ADD_GATEWAY), "--passwd", str(passwd), *args], capture_output=True,
                          text=True, env=env, timeout=30)


def generated_password(out: str) -> str:
    for line in out.splitlines():
        if "PLUME_MQTT_PASSWORD=" in line:
            return line.split("PLUME_MQTT_PASSWORD=", 1)[1].strip()
    raise AssertionError(f"no password in: {out}")


@dataclass
class FleetBroker:
    folder: Path
    port: int = field(default_factory=free_port)  # the gateways' listener (8883)
    services_port: int = field(default_factory=free_port)  # Telegraf, dashboards, operators (8884)
    passwords: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ca, self.cert, self.key = make_ca_and_server_cert(self.folder)
        self.passwd = self.folder / "passwd"
        self.passwd_services = self.folder / "passwd-services"
        self.services: set[str] = set()
        (self.folder / "acl").write_bytes((DEPLOY / "mosquitto/acl").read_bytes())
        text = (DEPLOY / "mosquitto/plume.conf").read_text()
        assert "listener 8883\n" in text and "listener 8884\n" in text and CONF_DIR in text
        text = text.replace(CONF_DIR, f"{self.folder}/").replace("listener 8883\n", f"listener {self.port} 127.0.0.1\n")
        text = text.replace("listener 8884\n", f"listener {self.services_port} 127.0.0.1\n")
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text(text + "\nuser root\nlog_dest stderr\npersistence false\n")
        self.log_path = self.folder / "mosquitto.log"

    def add_site(self, site: str) -> str:
        proc = add_gateway(self.passwd, site)
        assert proc.returncode == 0, proc.stderr
        self.passwords[site] = generated_password(proc.stdout)
        return self.passwords[site]

    def add_service(self, name: str, password: str) -> None:
        proc = add_gateway(self.passwd_services, "--service", name, password=password)
        assert proc.returncode == 0, proc.stderr
        self.passwords[name] = password
        self.services.add(name)

    def add_operator(self, name: str, password: str, sites: list[str]) -> None:
        args = [a for s in sites for a in ("--site", s)]
        proc = add_gateway(self.passwd_services, "--operator", name, *args, "--acl", str(self.folder / "acl"),
                           password=password)
        assert proc.returncode == 0, proc.stderr
        self.passwords[name] = password
        self.services.add(name)

    def port_for(self, username: str | None) -> int:
        """Services and operators log in on their own listener; gateways (and strangers) on the gateways'."""
        return self.services_port if username in self.services else self.port

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not (port_open(self.port) and port_open(self.services_port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start: {self.log_path.read_text(errors='replace')}")
            time.sleep(0.01)

    def reload(self) -> None:
        """SIGHUP, as `systemctl reload mosquitto` does: password file and ACL are read again."""
        assert self.proc is not None
        before = self.log_path.read_text(errors="replace").count("Reloading config")
        os.kill(self.proc.pid, signal.SIGHUP)
        wait_until(lambda: self.log_path.read_text(errors="replace").count("Reloading config") > before, 5,
                   "mosquitto to reload")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


class Client:
    """A paho-mqtt client (MQTT 5 by default, so the broker's refusals come back as reason codes)."""

    def __init__(self, broker: FleetBroker, username: str | None, password: str | None, *, client_id: str = "",
                 v5: bool = True, tls: bool = True, clean: bool = True, port: int | None = None,
                 will: tuple[str, bytes] | None = None):
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        kwargs: dict[str, Any] = {} if v5 else {"clean_session": clean}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{time.monotonic_ns()}",
                             protocol=proto, reconnect_on_failure=False, **kwargs)
        if tls:
            self.c.tls_set_context(broker.tls_context())
        if username is not None:
            self.c.username_pw_set(username, password)
        if will is not None:
            self.c.will_set(will[0], will[1], qos=1, retain=True)
        self.disconnected = threading.Event()
        self.c.on_disconnect = lambda *a: self.disconnected.set()
        self.connack: Any = None
        self.connected = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.puback: dict[int, Any] = {}
        self.suback: dict[int, list[Any]] = {}
        self._lock = threading.Lock()
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        if port is None:  # (a stand-in broker with just a port: test_compose)
            port = broker.port_for(username) if isinstance(broker, FleetBroker) else broker.port
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        self.connected.wait(10)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        self.connack = reason
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any = None) -> None:
        with self._lock:
            self.puback[mid] = reason

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any = None) -> None:
        with self._lock:
            self.suback[mid] = list(reasons)

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def publish(self, topic: str, payload: bytes = b"x", qos: int = 1) -> Any:
        """Publish and wait for the broker's PUBACK; its reason code (Success, or Not authorized)."""
        info = self.c.publish(topic, payload, qos=qos)
        return wait_until(lambda: self.puback.get(info.mid), 5, f"PUBACK for {topic}")

    def subscribe(self, topic: str, qos: int = 1) -> Any:
        """Subscribe and wait for the SUBACK; the granted QoS or the refusal."""
        _, mid = self.c.subscribe(topic, qos=qos)
        return wait_until(lambda: self.suback.get(mid), 5, f"SUBACK for {topic}")[0]

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.c.disconnect()
        self.c.loop_stop()
