"""End to end, as a user runs it: `plume-sim SITE` and `plume run SITE` as processes, against Mosquitto and
InfluxDB 1.6 started here. The simulator's truth log (every value it served) is the reference.

To make "everything served" exact at the end of a run, every simulated device is made dead through the
simulator's control port and the test waits until each device's flag-B reading reached InfluxDB: every poll
answered before that was committed and delivered.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .helpers import Proc, gateway_cmd, log_records, match_truth, need, read_truth, sim_cmd, sim_control
from .servers import InfluxDB, Mosquitto, MqttCollector, free_port, loopback_http, wait_for

DEVICES = {"dust-1": "dust", "so2-1": "cems", "stack-1": "cems"}
INTERVAL_S = 0.2

SITE = """\
site:
  id: e2e-site
buses:
  - name: lan
    type: tcp
    host: 127.0.0.1
    port: {sim_port}
devices:
  - name: dust-1
    bus: lan
    address: 1
    profile: dust-monitor
    poll_interval_s: {interval}
    timeout_s: 0.5
  - name: so2-1
    bus: lan
    address: 2
    profile: so2-analyzer-cdab
    poll_interval_s: {interval}
    timeout_s: 0.5
  - name: stack-1
    bus: lan
    address: 3
    profile: cems-analyzer
    poll_interval_s: {interval}
    timeout_s: 0.5
store:
  dir: {tmp}/log
  commit_interval_ms: 100
sinks:
  - type: mqtt
    name: broker
    host: 127.0.0.1
    port: {mqtt_port}
    reconnect_min_s: 0.1
    reconnect_max_s: 0.5
    health_interval_s: 1
  - type: influx
    name: tsdb
    url: http://127.0.0.1:{influx_port}
    database: plume
    linger_ms: 200
    retry_min_s: 0.1
    retry_max_s: 0.5
    health_interval_s: 1
"""


class Rig:
    """Simulator + gateway processes for one site file, and what they produced."""

    def __init__(self, tmp: Path, procs: Callable[..., Proc], mosquitto: Mosquitto, influxdb: InfluxDB):
        self.tmp = tmp
        self.procs = procs
        self.mosquitto = mosquitto
        self.influxdb = influxdb
        self.truth = tmp / "truth.jsonl"
        self.control_port = free_port()
        self.metrics_port = free_port()
        self.site = tmp / "site.yaml"
        self.site.write_text(SITE.format(tmp=tmp, sim_port=free_port(), interval=INTERVAL_S,
                                         mqtt_port=mosquitto.port, influx_port=influxdb.port))
        self.log_file = tmp / "log" / "log.sqlite"
        self.sim: Proc | None = None
        self.gateway: Proc | None = None

    def start_sim(self) -> None:
        self.sim = self.procs(sim_cmd(self.site, self.truth, "--control", f"127.0.0.1:{self.control_port}"),
                              self.tmp / "sim.out")
        self.sim.wait_output("ready:")

    def start_gateway(self) -> Proc:
        self.gateway = self.procs(gateway_cmd(self.site, "--metrics-port", str(self.metrics_port)),
                                  self.tmp / "gateway.out")
        self.gateway.wait_output("running:")
        return self.gateway

    def metrics(self) -> dict[str, float]:
        text = loopback_http().get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        out = {}
        for line in text.splitlines():
            m = re.match(r'^(plume_\w+)\{.*?(?:sink|device)="([^"]+)".*\} (\S+)$', line)
            if m:
                out[f"{m.group(1)}:{m.group(2)}"] = float(m.group(3))
        return out

    def points(self) -> dict[str, list[dict[str, Any]]]:
        """device -> InfluxDB points, oldest first."""
        out: dict[str, list[dict[str, Any]]] = {}
        for measurement in sorted(set(DEVICES.values())):
            try:
                rows = self.influxdb.rows(measurement)
            except RuntimeError:  # database not created yet
                rows = []
            for r in rows:
                out.setdefault(r["device"], []).append(r)
        return out

    def points_of_all(self, n: int) -> bool:
        pts = self.points()
        return all(len(pts.get(d, [])) >= n for d in DEVICES)

    def kill_devices_and_settle(self) -> None:
        """Make every device dead, then wait until each one's flag-B reading is in InfluxDB."""
        t_dead = int(time.time() * 1000)
        for d in DEVICES:
            sim_control(self.control_port, d, "dead")

        def settled() -> bool:
            pts = self.points()
            return all(any(r["time"] > t_dead + 50 and str(r.get(self.flag_of(d), "")) == "B" for r in pts.get(d, []))
                       for d in DEVICES)

        wait_for(settled, 20, "a flag-B reading of every device in InfluxDB")

    @staticmethod
    def flag_of(device: str) -> str:
        return {"dust-1": "pm10_flag", "so2-1": "so2_ppb_flag", "stack-1": "so2_flag"}[device]

    def stop_all(self) -> tuple[int, float]:
        assert self.gateway is not None and self.sim is not None
        t = time.monotonic()
        code = self.gateway.terminate()
        elapsed = time.monotonic() - t
        self.sim.terminate()
        return code, elapsed

    def assert_influx_matches_truth_exactly(self) -> dict[str, list[dict[str, Any]]]:
        points = self.points()
        missing, extra = match_truth(read_truth(self.truth), points)
        assert not missing, f"served but not in InfluxDB ({len(missing)}): {missing[:5]}"
        assert not extra, f"in InfluxDB but never served ({len(extra)}): {extra[:5]}"
        records = log_records(self.log_file)
        assert sum(len(v) for v in points.values()) == len(records), "one point per committed reading"
        return points


