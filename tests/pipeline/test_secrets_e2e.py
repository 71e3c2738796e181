"""No secret of the site file reaches a log line or a stored error text, in any form it can take.

`plume run --log-level debug` with every kind of secret set: a webhook URL with a key in its path and in its query
and an `Authorization: Basic` header, an MQTT password (Mosquitto with a password file), an InfluxDB v1 user and
password, an HJ 212 PW (to the platform simulator, which refuses that PW). The webhook and the InfluxDB sink point
at a receiver (a real HTTP server here) that answers 400 with an echo of the request's path, query and headers —
what a careless receiver or proxy does. Then the gateway's output, the log database (rejected table, every row),
the HJ 212 state files and the health snapshots on MQTT are searched for every secret, as given, URL-encoded and
as the base64 of `user:password`.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.localservers import make_passwd

from .helpers import Proc, gateway_cmd, need, script, sim_cmd
from .servers import Mosquitto, MqttCollector, free_port, wait_for

PATH_KEY = "9f3c2a71-5b1e-4c8d-a0e2-7d41c0ffee11"
QUERY_KEY = "q8Zk4wLm2Rt7Vx1N"
HOOK_PASS = "hookpass-7731"
MQTT_PASS = "mqtt-pa55-Kq81"
INFLUX_PASS = "influx-pa55-Zt40"
HJ212_PW = "834921"


class Echo(BaseHTTPRequestHandler):
    """Answers every POST with HTTP 400 and an echo of what it got (path, query, headers)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": "bad request", "you sent": [self.headers.get("Authorization", ""), self.path],
                           "headers": dict(self.headers)})
        data = body.encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def forms(secret: str, user: str | None = None) -> set[str]:
    out = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    if user is not None:
        out.add(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return out


def test_no_secret_in_any_log_line_or_stored_error(tmp_path: Path, echo: int, procs: Callable[..., Proc]) -> None:
    need("mosquitto")
    mosquitto = Mosquitto(tmp_path / "mosquitto", passwd=make_passwd(tmp_path, "site-a", MQTT_PASS))
    mosquitto.start()
    platform_port = free_port()
    try:
        platform = procs([script("python"), "-m", "plume_sim.platform", "--port", str(platform_port), "--pw",
                          "111111"], tmp_path / "platform.out")
        platform.wait_output("ready:")
        hook_auth = base64.b64encode(f"hookuser:{HOOK_PASS}".encode()).decode()
        site = tmp_path / "site.yaml"
        sim_port = free_port()
        site.write_text(f"""\
site: {{id: secret-site, timezone: Asia/Shanghai}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - {{name: dust-1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 0.2, timeout_s: 0.5}}
store: {{dir: {tmp_path}/log, commit_interval_ms: 100}}
rules:
  - {{id: dusty, type: threshold, channel: pm10, limit: 0.001}}
notify:
  webhooks:
    - name: robot
      url: "http://127.0.0.1:{echo}/hook/{PATH_KEY}/send?key={QUERY_KEY}"
      headers: {{Authorization: "Basic {hook_auth}"}}
      retry: {{initial_s: 0.2, max_s: 0.5, max_attempts: 2}}
sinks:
  - {{type: mqtt, name: broker, host: 127.0.0.1, port: {mosquitto.port}, username: site-a, password: "{MQTT_PASS}",
      health_interval_s: 0.5}}
  - {{type: influx, name: tsdb, url: "http://127.0.0.1:{echo}", database: plume, username: plume,
      password: "{INFLUX_PASS}", linger_ms: 100, retry_min_s: 0.2, retry_max_s: 0.5}}
uplinks:
  - {{name: city, host: 127.0.0.1, port: {platform_port}, mn: "010000A8900016F000169DC0", pw: "{HJ212_PW}",
      reconnect_min_s: 0.2, reconnect_max_s: 0.5, answer_timeout_s: 1, codes: [{{code: a34002, channel: pm10}}]}}
""")
        sim = procs(sim_cmd(site, tmp_path / "truth.jsonl"), tmp_path / "sim.out")
        sim.wait_output("ready:")
        health = MqttCollector(mosquitto.port, "plume/secret-site/health", client_id="secret-watcher",
                               username="site-a", password=MQTT_PASS)
        try:
            gw = procs(gateway_cmd(site, "--log-level", "debug"), tmp_path / "gateway.out")
            gw.wait_output("running:")
            gw.wait_output("webhook[robot]: gave up", timeout=30)  # the receiver's 400 (with its echo) was read
            gw.wait_output("server refused reading", timeout=30)  # InfluxDB's 400 with the echo, kept as rejected
            wait_for(lambda: len(health.snapshot()) >= 3, 15, "health snapshots on MQTT")
            assert gw.terminate() == 0
        finally:
            health.close()
        texts = {"gateway output": gw.output()}
        for p in (tmp_path / "log").iterdir():
            texts[p.name] = p.read_bytes().decode("latin-1")
        texts["health on MQTT"] = "\n".join(p.decode() for _, p, _ in health.snapshot())
        assert "rejected" in texts["gateway output"] or "refused" in texts["gateway output"]
        import sqlite3

        with sqlite3.connect(tmp_path / "log" / "log.sqlite") as db:
            errors = [r[0] for r in db.execute("SELECT error FROM rejected")]
        assert errors, "the receiver's 400 was stored as a rejection"
        texts["rejected errors"] = "\n".join(errors)
        secrets = {
            "webhook path key": forms(PATH_KEY), "webhook query key": forms(QUERY_KEY),
            "webhook Basic password": forms(HOOK_PASS, "hookuser"), "MQTT password": forms(MQTT_PASS),
            "InfluxDB password": forms(INFLUX_PASS, "plume"), "HJ 212 PW": {f"PW={HJ212_PW}"},
        }
        leaks = [(what, where) for what, variants in secrets.items() for where, text in texts.items()
                 if any(v in text for v in variants)]
        assert leaks == [], leaks
        assert "hook/***/send" in texts["gateway output"], "the webhook is still named, with its key masked"
    finally:
        mosquitto.stop()
