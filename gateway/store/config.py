"""Site-file section `store`: where the durable log lives and how much it may keep."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
