"""Home Assistant MQTT discovery: a dust monitor appears in Home Assistant with no YAML.

The `homeassistant` sink is the native contract (data, site status with its last will, per-device availability)
towards the broker Home Assistant uses, plus a retained discovery config per device and channel under
`{discovery_prefix}/{sensor|binary_sensor}/{node}/{channel}/config`. Each entity reads its value from the native
data message (`value_template`), its flag and note as attributes, and is available while both its device status and
the site status say `online` (`availability_mode: all`). Configs are announced from the readings in log order (so
derived channels such as `so2_zs` appear too) the first time a device reports a channel on a connection, and
removed with an empty retained message once the device has left the site file (the announced topics are kept in
`homeassistant-{name}.json` beside the log, so a removal survives a restart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from gateway import __version__
from gateway.profile import DataType, RegisterSpec
from gateway.sinks.config import HomeAssistantSinkConfig
from gateway.sinks.contract import data_topic, device_status_topic, json_payload, status_topic
from gateway.sinks.mqtt import MqttSink
from gateway.store.log import DurableLog
from gateway.store.records import ReadingRecord

log = logging.getLogger("plume.sink.homeassistant")

# Plume's units as Home Assistant spells them (its unit checks compare these strings exactly)
HA_UNITS = {"ug/m3": "µg/m³", "mg/m3": "mg/m³", "m3/h": "m³/h", "m3": "m³", "C": "°C", "%RH": "%", "dB(A)": "dBA",
            "deg": "°", "kg/h": "kg/h"}

# device class -> the units Home Assistant accepts for it (homeassistant.components.sensor DEVICE_CLASS_UNITS)
CLASS_UNITS: dict[str, frozenset[str]] = {
    "pm1": frozenset({"µg/m³"}),
    "pm10": frozenset({"µg/m³"}),
    "pm25": frozenset({"µg/m³"}),
    "sulphur_dioxide": frozenset({"µg/m³"}),
    "nitrogen_dioxide": frozenset({"µg/m³"}),
    "nitrogen_monoxide": frozenset({"µg/m³"}),
    "temperature": frozenset({"°C", "°F", "K"}),
    "humidity": frozenset({"%"}),
    "atmospheric_pressure": frozenset({"cbar", "bar", "hPa", "inHg", "kPa", "mbar", "Pa", "psi", "mmHg"}),
    "pressure": frozenset({"cbar", "bar", "hPa", "inHg", "kPa", "mbar", "Pa", "psi", "mmHg"}),
    "sound_pressure": frozenset({"dB", "dBA"}),
    "wind_speed": frozenset({"ft/s", "km/h", "kn", "m/s", "mph"}),
    "speed": frozenset({"ft/s", "in/d", "in/h", "in/s", "km/h", "kn", "m/s", "mm/d", "mm/h", "mm/s", "mph"}),
    "precipitation": frozenset({"cm", "in", "mm"}),
    "volume_flow_rate": frozenset({"m³/h", "ft³/min", "L/min", "gal/min", "mL/s"}),
    "duration": frozenset({"d", "h", "min", "s", "ms"}),
}

# channel name -> device class (used only when the channel's unit is one Home Assistant accepts for it)
CHANNEL_CLASSES = {
    "pm1": "pm1", "pm10": "pm10", "pm25": "pm25", "so2": "sulphur_dioxide", "no2": "nitrogen_dioxide",
    "no": "nitrogen_monoxide", "temperature": "temperature", "flue_temperature": "temperature",
    "cell_temperature": "temperature", "humidity": "humidity", "pressure": "atmospheric_pressure",
    "flue_pressure": "pressure", "noise": "sound_pressure", "wind_speed": "wind_speed", "flue_velocity": "speed",
    "rainfall": "precipitation", "flow": "volume_flow_rate", "flow_std": "volume_flow_rate",
    "run_hours": "duration",
}

_NODE = re.compile(r"[^a-zA-Z0-9_-]")


def ha_unit(unit: str) -> str:
    return HA_UNITS.get(unit, unit)


def node_id(site: str, device: str) -> str:
    """The discovery topic's node id ([a-zA-Z0-9_-] only)."""
    return _NODE.sub("_", f"plume_{site}_{device}")


def precision(spec: RegisterSpec | None) -> int | None:
    """Decimals worth showing: those the register's scale gives an integer register (0.1 -> 1)."""
    if spec is None or spec.type in (DataType.f32, DataType.f64, DataType.string, DataType.bits) or spec.linear:
        return None
    if spec.scale == 0:
        return None
    return max(0, -math.floor(math.log10(abs(spec.scale)) + 1e-9))


@dataclass(slots=True, frozen=True)
class HaDevice:
    """What Home Assistant's device registry shows for one device of the site file."""

    name: str
    model: str
    kind: str
    description: str = ""
    registers: dict[str, RegisterSpec] = field(default_factory=dict)


