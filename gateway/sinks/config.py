"""Site-file section `sinks`: MQTT brokers and InfluxDB endpoints the gateway delivers the durable log to.

`type` picks the variant. Secrets (passwords, tokens) may be given inline (usually as `${ENV_VAR}`), as
`*_env` (the name of an environment variable) or as `*_file` (a file holding the secret, e.g. a Docker/systemd
credential); they are `SecretStr` so that no repr or log line ever shows them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.core.strict import NAME, Strict

TOPIC_PREFIX = r"^[^#+\x00]+$"


class TlsConfig(Strict):
    """TLS towards the broker. Without ca_file the system's trusted CAs are used."""

    ca_file: str | None = Field(None, description="CA certificate(s) (PEM) that signed the server's certificate.")
    cert_file: str | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: str | None = Field(None, description="Key of the client certificate (PEM).")
    insecure: bool = Field(False, description="Skip certificate and host name checks (testing only).")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        return self


class MqttSinkConfig(Strict):
    """An MQTT broker (3.1.1 or 5). Topics: {topic_prefix}/{site}/{device}/data, .../status, .../health."""

    type: Literal["mqtt"]
    name: str = Field("mqtt", pattern=NAME, description="Name of this sink (its cursor in the log, its metrics).")
    host: str
    port: int | None = Field(None, ge=1, le=65535, description="Default 1883, or 8883 with tls.")
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    client_id: str | None = Field(None, description="Default: the username (the fleet broker forces the client id "
                                  "to it), else plume-{site}-{name}.")
    username: str | None = None
    password: SecretStr | None = None
    password_env: str | None = Field(None, description="Environment variable holding the password.")
    password_file: str | None = Field(None, description="File holding the password (first line).")
    tls: TlsConfig | None = None
    topic_prefix: str = Field("plume", pattern=TOPIC_PREFIX)
    qos: Literal[0, 1, 2] = Field(1, description="QoS of data messages. 0 gives up the delivery guarantee.")
    retain: bool = Field(False, description="Retain data messages (the last message of each device).")
    inflight: int = Field(100, ge=1, le=65535, description="Messages published and not yet acknowledged (the "
                          "sink's window of log records; an alarm event's two messages count as one).")
    batch: int = Field(500, ge=1, le=100_000, description="Readings taken from the log at once.")
    keepalive_s: int = Field(30, ge=5, le=65535)
    timeout_s: float = Field(10.0, gt=0, le=600, description="Connect and acknowledgement timeout.")
    reconnect_min_s: float = Field(0.5, gt=0, le=600)
    reconnect_max_s: float = Field(60.0, gt=0, le=3600)
    health_interval_s: float = Field(30.0, ge=0, description="Publish health this often (0: never).")
    availability: bool = Field(False, description="Publish a retained online/offline per device on "
                               "{topic_prefix}/{site}/{device}/status.")
    offline_after: int = Field(2, ge=1, le=1000, description="Failed polls in a row before a device is offline.")
    failover: list[str] = Field(default_factory=list, description="More brokers (host or host:port, same port "
                                "by default) to move to, in order, when the current one fails.")

    @field_validator("failover")
    @classmethod
    def _failover(cls, v: list[str]) -> list[str]:
        for entry in v:
            host, sep, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            if not host or (sep and not (port.isdigit() and 1 <= int(port) <= 65535)):
                raise ValueError(f"failover entry {entry!r}: expected host or host:port")
        return v

    @property
    def brokers(self) -> list[tuple[str, int]]:
        """The broker, then the failover brokers, as (host, port)."""
        out = [(self.host, self.effective_port)]
        for entry in self.failover:
            host, sep, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            out.append((host, int(port) if sep else self.effective_port))
        return out

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, v: Any) -> Any:
        return {5: "5", 311: "3.1.1", "311": "3.1.1", "v5": "5", "5.0": "5"}.get(v, v)

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)