@pytest.fixture
def rig(tmp_path: Path, procs: Callable[..., Proc], mosquitto: Mosquitto, influxdb: InfluxDB) -> Rig:
    return Rig(tmp_path, procs, mosquitto, influxdb)


def test_every_served_value_arrives_in_influxdb_exactly_once_and_on_mqtt(rig: Rig) -> None:
    need("mosquitto_sub")
    sub = rig.procs(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(rig.mosquitto.port), "-t", "plume/#", "-q", "1",
                     "-v"], rig.tmp / "mosquitto_sub.out")
    probe = "plume/probe"

    def subscribed() -> bool:
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(rig.mosquitto.port), "-t", probe, "-m", "x"],
                       check=True)
        return probe in sub.output()

    wait_for(subscribed, 10, "mosquitto_sub to subscribe", interval=0.1)
    rig.start_sim()
    rig.start_gateway()
    wait_for(lambda: rig.points_of_all(10), 30, "ten polls of every device in InfluxDB")
    rig.kill_devices_and_settle()
    code, elapsed = rig.stop_all()
    assert code == 0
    assert elapsed < 5, f"SIGTERM took {elapsed:.1f} s"
    assert rig.gateway is not None and "stopped:" in rig.gateway.output()

    points = rig.assert_influx_matches_truth_exactly()
    # MQTT, through a standard client: every stored point at least once, same values, sequence without holes
    wait_for(lambda: sub.output().count("/data ") >= sum(len(v) for v in points.values()), 10, "MQTT messages")
    msgs = [json.loads(line.split(" ", 1)[1]) for line in sub.output().splitlines() if "/data " in line]
    by_key = {(m["device"], m["ts"]): m for m in msgs}
    for device, rows in points.items():
        for r in rows:
            m = by_key.get((device, r["time"]))
            assert m is not None, f"{device} @ {r['time']} never published"
            for ch, item in m["values"].items():
                assert item["value"] == r.get(ch) and item["flag"] == r[f"{ch}_flag"], (device, ch)
        seqs = sorted({m["seq"] for m in msgs if m["device"] == device})
        assert seqs == list(range(1, len(rows) + 1)), f"{device}: sequence numbers with holes"


def test_broker_and_database_down_for_a_while(rig: Rig) -> None:
    collector = MqttCollector(rig.mosquitto.port, "plume/+/+/data", client_id="outage-collector")
    try:
        rig.start_sim()
        rig.start_gateway()
        wait_for(lambda: rig.points_of_all(3), 30, "data in InfluxDB")
        rig.mosquitto.stop()
        rig.influxdb.stop()
        wait_for(lambda: min(rig.metrics().get(f"plume_sink_log_depth:{s}", 0) for s in ("broker", "tsdb")) >= 30,
                 30, "a backlog in the log while both servers are down")
        down = rig.metrics()
        assert down["plume_sink_connected:broker"] == 0 and down["plume_sink_connected:tsdb"] == 0
        rig.mosquitto.start()
        rig.influxdb.start()
        wait_for(lambda: rig.metrics()["plume_sink_reconnects_total:broker"] >= 1, 30, "the MQTT reconnect")
        rig.kill_devices_and_settle()
        code, _ = rig.stop_all()
        assert code == 0
        points = rig.assert_influx_matches_truth_exactly()
        total = {d: len(points[d]) for d in DEVICES}
        wait_for(lambda: len({(m["device"], m["seq"]) for m in collector.data()}) >= sum(total.values()), 15,
                 "every reading on MQTT after the outage")
        for device in DEVICES:
            first_seen: list[int] = []
            for m in collector.data():
                if m["device"] == device and m["seq"] not in first_seen:
                    first_seen.append(m["seq"])
            assert first_seen == list(range(1, total[device] + 1)), f"{device}: missing or out of order"
    finally:
        collector.close()


