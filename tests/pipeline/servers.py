"""Real servers for the pipeline tests: Mosquitto, InfluxDB 1.6 (v1 API), VictoriaMetrics (v2 write API).

Each runs from a temp folder on a free loopback port, is started as a child process and stopped by its pid;
`stop()` + `start()` restarts it on the same port with the same data (the outage tests). Usable from the
benchmark too (no pytest import here).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from gateway.localservers import InfluxDB as _InfluxDB
from gateway.localservers import Mosquitto, Server, TlsFiles, free_port, loopback_http, make_passwd, make_tls, port_open

__all__ = ["InfluxDB", "Mosquitto", "MqttCollector", "Server", "TlsFiles", "VictoriaMetrics", "free_port", "have",
           "loopback_http", "make_passwd", "make_tls", "port_open", "wait_for"]


def wait_for(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition", interval: float = 0.02) -> Any:
    """Poll `cond` until it returns something truthy (returned) or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class InfluxDB(_InfluxDB):
    """InfluxDB 1.6 with the read-back helpers the tests use."""

    def rows(self, measurement: str, db: str = "plume", where: str = "") -> list[dict[str, Any]]:
        """Every point of a measurement as dicts (time, tags and fields)."""
        out: list[dict[str, Any]] = []
        w = f" WHERE {where}" if where else ""
        for s in self.query(f'SELECT * FROM "{measurement}"{w}', db):
            for v in s["values"]:
                out.append(dict(zip(s["columns"], v, strict=True)))
        return out

    def count(self, measurement: str, field: str, db: str = "plume", where: str = "") -> int:
        w = f" WHERE {where}" if where else ""
        series = self.query(f'SELECT count("{field}") FROM "{measurement}"{w}', db)
        return int(series[0]["values"][0][1]) if series else 0



class VictoriaMetrics(Server):
    binary = "victoria-metrics"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return ["victoria-metrics", f"-storageDataPath={self.folder}/data", f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=100y", "-search.latencyOffset=0s", "-loggerLevel=ERROR"]

    def ready(self) -> bool:
        try:
            return loopback_http().get(f"{self.url}/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def export(self, match: str) -> list[dict[str, Any]]:
        """Series matching a selector, as /api/v1/export JSON lines (metric, values, timestamps)."""
        loopback_http().get(f"{self.url}/internal/force_flush", timeout=10)
        r = loopback_http().post(f"{self.url}/api/v1/export", data={"match[]": match}, timeout=30)
        r.raise_for_status()
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def have(binary: str) -> str | None:
    return shutil.which(binary)


class MqttCollector:
    """Subscribes (paho, its own thread) and keeps every message: (topic, payload, receive time).

    A persistent session (clean_session False, fixed client id) keeps QoS 1 messages queued at the broker while
    the collector is away — with a broker that has persistence, even across a broker restart."""

    def __init__(self, port: int, topic: str = "#", client_id: str = "plume-test-collector", *,
                 tls: TlsFiles | None = None, username: str | None = None, password: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, float]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.topic = topic
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if tls is not None:
            c.tls_set(ca_certs=str(tls.ca))
        if username is not None:
            c.username_pw_set(username, password)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.reconnect_delay_set(0.05, 0.5)
        self.client = c
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        wait_for(self._subscribed.is_set, 10, "the MQTT collector to subscribe")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), time.time()))

    def snapshot(self) -> list[tuple[str, bytes, float]]:
        with self._lock:
            return list(self.messages)

    def data(self) -> list[dict[str, Any]]:
        """Decoded data messages (topic .../data), in arrival order."""
        return [json.loads(p) for t, p, _ in self.snapshot() if t.endswith("/data")]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