class InfluxSinkConfig(Strict):
    """An InfluxDB write endpoint: v1 (/write: 1.x and v1-compatible servers) or v2 (/api/v2/write)."""

    type: Literal["influx"]
    name: str = Field("influx", pattern=NAME, description="Name of this sink (its cursor in the log, its metrics).")
    api: Literal["v1", "v2"] = Field("v1", description="v1: /write (db, rp, user/password); v2: /api/v2/write.")
    url: str = Field(description="Base URL, e.g. http://127.0.0.1:8086.")
    database: str | None = Field(None, description="v1: database.")
    retention_policy: str | None = Field(None, description="v1: retention policy (default: the database's).")
    create_database: bool = Field(True, description="v1: CREATE DATABASE when the server says it does not exist.")
    username: str | None = Field(None, description="v1: user.")
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: str | None = None
    org: str = Field("", description="v2: organization.")
    bucket: str | None = Field(None, description="v2: bucket.")
    token: SecretStr | None = None
    token_env: str | None = None
    token_file: str | None = None
    batch_size: int = Field(5000, ge=1, le=100_000, description="Points per write request.")
    linger_ms: int = Field(1000, ge=0, le=60_000, description="Wait this long for a fuller batch when live.")
    gzip: bool = True
    timeout_s: float = Field(10.0, gt=0, le=600)
    retry_min_s: float = Field(0.5, gt=0, le=600)
    retry_max_s: float = Field(60.0, gt=0, le=3600)
    ca_file: str | None = Field(None, description="CA for an https URL with a private certificate.")
    verify_tls: bool = True
    health_interval_s: float = Field(30.0, ge=0, description="Write health points this often (0: never).")

    @model_validator(mode="after")
    def _api_fields(self) -> InfluxSinkConfig:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r} must start with http:// or https://")
        if self.api == "v1" and not self.database:
            raise ValueError("api v1 needs database")
        if self.api == "v2" and not self.bucket:
            raise ValueError("api v2 needs bucket")
        return self


class HomeAssistantSinkConfig(MqttSinkConfig):
    """The broker Home Assistant uses: the native contract (with per-device availability) plus retained MQTT
    discovery configs, so each device and channel appears in Home Assistant with no YAML."""

    type: Literal["homeassistant"]  # type: ignore[assignment]
    name: str = Field("homeassistant", pattern=NAME, description="Name of this sink (its cursor in the log).")
    availability: bool = Field(True, description="Always on: the discovery configs point at the device status.")
    discovery_prefix: str = Field("homeassistant", pattern=TOPIC_PREFIX,
                                  description="Home Assistant's discovery prefix (its MQTT integration setting).")

    @model_validator(mode="after")
    def _availability_on(self) -> HomeAssistantSinkConfig:
        if not self.availability:
            raise ValueError("availability cannot be off: Home Assistant's entities follow the device status")
        return self


class ThingsBoardSinkConfig(Strict):
    """A ThingsBoard server taking Plume as its gateway (MQTT gateway API: v1/gateway/connect, telemetry,
    attributes, rpc). The gateway device's access token is the MQTT user name."""

    type: Literal["thingsboard"]
    name: str = Field("thingsboard", pattern=NAME, description="Name of this sink (its cursor in the log).")
    host: str
    port: int | None = Field(None, ge=1, le=65535, description="Default 1883, or 8883 with tls.")
    client_id: str | None = Field(None, description="Default plume-{site}-{name}.")
    token: SecretStr | None = Field(None, description="Access token of the gateway device in ThingsBoard.")
    token_env: str | None = None
    token_file: str | None = None
    tls: TlsConfig | None = None
    batch: int = Field(200, ge=1, le=10_000, description="Readings per telemetry message at most.")
    keepalive_s: int = Field(30, ge=5, le=65535)
    timeout_s: float = Field(10.0, gt=0, le=600)
    reconnect_min_s: float = Field(0.5, gt=0, le=600)
    reconnect_max_s: float = Field(60.0, gt=0, le=3600)
    offline_after: int = Field(2, ge=1, le=1000, description="Failed polls in a row before a device disconnects.")

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)


SinkConfig = Annotated[MqttSinkConfig | InfluxSinkConfig | HomeAssistantSinkConfig | ThingsBoardSinkConfig,
                       Field(discriminator="type")]
SINK_TYPES = ("mqtt", "influx", "homeassistant", "thingsboard")


def resolve_secret(
    where: str, value: SecretStr | None, env: str | None, file: str | None, problems: list[str],
    base: Path | None = None,
) -> str | None:
    """The secret from the inline value, the environment variable or the file (first non-empty wins).

    Problems name the field, never the secret."""
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if env:
        got = os.environ.get(env)
        if got:
            return got
        problems.append(f"{where}_env: environment variable {env} is not set")
        return None
    if file:
        path = Path(file).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        try:
            text = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            problems.append(f"{where}_file: cannot read {path}: {exc.strerror}")
            return None
        return text[0].strip() if text else ""
    return None