def test_kill_9_at_random_moments_loses_nothing_committed(rig: Rig) -> None:
    rng = random.Random(20260101)
    rig.start_sim()
    kills: list[tuple[int, int]] = []  # (time of kill, time the next gateway was running), ms
    status = MqttCollector(rig.mosquitto.port, "plume/e2e-site/status", client_id="status-watch")
    try:
        for _ in range(3):
            onlines = sum(1 for _, p, _ in status.snapshot() if p == b"online")
            gw = rig.start_gateway()
            time.sleep(rng.uniform(0.3, 1.5))  # a random moment: the test is about not choosing it
            kill_ms = int(time.time() * 1000)
            gw.kill9()
            kills.append((kill_ms, 0))
            if sum(1 for _, p, _ in status.snapshot() if p == b"online") > onlines:
                # it had connected to the broker: its last will says offline (a gateway killed before it
                # connected, on a loaded machine, has no session whose will could be published)
                wait_for(lambda: retained_status(rig) == b"offline", 10, "the last will after kill -9")
    finally:
        status.close()
    gw = rig.start_gateway()
    kills = [(k, int(time.time() * 1000)) for k, _ in kills]
    wait_for(lambda: rig.metrics().get("plume_sink_log_depth:tsdb", 1) == 0, 30, "the log to drain after the kills")
    rig.kill_devices_and_settle()
    code, _ = rig.stop_all()
    assert code == 0

    records = log_records(rig.log_file)
    points = rig.points()
    stored = {(d, r["time"]): r for d, rows in points.items() for r in rows}
    assert len(stored) == len(records), "exactly one point per committed reading"
    for _rid, _seq, reading in records:
        r = stored.get((reading.device, reading.ts))
        assert r is not None, f"committed reading {reading.device} @ {reading.ts} missing in InfluxDB"
        for ch, cv in reading.values.items():
            assert r.get(ch) == cv.value and r[f"{ch}_flag"] == cv.flag.value
    # what the simulator served but no gateway ever committed lies only around the kills: the last commit
    # interval before each kill plus the poll in flight, until the next gateway polled again
    missing, extra = match_truth(read_truth(rig.truth), points)
    assert not extra
    margin = 100 + int(INTERVAL_S * 1000) + 500
    outside = [m for m in missing if not any(k - margin <= m[2] <= back for k, back in kills)]
    assert not outside, f"values lost outside the kill windows: {outside[:5]}"


def retained_status(rig: Rig) -> bytes:
    c = MqttCollector(rig.mosquitto.port, "plume/e2e-site/status", client_id=f"status-{time.monotonic_ns()}")
    try:
        wait_for(c.snapshot, 20, "the retained status")
        return c.snapshot()[-1][1]
    finally:
        c.close()


def test_a_bad_site_file_exits_2_with_one_line_per_problem(tmp_path: Path, procs: Callable[..., Proc]) -> None:
    site = tmp_path / "bad.yaml"
    site.write_text(
        "site: {id: s}\n"
        "sinks:\n"
        "  - {type: mqtt, host: 127.0.0.1, port: 99999}\n"
        "  - {type: influx, url: 'http://127.0.0.1:1', databse: plume}\n"
    )
    p = procs(gateway_cmd(site), tmp_path / "bad.out")
    assert p.proc is not None and p.proc.wait(timeout=30) == 2
    lines = p.output().strip().splitlines()
    assert len(lines) == 2, lines
    # (the variant tag, e.g. ".mqtt", may still appear in the path: the config loader owns that formatting)
    assert lines[0].startswith(f"{site}: sinks[0].") and lines[0].endswith(
        "port: must be at most 65535, got 99999")
    assert lines[1].startswith(f"{site}: sinks[1].") and lines[1].endswith(
        "databse: unknown key (typo? did you mean database?)")
    assert "Traceback" not in p.output()


def test_a_missing_secret_exits_2_naming_the_field(tmp_path: Path, procs: Callable[..., Proc]) -> None:
    site = tmp_path / "secret.yaml"
    site.write_text(
        f"site: {{id: s}}\nstore: {{dir: {tmp_path}/log}}\n"
        "sinks:\n  - {type: mqtt, host: 127.0.0.1, username: plume, password_env: PLUME_TEST_NO_SUCH_VAR}\n"
    )
    p = procs(gateway_cmd(site), tmp_path / "secret.out")
    assert p.proc is not None and p.proc.wait(timeout=30) == 2
    assert p.output().strip() == (f"{site}: sinks[0].password_env: environment variable PLUME_TEST_NO_SUCH_VAR "
                                  "is not set")
