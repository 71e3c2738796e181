"""The two InfluxDB write transports. Each answers a write with (HTTP status, server message) or raises
`TransportError` when no answer came (refused, reset, timeout) — the sink decides what a status means.

- v1 `/write?db=&rp=&precision=ms`: InfluxDB 1.x and every v1-compatible endpoint (2.x, 3.x, VictoriaMetrics).
  User and password go in a Basic auth header, never in the URL (which ends up in logs).
- v2 `/api/v2/write?org=&bucket=&precision=ms` (InfluxDB 2.x, 3.x, 1.8+ with a token): the body is our line
  protocol either way, so no client library is needed (influxdb-client would add aiohttp, reactivex and ~20 MB of
  RSS for the same POST). The token goes in an `Authorization: Token` header.

Both post through `gateway.sinks.http1` (one kept-alive HTTP/1.1 connection on asyncio streams): httpx would cost
the gateway ~6 MB of RSS for the same POST.
"""

from __future__ import annotations

import base64
import gzip
import json
import ssl
from typing import Protocol
from urllib.parse import urlencode

from gateway.sinks.config import InfluxSinkConfig
from gateway.sinks.http1 import Http1Client, NoAnswer


class TransportError(Exception):
    """No HTTP answer: the server is down, unreachable or too slow."""


class Writer(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, body: str) -> tuple[int, str]: ...

    async def create_database(self) -> tuple[int, str]: ...


def _ssl(cfg: InfluxSinkConfig) -> ssl.SSLContext | None:
    """The TLS context of an https URL: the system's CA store, `ca_file`, or (verify_tls false) no checks."""
    if not cfg.url.lower().startswith("https:"):
        return None
    if not cfg.verify_tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=cfg.ca_file or None)


class _HttpWriter:
    """One kept-alive connection to one write endpoint; `_post` turns "no answer" into TransportError."""

    def __init__(self, cfg: InfluxSinkConfig):
        self.cfg = cfg
        self._client: Http1Client | None = None

    def _headers(self) -> dict[str, str]:
        return {}

    async def open(self) -> None:
        self._client = Http1Client(self.cfg.url, self.cfg.timeout_s, _ssl(self.cfg), self._headers())

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _post(self, path: str, body: bytes, headers: dict[str, str],
                    params: dict[str, str] | None = None) -> tuple[int, str]:
        assert self._client is not None, "open() first"
        try:
            status, text = await self._client.post(path, body, params, headers)
        except NoAnswer as exc:
            raise TransportError(str(exc)) from None
        return status, _message(text)

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

    def _headers(self) -> dict[str, str]:
        if not self.cfg.username:
            return {}
        login = base64.b64encode(f"{self.cfg.username}:{self._password or ''}".encode()).decode("ascii")
        return {"Authorization": f"Basic {login}"}

    async def write(self, body: str) -> tuple[int, str]:
        data, headers = self._body(body)
        return await self._post("/write", data, headers, self._params)

    async def create_database(self) -> tuple[int, str]:
        name = (self.cfg.database or "").replace("\\", "\\\\").replace('"', '\\"')
        form = urlencode({"q": f'CREATE DATABASE "{name}"'}).encode("ascii")
        return await self._post("/query", form, {"Content-Type": "application/x-www-form-urlencoded"})


class V2Writer(_HttpWriter):
    """POST /api/v2/write?org=&bucket=&precision=ms with `Authorization: Token ...` (the token never in the URL)."""

    def __init__(self, cfg: InfluxSinkConfig, token: str | None):
        super().__init__(cfg)
        self._params = {"org": cfg.org or "-", "bucket": cfg.bucket or "", "precision": "ms"}
        self._token = token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self._token}"} if self._token else {}

    async def write(self, body: str) -> tuple[int, str]:
        data, headers = self._body(body)
        return await self._post("/api/v2/write", data, headers, self._params)

    async def create_database(self) -> tuple[int, str]:
        return 501, "v2 buckets are not created by the gateway"


def make_writer(cfg: InfluxSinkConfig, secret: str | None) -> Writer:
    return V1Writer(cfg, secret) if cfg.api == "v1" else V2Writer(cfg, secret)
