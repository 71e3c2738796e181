"""Site-file section `sinks`: MQTT brokers and InfluxDB endpoints the gateway delivers to."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class SinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["mqtt", "influx"]
    name: str
