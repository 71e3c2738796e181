"""deploy/central/telegraf.conf turns Plume's MQTT payloads into exactly the points the gateway writes itself.

Telegraf cannot be installed here (not in Debian, PyPI or npm), so tests/deploy/telegraf_emu.py runs the config
file's own rules (parsed with tomllib) the way Telegraf's json_v2 parser, metric modifiers and regex processor do.
The payloads are real: gateway.sinks.contract.data_payload for readings shaped like every built-in profile's,
and, end to end, what the real MQTT sink publishes through the fleet broker (deploy/mosquitto) to the Telegraf
account's shared subscription. The expected points are gateway.sinks.lineproto.reading_line for the same readings;
both sides are also written to a real InfluxDB 1.6 and read back.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.localservers import loopback_http
from gateway.profile import builtin_profile_names, load_profile
from gateway.sinks.config import MqttSinkConfig
from gateway.sinks.contract import data_payload, data_topic
from gateway.sinks.lineproto import reading_line
from gateway.sinks.mqtt import MqttSink, tls_context
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog
from gateway.store.records import ReadingRecord

from .fleet import Client, FleetBroker, free_port, port_open, wait_until
from .helpers import DEPLOY, need
from .telegraf_emu import Metric, Telegraf, Unsupported

CONF = DEPLOY / "central/telegraf.conf"
ENV = {"PLUME_MQTT_SERVERS": "ssl://127.0.0.1:8883", "TELEGRAF_CLIENT_ID": "telegraf-plume-1",
       "PLUME_MQTT_USER": "telegraf", "PLUME_MQTT_PASSWORD": "x", "PLUME_MQTT_CA": "/etc/telegraf/ca.crt",
       "INFLUX_URL": "http://127.0.0.1:8086", "INFLUX_TOKEN": "t", "INFLUX_ORG": "o", "INFLUX_BUCKET": "plume"}
T0 = 1_795_968_840_001
Point = tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, object], ...], int]


# --- line protocol, as the gateway writes it ------------------------------------------------------------------

def _split(text: str, sep: str) -> list[str]:
    """Split at unescaped `sep` outside double quotes."""
    parts, cur, quoted, i = [], "", False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    parts.append(cur)
    return parts


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def parse_line(line: str) -> Point:
    """One line of InfluxDB line protocol (ms timestamps) as a comparable point."""
    series, fields_text, ts = _split(line, " ")
    measurement, *tag_parts = _split(series, ",")
    tags = tuple(sorted((_unescape(k), _unescape(v)) for k, v in (_split(t, "=") for t in tag_parts)))
    fields: dict[str, object] = {}
    for part in _split(fields_text, ","):
        key, value = _split(part, "=")
        if value.startswith('"'):
            fields[_unescape(key)] = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        elif value in ("t", "T", "true", "True", "f", "F", "false", "False"):
            fields[_unescape(key)] = value.lower().startswith("t")
        elif value.endswith("i"):
            fields[_unescape(key)] = int(value[:-1])
        else:
            fields[_unescape(key)] = float(value)
    return (_unescape(measurement), tags, tuple(sorted(fields.items())), int(ts) * 1_000_000)


def as_point(m: Metric) -> Point:
    assert m.ts_ns is not None, "every point carries the poll's timestamp"
    return (m.name, tuple(sorted(m.tags.items())), tuple(sorted(m.fields.items())), m.ts_ns)


def to_line(m: Metric) -> str:
    """A Telegraf metric in line protocol, as its influx serializer writes it (ns precision)."""
    esc = lambda s: s.replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")  # noqa: E731

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    tags = "".join(f",{esc(k)}={esc(v)}" for k, v in sorted(m.tags.items()))
    fields = ",".join(f"{esc(k)}={value(v)}" for k, v in sorted(m.fields.items()))
    name = m.name.replace(",", r"\,").replace(" ", r"\ ")
    return f"{name}{tags} {fields} {m.ts_ns}"


# --- readings: every built-in profile, and the awkward cases ------------------------------------------------------

def profile_readings() -> list[DeviceReading]:
    out = []
    for i, name in enumerate(builtin_profile_names()):
        p = load_profile(name)
        values: dict[str, ChannelValue] = {}
        for j, reg in enumerate(p.registers):
            v: float | str | None = round(math.sin(i * 7 + j) * 10 ** (j % 5), j % 4) + 0.0
            flag = Flag.N
            if j % 7 == 3:
                v, flag = None, Flag.D  # no usable number: no value field, the flag says why
            values[reg.channel] = ChannelValue(v, reg.unit or "", flag, "over range" if j % 5 == 4 else "")
        out.append(DeviceReading("site-001", f"{name}-1", p.kind, T0 + i * 1000, values))
    return out


def awkward_readings() -> list[DeviceReading]:
    cv = ChannelValue
    return [
        # a failed poll: every value null, flag B, an error text
        DeviceReading("site.b-2", "dust-1", "dust", T0 + 1, {"pm10": cv(None, "ug/m3", Flag.B),
                      "tsp": cv(None, "ug/m3", Flag.B)}, ok=False, error="fc4@0+9: timeout"),
        # integers (the gateway writes floats), negative, tiny and huge numbers, NaN and infinity (left out)
        DeviceReading("site-001", "stack-1", "cems", T0 + 2, {
            "so2": cv(63, "mg/m3"), "temp": cv(-12.5, "C"), "o2": cv(1e-07, "%"), "flow": cv(3.4e12, "m3/h"),
            "nox": cv(float("nan"), "mg/m3", Flag.D), "dust": cv(float("inf"), "mg/m3", Flag.T),
            "co": cv(0.1 + 0.2, "mg/m3", Flag.C, note="span check")}),
        # text channels: strings, with quotes and backslashes
        DeviceReading("site-001", "analyzer-7", "cems", T0 + 3, {
            "state": cv('running "auto" \\ ok', ""), "serial": cv("SN-0042", ""), "o2": cv(20.9, "%", Flag.M)}),
        # channel names near the renaming rules: *_value, *_unit, *_note, *_flag
        DeviceReading("site-001", "odd-1", "dust", T0 + 4, {
            "span_value": cv(1.5, "ppm"), "x_unit": cv(2.0, "m"), "y_note": cv(3.0, "m"), "z_flag": cv(4.0, "m")}),
    ]


def records(readings: list[DeviceReading]) -> list[ReadingRecord]:
    return [ReadingRecord(id=i + 1, ts=r.ts, site=r.site, seq=i + 1, reading=r) for i, r in enumerate(readings)]


@pytest.fixture(scope="module")
def telegraf() -> Telegraf:
    return Telegraf(CONF.read_text(), ENV)


# --- the config's rules on real payloads ---------------------------------------------------------------------

@pytest.mark.parametrize("reading", profile_readings() + awkward_readings(), ids=lambda r: r.device)
def test_points_equal_the_gateways_own_line_protocol(telegraf: Telegraf, reading: DeviceReading) -> None:
    record = records([reading])[0]
    topic = data_topic("plume", reading.site, reading.device)
    got = [as_point(m) for m in telegraf.consume(topic, data_payload(record))]
    line = reading_line(reading)
    assert line is not None
    assert got == [parse_line(line)]


def test_a_reading_without_channels_makes_no_point_on_either_path(telegraf: Telegraf) -> None:
    reading = DeviceReading("site-001", "empty-1", "dust", T0, {})
    assert reading_line(reading) is None
    assert telegraf.consume("plume/site-001/empty-1/data", data_payload(records([reading])[0])) == []


def test_only_data_topics_are_ingested(telegraf: Telegraf) -> None:
    payload = data_payload(records(awkward_readings())[:1][0])
    assert telegraf.consume("plume/site-001/health", b'{"devices": {}}') == []
    assert telegraf.consume("plume/site-001/status", b"online") == []
    assert telegraf.consume("other/site-001/dust-1/data", payload) == []
    assert telegraf.consume("plume/site-001/dust-1/data", payload) != []


def test_the_settings_that_keep_the_schema_exact(telegraf: Telegraf) -> None:
    """Without them Telegraf adds tags (host, topic) or keeps <ch>_value/_unit/_note fields."""
    inp = telegraf.inputs[0]
    assert telegraf.host_tag is None and inp["topic_tag"] == ""
    assert inp["topics"] == ["$share/plume-ingest/plume/+/+/data"]
    assert inp["qos"] == 1 and inp["persistent_session"] is True
    assert inp["client_id"] == ENV["TELEGRAF_CLIENT_ID"], "one persistent session per instance"
    text = CONF.read_text()
    loose = Telegraf(text.replace("omit_hostname = true", "omit_hostname = false").replace('topic_tag = ""\n', ""),
                     ENV)
    reading = awkward_readings()[1]
    m = loose.consume("plume/site-001/stack-1/data", data_payload(records([reading])[0]))[0]
    assert {"host", "topic"} <= set(m.tags)
    unrenamed = Telegraf(re.sub(r"\[\[processors\.regex\]\].*?replacement = \"\$\{1\}\"\n", "", text, flags=re.S), ENV)
    m = unrenamed.consume("plume/site-001/stack-1/data", data_payload(records([reading])[0]))[0]
    assert "so2_value" in m.fields and "so2" not in m.fields


def test_outputs_and_env_placeholders(telegraf: Telegraf) -> None:
    out = telegraf.conf["outputs"]["influxdb_v2"][0]
    assert out == {"urls": ["http://127.0.0.1:8086"], "token": "t", "organization": "o", "bucket": "plume",
                   "timeout": "10s", "content_encoding": "gzip"}
    assert "# [[outputs.influxdb]]" in CONF.read_text(), "the InfluxDB 1.x output, commented"
    raw = Telegraf(CONF.read_text(), {})  # unset variables stay visible (Telegraf leaves them as they are)
    assert raw.inputs[0]["client_id"] == "${TELEGRAF_CLIENT_ID}"


def test_the_emulator_refuses_what_it_does_not_implement() -> None:
    text = CONF.read_text().replace('path = "values"', 'path = "values"\n      optional = true')
    with pytest.raises(Unsupported):
        Telegraf(text, ENV).consume("plume/a/b/data", data_payload(records(awkward_readings())[0]))
    with pytest.raises(Unsupported):
        Telegraf(CONF.read_text().replace("topic_tag", "topic_tags"), ENV)


# --- end to end: gateway -> fleet broker -> shared subscription -> Telegraf rules -> InfluxDB 1.6 ---------------

class Influx:
    def __init__(self, folder: Path):
        self.port, rpc = free_port(), free_port()
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "influxdb.conf"
        conf.write_text(
            f'reporting-enabled = false\nbind-address = "127.0.0.1:{rpc}"\n[meta]\n  dir = "{folder}/meta"\n'
            f'[data]\n  dir = "{folder}/data"\n  wal-dir = "{folder}/wal"\n  query-log-enabled = false\n'
            f'[monitor]\n  store-enabled = false\n[http]\n  bind-address = "127.0.0.1:{self.port}"\n'
            "  log-enabled = false\n")
        import subprocess

        self.proc = subprocess.Popen(["influxd", "run", "-config", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: port_open(self.port) and self._ping(), 20, "influxd")

    def _ping(self) -> bool:
        try:
            return loopback_http().get(f"{self.url}/ping", timeout=0.5).status_code == 204
        except httpx.HTTPError:
            return False

    def write(self, db: str, lines: list[str], precision: str) -> None:
        loopback_http().post(f"{self.url}/query", data={"q": f'CREATE DATABASE "{db}"'}, timeout=10).raise_for_status()
        r = loopback_http().post(f"{self.url}/write", params={"db": db, "precision": precision},
                                 content="\n".join(lines), timeout=10)
        assert r.status_code == 204, r.text

    def dump(self, db: str) -> dict[str, list[dict[str, object]]]:
        r = loopback_http().post(f"{self.url}/query", params={"db": db, "epoch": "ns"},
                       data={"q": "SELECT * FROM /.*/ GROUP BY *"}, timeout=10)
        out: dict[str, list[dict[str, object]]] = {}
        for s in r.json()["results"][0].get("series", []):
            for row in s["values"]:
                point = {k: v for k, v in zip(s["columns"], row, strict=True) if v is not None}
                out.setdefault(s["name"], []).append({**point, **s.get("tags", {})})
        return {k: sorted(v, key=lambda p: (p["time"], p.get("device", ""))) for k, v in out.items()}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[Influx]:
    need("influxd")
    db = Influx(tmp_path / "influx")
    yield db
    db.stop()


def test_end_to_end_through_the_fleet_broker_into_influxdb(tmp_path: Path, telegraf: Telegraf,
                                                           influx: Influx) -> None:
    for tool in ("mosquitto", "mosquitto_passwd", "openssl"):
        need(tool)
    broker = FleetBroker(tmp_path / "broker")
    broker.add_site("site-001")
    broker.add_service("telegraf", "ingest-Pa55")
    broker.start()
    consumers: list[Client] = []
    try:
        # Two Telegraf instances (MQTT 3.1.1, as Telegraf's mqtt_consumer) share the subscription of the config.
        topic = telegraf.inputs[0]["topics"][0]
        for i in range(2):
            c = Client(broker, "telegraf", "ingest-Pa55", client_id=f"telegraf-plume-{i}", v5=False, clean=False)
            consumers.append(c)
            assert c.accepted and not c.subscribe(topic).is_failure
        readings = profile_readings() + awkward_readings()

        async def gateway() -> None:
            cfg = MqttSinkConfig.model_validate({
                "type": "mqtt", "name": "fleet", "host": "127.0.0.1", "port": broker.port, "username": "site-001",
                "tls": {"ca_file": str(broker.ca)}, "health_interval_s": 0})
            log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
            await log.open(["fleet"])
            for r in readings:
                log.append(DeviceReading("site-001", r.device, r.kind, r.ts, r.values, r.ok, r.error))
            await log.flush()
            sink = MqttSink(cfg, "site-001", log, password=broker.passwords["site-001"], tls=tls_context(cfg))
            task = asyncio.create_task(sink.run())
            try:
                while sink.consumer.acked < len(readings):
                    await asyncio.sleep(0.02)
            finally:
                log.begin_close()
                await asyncio.wait_for(task, 10)
                await log.close()

        asyncio.run(asyncio.wait_for(gateway(), 30))
        wait_until(lambda: sum(len(c.snapshot()) for c in consumers) >= len(readings), 10, "every message")
    finally:
        for c in consumers:
            c.close()
        broker.stop()

    received = [m for c in consumers for m in c.snapshot()]
    assert all(c.snapshot() for c in consumers), "both instances got a share"
    metrics = [m for t, p in received for m in telegraf.consume(t, p)]
    expected_lines = [reading_line(DeviceReading("site-001", r.device, r.kind, r.ts, r.values, r.ok, r.error))
                      for r in readings]
    assert sorted(map(as_point, metrics)) == sorted(parse_line(x) for x in expected_lines if x)
    assert all(json.loads(p)["site"] == "site-001" for _, p in received)

    influx.write("via_gateway", [x for x in expected_lines if x], "ms")
    influx.write("via_telegraf", [to_line(m) for m in metrics], "ns")
    direct, ingested = influx.dump("via_gateway"), influx.dump("via_telegraf")
    assert direct and ingested == direct