def discovery_config(prefix: str, discovery_prefix: str, site: str, dev: HaDevice, channel: str, unit: str,
                     numeric: bool) -> tuple[str, dict[str, Any]]:
    """The discovery topic and config of one channel of one device."""
    spec = dev.registers.get(channel)
    node = node_id(site, dev.name)
    binary = spec is not None and spec.type is DataType.bits
    component = "binary_sensor" if binary else "sensor"
    picked = f"value_json['values'].get('{channel}')"
    if binary:
        value = (f"{{% set c = {picked} %}}{{{{ '' if not c else ('None' if c['value'] is none else "
                 f"('ON' if c['value'] else 'OFF')) }}}}")
    else:
        value = f"{{% set c = {picked} %}}{{{{ c['value'] if c else '' }}}}"
    cfg: dict[str, Any] = {
        "name": channel,
        "unique_id": f"{node}_{channel}",
        "state_topic": data_topic(prefix, site, dev.name),
        "value_template": value,
        "json_attributes_topic": data_topic(prefix, site, dev.name),
        "json_attributes_template": f"{{{{ value_json['values'].get('{channel}', {{}}) | tojson }}}}",
        "availability": [{"topic": device_status_topic(prefix, site, dev.name)},
                         {"topic": status_topic(prefix, site)}],
        "availability_mode": "all",
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "device": {"identifiers": [node], "name": dev.name, "model": dev.model, "manufacturer": "Plume",
                   "sw_version": __version__},
        "origin": {"name": "Plume", "sw_version": __version__},
    }
    if binary:
        cfg["payload_on"] = "ON"
        cfg["payload_off"] = "OFF"
    else:
        u = ha_unit(unit)
        if u:
            cfg["unit_of_measurement"] = u
        cls = CHANNEL_CLASSES.get(channel)
        if cls is not None and u in CLASS_UNITS[cls]:
            cfg["device_class"] = cls
        if numeric:
            cfg["state_class"] = "measurement"
            digits = precision(spec)
            if digits is not None:
                cfg["suggested_display_precision"] = digits
    return f"{discovery_prefix}/{component}/{node}/{channel}/config", cfg


class HomeAssistantSink(MqttSink):
    """The native contract plus Home Assistant discovery, to Home Assistant's broker (see the module doc)."""

    type = "homeassistant"

    def __init__(self, cfg: HomeAssistantSinkConfig, site_id: str, log_: DurableLog, *,
                 devices: dict[str, HaDevice], state_path: Path, **kwargs: Any):
        super().__init__(cfg, site_id, log_, **kwargs)
        self.discovery_prefix = cfg.discovery_prefix
        self.status.type = "homeassistant"
        self.devices = devices
        self.state_path = state_path
        self.announced: dict[str, str] = self._load()  # discovery topic -> device
        self._session_channels: dict[str, set[str]] = {}
        self.removed = 0

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            return {str(k): str(v) for k, v in data.get("topics", {}).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("homeassistant[%s]: cannot read %s (%s); devices removed earlier may stay in Home "
                        "Assistant until deleted there", self.name, self.state_path, exc)
            return {}

    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"topics": self.announced}, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.state_path)
        except OSError as exc:  # delivery goes on; only a later removal could miss these topics
            log.warning("homeassistant[%s]: cannot write %s (%s); entities announced now may not be removed "
                        "automatically if their device leaves the site file", self.name, self.state_path, exc)

    async def _session(self, client: aiomqtt.Client) -> bool:
        self._session_channels = {}
        await self._remove_departed(client)
        return await super()._session(client)

    async def _remove_departed(self, client: aiomqtt.Client) -> None:
        """An empty retained config for every entity of a device that left the site file."""
        gone = {t: d for t, d in self.announced.items() if d not in self.devices}
        if not gone:
            return
        await asyncio.gather(*(client.publish(t, b"", qos=1, retain=True, timeout=self.cfg.timeout_s)
                               for t in gone))
        for t in gone:
            del self.announced[t]
        self.removed += len(gone)
        self._save()
        log.info("homeassistant[%s]: removed %d entities of devices no longer in the site file (%s)", self.name,
                 len(gone), ", ".join(sorted(set(gone.values()))))

    def _with_device_status(self, client: aiomqtt.Client, rec: ReadingRecord,
                            data: asyncio.Future[Any]) -> asyncio.Future[Any]:
        fut = super()._with_device_status(client, rec, data)
        dev = self.devices.get(rec.reading.device)
        if dev is None:
            return fut  # a reading of a device that has left the site file (still in the log): no entity
        seen = self._session_channels.setdefault(dev.name, set())
        new = [ch for ch in rec.reading.values if ch not in seen]
        if not new:
            return fut
        publishes = []
        for ch in new:
            cv = rec.reading.values[ch]
            spec = dev.registers.get(ch)
            numeric = spec.type is not DataType.string if spec is not None else not isinstance(cv.value, str)
            topic, cfg = discovery_config(self.cfg.topic_prefix, self.discovery_prefix, self.site_id, dev, ch,
                                          cv.unit, numeric)
            publishes.append(client.publish(topic, json_payload(cfg), qos=1, retain=True,
                                            timeout=self.cfg.timeout_s))
            self.announced[topic] = dev.name
            seen.add(ch)
        self._save()
        return asyncio.gather(fut, *publishes)
