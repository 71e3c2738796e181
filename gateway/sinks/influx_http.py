"""The two InfluxDB write transports. Each answers a write with (HTTP status, server message) or raises
`TransportError` when no answer came (refused, reset, timeout) — the sink decides what a status means.

- v1 `/write?db=&rp=&precision=ms` through httpx: InfluxDB 1.x and every v1-compatible endpoint (2.x, 3.x,
  VictoriaMetrics). User and password go in a Basic auth header, never in the URL (which ends up in logs).
- v2 `/api/v2/write?org=&bucket=&precision=ms` through the same httpx (InfluxDB 2.x, 3.x, 1.8+ with a token):
  the body is our line protocol either way, so no client library is needed (influxdb-client would add aiohttp,
  reactivex and ~20 MB of RSS for the same POST). The token goes in an `Authorization: Token` header.
"""

from __future__ import annotations

import gzip
import json
import ssl
from typing import Any, Protocol

from gateway.sinks.config import InfluxSinkConfig


class TransportError(Exception):
    """No HTTP answer: the server is down, unreachable or too slow."""


class Writer(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, body: str) -> tuple[int, str]: ...

    async def create_database(self) -> tuple[int, str]: ...


def _ssl(cfg: InfluxSinkConfig) -> ssl.SSLContext | bool:
    if not cfg.verify_tls:
        return False
    if cfg.ca_file:
        return ssl.create_default_context(cafile=cfg.ca_file)
    return True


class _HttpWriter:
    """One httpx client for one write endpoint; `_post` turns "no answer" into TransportError."""

    def __init__(self, cfg: InfluxSinkConfig):
        self.cfg = cfg
        self._client: Any = None

    def _client_options(self) -> dict[str, Any]:
        return {}

    async def open(self) -> None:
        import httpx

        self._client = httpx.AsyncClient(
            base_url=self.cfg.url.rstrip("/"), timeout=self.cfg.timeout_s, verify=_ssl(self.cfg),
            **self._client_options(),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _post(self, path: str, **kwargs: Any) -> tuple[int, str]:
        import httpx

        try:
            r = await self._client.post(path, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransportError(f"timed out after {self.cfg.timeout_s:g} s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransportError(str(exc) or type(exc).__name__) from None
        return r.status_code, _message(r.text)

    def _body(self, body: str) -> tuple[bytes, dict[str, str]]:
        data = body.encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.cfg.gzip:
            data = gzip.compress(data, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return data, headers


def _message(text: str) -> str:
    """The server's reason: InfluxDB 2.x/3.x answer errors as JSON {"code": ..., "message": ...}."""
    text = text.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            code = doc.get("code")
            text = f"{code}: {doc['message']}" if isinstance(code, str) else doc["message"]
    return text[:500]


class V1Writer(_HttpWriter):
    def __init__(self, cfg: InfluxSinkConfig, password: str | None):
        super().__init__(cfg)
        self._password = password
        params = {"db": cfg.database or "", "precision": "ms"}
        if cfg.retention_policy:
            params["rp"] = cfg.retention_policy
        self._params = params

    def _client_options(self) -> dict[str, Any]:
        import httpx

        return {"auth": httpx.BasicAuth(self.cfg.username, self._password or "") if self.cfg.username else None}

    async def write(self, body: str) -> tuple[int, str]:
        data, headers = self._body(body)
        return await self._post("/write", params=self._params, content=data, headers=headers)

    async def create_database(self) -> tuple[int, str]:
        name = (self.cfg.database or "").replace("\\", "\\\\").replace('"', '\\"')
        return await self._post("/query", data={"q": f'CREATE DATABASE "{name}"'})


class V2Writer(_HttpWriter):
    """POST /api/v2/write?org=&bucket=&precision=ms with `Authorization: Token ...` (the token never in the URL)."""

    def __init__(self, cfg: InfluxSinkConfig, token: str | None):
        super().__init__(cfg)
        self._params = {"org": cfg.org or "-", "bucket": cfg.bucket or "", "precision": "ms"}
        self._token = token

    def _client_options(self) -> dict[str, Any]:
        return {"headers": {"Authorization": f"Token {self._token}"}} if self._token else {}

    async def write(self, body: str) -> tuple[int, str]:
        data, headers = self._body(body)
        return await self._post("/api/v2/write", params=self._params, content=data, headers=headers)

    async def create_database(self) -> tuple[int, str]:
        return 501, "v2 buckets are not created by the gateway"


def make_writer(cfg: InfluxSinkConfig, secret: str | None) -> Writer:
    return V1Writer(cfg, secret) if cfg.api == "v1" else V2Writer(cfg, secret)
