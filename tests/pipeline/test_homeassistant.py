"""Home Assistant MQTT discovery (`type: homeassistant` sink): the simulator's devices, polled by the real gateway,
appear as retained discovery configs on a real Mosquitto, valid against Home Assistant's documented discovery
schema, and are removed (empty retained config) once a device leaves the site file.

No Home Assistant can run here (not installable on this machine), so the payloads are checked against the
schema as Home Assistant documents it (home-assistant.io/integrations/mqtt, sensor.mqtt, binary_sensor.mqtt and
sensor#device-class), written out below, and each value_template is rendered with Jinja2, Home Assistant's
template engine, on the data messages that really arrived.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from plume_sim import Simulator

from gateway.pipeline.gateway import Gateway
from gateway.site.model import Site

from .servers import Mosquitto, MqttCollector, free_port, wait_for

SITE = """
site: {{id: ha}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
{devices}
store: {{dir: "{tmp}/log", commit_interval_ms: 50, durability: normal}}
sinks:
  - {{type: homeassistant, name: hass, host: 127.0.0.1, port: {mqtt_port}, reconnect_min_s: 0.1}}
"""
DUST1 = "  - {name: dust-1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 0.2, timeout_s: 0.3}"
DUST2 = "  - {name: dust-2, bus: lan, address: 2, profile: dust-monitor, poll_interval_s: 0.2, timeout_s: 0.3}"
CHANNELS = ["tsp", "pm10", "pm25", "noise", "wind_speed", "wind_dir", "temperature", "humidity", "pressure",
            "heater_on"]

# --- Home Assistant's MQTT discovery schema, as documented ------------------------------------------------------
COMMON_KEYS = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
               "enabled_by_default", "encoding", "entity_category", "entity_picture", "expire_after",
               "force_update", "icon", "json_attributes_template", "json_attributes_topic", "name", "object_id",
               "default_entity_id", "origin", "payload_available", "payload_not_available", "platform", "qos",
               "state_topic", "unique_id", "value_template"}
SENSOR_KEYS = COMMON_KEYS | {"device_class", "last_reset_value_template", "options", "suggested_display_precision",
                             "state_class", "unit_of_measurement"}
BINARY_KEYS = COMMON_KEYS | {"device_class", "off_delay", "payload_off", "payload_on"}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
               "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
# sensor device classes and the units Home Assistant accepts for each (those a dust/CEMS station can use)
SENSOR_CLASS_UNITS = {
    "pm1": {"µg/m³"}, "pm10": {"µg/m³"}, "pm25": {"µg/m³"}, "sulphur_dioxide": {"µg/m³"},
    "nitrogen_dioxide": {"µg/m³"}, "nitrogen_monoxide": {"µg/m³"}, "temperature": {"°C", "°F", "K"},
    "humidity": {"%"}, "sound_pressure": {"dB", "dBA"}, "wind_speed": {"ft/s", "km/h", "kn", "m/s", "mph"},
    "atmospheric_pressure": {"cbar", "bar", "hPa", "inHg", "kPa", "mbar", "Pa", "psi", "mmHg"},
    "pressure": {"cbar", "bar", "hPa", "inHg", "kPa", "mbar", "Pa", "psi", "mmHg"},
    "speed": {"ft/s", "in/d", "in/h", "in/s", "km/h", "kn", "m/s", "mm/d", "mm/h", "mm/s", "mph"},
    "precipitation": {"cm", "in", "mm"}, "volume_flow_rate": {"m³/h", "ft³/min", "L/min", "gal/min", "mL/s"},
    "duration": {"d", "h", "min", "s", "ms"},
}
NODE_OR_OBJECT = r"[a-zA-Z0-9_-]+"


def schema_problems(topic: str, cfg: dict[str, Any]) -> list[str]:
    import re

    out: list[str] = []
    m = re.fullmatch(rf"homeassistant/(sensor|binary_sensor)/({NODE_OR_OBJECT})/({NODE_OR_OBJECT})/config", topic)
    if m is None:
        return [f"{topic}: not <discovery_prefix>/<component>/[<node_id>/]<object_id>/config"]
    keys = SENSOR_KEYS if m.group(1) == "sensor" else BINARY_KEYS
    out += [f"{topic}: unknown key {k}" for k in cfg if k not in keys]
    if not isinstance(cfg.get("state_topic"), str) or any(c in cfg["state_topic"] for c in "+#"):
        out.append(f"{topic}: state_topic must be a topic without wildcards")
    if "availability" in cfg and "availability_topic" in cfg:
        out.append(f"{topic}: availability and availability_topic must not be used together")
    for a in cfg.get("availability", []):
        if set(a) - {"topic", "payload_available", "payload_not_available", "value_template"} or "topic" not in a:
            out.append(f"{topic}: availability entry {a} (topic required)")
    if cfg.get("availability_mode", "latest") not in ("all", "any", "latest"):
        out.append(f"{topic}: availability_mode {cfg['availability_mode']}")
    if cfg.get("qos", 0) not in (0, 1, 2):
        out.append(f"{topic}: qos")
    dev = cfg.get("device", {})
    out += [f"{topic}: unknown device key {k}" for k in dev if k not in DEVICE_KEYS]
    if dev and not (dev.get("identifiers") or dev.get("connections")):
        out.append(f"{topic}: device needs identifiers or connections")
    if dev and "unique_id" not in cfg:
        out.append(f"{topic}: device info works only with unique_id")
    out += [f"{topic}: unknown origin key {k}" for k in cfg.get("origin", {}) if k not in ORIGIN_KEYS]
    if "origin" in cfg and "name" not in cfg["origin"]:
        out.append(f"{topic}: origin needs name")
    if m.group(1) == "sensor":
        cls, unit = cfg.get("device_class"), cfg.get("unit_of_measurement")
        if cls is not None and unit not in SENSOR_CLASS_UNITS.get(cls, set()):
            out.append(f"{topic}: unit {unit!r} is not valid for device class {cls!r}")
        if "state_class" in cfg and cfg["state_class"] not in STATE_CLASSES:
            out.append(f"{topic}: state_class {cfg['state_class']}")
        p = cfg.get("suggested_display_precision")
        if p is not None and (not isinstance(p, int) or p < 0):
            out.append(f"{topic}: suggested_display_precision must be a positive integer")
    return out


def render(template: str, payload: bytes) -> str:
    """A value template rendered as Home Assistant renders it for MQTT (value and value_json)."""
    env = ImmutableSandboxedEnvironment()
    return env.from_string(template).render(value=payload.decode(), value_json=json.loads(payload))


def configs(col: MqttCollector) -> dict[str, bytes]:
    """The latest message of every discovery topic."""
    out: dict[str, bytes] = {}
    for t, p, _ in col.snapshot():
        if t.startswith("homeassistant/"):
            out[t] = p
    return out


async def run_gateway(site: Site, until: Callable[[], object]) -> None:
    gw = Gateway(site, grace_s=2.0)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        async with asyncio.timeout(30):
            while not until():
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_discovery_configs_are_valid_and_a_device_that_leaves_is_removed(
        mosquitto: Mosquitto, make_site: Callable[..., Site], tmp_path: Path) -> None:
    sim_port = free_port()
    both = make_site(SITE, sim_port=sim_port, mqtt_port=mosquitto.port, devices=f"{DUST1}\n{DUST2}")
    col = MqttCollector(mosquitto.port, "#", client_id="ha-watch")
    want = {f"homeassistant/{'binary_sensor' if ch == 'heater_on' else 'sensor'}/plume_ha_{d}/{ch}/config"
            for d in ("dust-1", "dust-2") for ch in CHANNELS}
    try:
        async with Simulator(both, seed=2) as sim:
            await run_gateway(both, lambda: want <= set(configs(col)) and len(col.data()) >= 6)
            got = {t: json.loads(p) for t, p in configs(col).items()}
            assert set(got) == want
            problems = [p for t, c in got.items() for p in schema_problems(t, c)]
            assert problems == []
            assert len({c["unique_id"] for c in got.values()}) == len(got), "unique ids"

            pm10 = got["homeassistant/sensor/plume_ha_dust-1/pm10/config"]
            assert (pm10["device_class"], pm10["unit_of_measurement"], pm10["state_class"],
                    pm10["suggested_display_precision"]) == ("pm10", "µg/m³", "measurement", 0)
            assert pm10["availability"] == [{"topic": "plume/ha/dust-1/status"}, {"topic": "plume/ha/status"}]
            assert pm10["availability_mode"] == "all"
            assert pm10["device"]["identifiers"] == ["plume_ha_dust-1"] and pm10["device"]["model"] == "dust-monitor"
            noise = got["homeassistant/sensor/plume_ha_dust-1/noise/config"]
            assert (noise["device_class"], noise["unit_of_measurement"], noise["suggested_display_precision"]) == (
                "sound_pressure", "dBA", 1)
            assert "device_class" not in got["homeassistant/sensor/plume_ha_dust-1/tsp/config"], (
                "TSP has no Home Assistant device class: a plain measurement")
            assert got["homeassistant/sensor/plume_ha_dust-1/humidity/config"]["unit_of_measurement"] == "%"

            # what Home Assistant would show: each template on the data messages that arrived
            data = [p for t, p, _ in col.snapshot() if t == "plume/ha/dust-1/data"]
            assert data
            for ch in CHANNELS:
                cfg = got[f"homeassistant/{'binary_sensor' if ch == 'heater_on' else 'sensor'}/plume_ha_dust-1/"
                          f"{ch}/config"]
                for payload in data:
                    value = json.loads(payload)["values"][ch]["value"]
                    shown = render(cfg["value_template"], payload)
                    if ch == "heater_on":
                        assert shown == ("None" if value is None else "ON" if value else "OFF")
                    else:
                        assert shown == str(value), (ch, shown, value)
                    assert json.loads(render(cfg["json_attributes_template"], payload))["flag"] in "NBDCMTFS"
            statuses = {t: p for t, p, _ in col.snapshot() if t.endswith("/status")}
            assert statuses == {"plume/ha/status": b"offline", "plume/ha/dust-1/status": b"online",
                                "plume/ha/dust-2/status": b"online"}

            # dust-2 leaves the site file: its entities are removed at the next start
            one = make_site(SITE, sim_port=sim_port, mqtt_port=mosquitto.port, devices=DUST1)
            gone = {t for t in want if "dust-2" in t}
            await run_gateway(one, lambda: all(configs(col).get(t) == b"" for t in gone))
            assert sim.served_count > 0
        late = MqttCollector(mosquitto.port, "homeassistant/#", client_id="ha-late")
        try:
            wait_for(lambda: len(configs(late)) >= len(CHANNELS), 10, "the retained configs")
            assert {t for t in configs(late)} == want - gone, "dust-2's configs are no longer retained"
        finally:
            late.close()
    finally:
        col.close()


@pytest.mark.parametrize(("payload", "shown"), [
    (b'{"values":{"pm10":{"value":null,"unit":"ug/m3","flag":"B"}}}', "None"),  # HA: unknown
    (b'{"values":{}}', ""),  # HA: an empty value is ignored (the state stays)
])
def test_a_missing_value_shows_unknown_and_an_absent_channel_changes_nothing(payload: bytes, shown: str) -> None:
    from gateway.sinks.homeassistant import HaDevice, discovery_config

    _, cfg = discovery_config("plume", "homeassistant", "s", HaDevice("d", "m", "dust"), "pm10", "ug/m3", True)
    assert render(cfg["value_template"], payload) == shown


def test_a_native_sink_beside_a_homeassistant_sink_on_one_broker_is_a_config_error(
        make_site: Callable[..., Site]) -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError) as err:
        make_site("""
            site: {{id: ha}}
            sinks:
              - {{type: mqtt, name: fleet, host: 127.0.0.1, port: 1883}}
              - {{type: homeassistant, host: 127.0.0.1}}
        """)
    assert err.value.problems == [
        "sinks[1]: the same broker and topic_prefix as sinks[0]; a homeassistant sink already publishes the native "
        "contract there: keep one of the two"]
    ok = make_site("""
        site: {{id: ha}}
        sinks:
          - {{type: mqtt, name: fleet, host: fleet.example.com}}
          - {{type: homeassistant, host: 127.0.0.1}}
    """)
    assert [c.name for c in ok.consumers] == ["fleet", "homeassistant"]
