"""The `cockpit:` section of the site file: where the page listens and how it is protected.

Off unless `enabled: true`. Bound to a loopback address it may run without a password (only this machine can
reach it); bound to anything else it needs `password_hash` (scrypt, made by `plume cockpit hash-password`). There
is never a default password.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.core.strict import Strict

SCHEME = "scrypt"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CockpitConfig(Strict):
    """The local web page and the API behind `plume status`."""

    enabled: bool = Field(False, description="Serve the cockpit page (off by default).")
    host: str = Field("127.0.0.1", description="Address to listen on; beyond loopback a password is required.")
    port: int = Field(8470, ge=1, le=65535)
    password_hash: str | None = Field(
        None, description="scrypt hash of the cockpit password (`plume cockpit hash-password`); never the password.")
    session_minutes: float = Field(480, gt=0, le=10_080, description="A login is valid this long.")
    language: Literal["auto", "zh", "en"] = Field(
        "auto", description="Default page language; auto: Chinese for a site whose zone is in China.")

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, v: str | None) -> str | None:
        if v is None:
            return None
        parts = v.split("$")
        if len(parts) != 6 or parts[0] != SCHEME or not all(p.isdigit() for p in parts[1:4]):
            raise ValueError("not a password hash made by `plume cockpit hash-password` "
                             "(scrypt$N$r$p$salt$hash); put the hash here, never the password")
        return v

    @model_validator(mode="after")
    def _password_beyond_loopback(self) -> CockpitConfig:
        if self.enabled and self.password_hash is None and not is_loopback(self.host):
            raise ValueError(f"cockpit.password_hash is required when the page listens on {self.host} (beyond "
                             "loopback); make one with `plume cockpit hash-password`")
        return self
