"""The base of every settings model: unknown keys are errors, so a typo in a site, profile or rule-pack file never
passes silently; and the pattern names that become MQTT topic segments and InfluxDB tags must match."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Strict(BaseModel):
    """A pydantic model that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid")
