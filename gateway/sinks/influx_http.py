"""The two InfluxDB write transports. Each answers a write with (HTTP status, server message) or raises
`TransportError` when no answer came (refused, reset, timeout) — the sink decides what a status means.

- v1 `/write?db=&rp=&precision=ms` through httpx: InfluxDB 1.x and every v1-compatible endpoint (2.x, 3.x,
  VictoriaMetrics). User and password go in a Basic auth header, never in the URL (which ends up in logs).
- v2 `/api/v2/write` through influxdb-client's async API (InfluxDB 2.x, 3.x, 1.8+ with a token). That library
  costs ~40 MB of memory and 0.4 s of imports, so it is imported only when a v2 sink is configured.
"""

from __future__ import annotations

import gzip
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


class V1Writer:
    def __init__(self, cfg: InfluxSinkConfig, password: str | None):
        self.cfg = cfg
        self._password = password
        self._client: Any = None
        params = {"db": cfg.database or "", "precision": "ms"}
        if cfg.retention_policy:
            params["rp"] = cfg.retention_policy
        self._params = params

    async def open(self) -> None:
        import httpx

        auth = httpx.BasicAuth(self.cfg.username, self._password or "") if self.cfg.username else None
        self._client = httpx.AsyncClient(
            base_url=self.cfg.url.rstrip("/"), timeout=self.cfg.timeout_s, auth=auth, verify=_ssl(self.cfg),
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
        return r.status_code, r.text.strip()[:500]

    async def write(self, body: str) -> tuple[int, str]:
        data = body.encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.cfg.gzip:
            data = gzip.compress(data, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return await self._post("/write", params=self._params, content=data, headers=headers)

    async def create_database(self) -> tuple[int, str]:
        name = (self.cfg.database or "").replace("\\", "\\\\").replace('"', '\\"')
        return await self._post("/query", data={"q": f'CREATE DATABASE "{name}"'})


class V2Writer:
    def __init__(self, cfg: InfluxSinkConfig, token: str | None):
        self.cfg = cfg
        self._token = token
        self._client: Any = None
        self._api: Any = None

    async def open(self) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        verify = _ssl(self.cfg)
        self._client = InfluxDBClientAsync(
            url=self.cfg.url, token=self._token or "", org=self.cfg.org or "-",
            timeout=int(self.cfg.timeout_s * 1000), enable_gzip=self.cfg.gzip,
            verify_ssl=verify is not False, ssl_ca_cert=self.cfg.ca_file,
        )
        self._api = self._client.write_api()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def write(self, body: str) -> tuple[int, str]:
        import aiohttp
        from influxdb_client.client.write_api import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            await self._api.write(bucket=self.cfg.bucket, org=self.cfg.org or "-", record=body.encode(),
                                  write_precision=WritePrecision.MS)
        except ApiException as exc:
            return int(exc.status or 0), str(exc.body or exc.reason or "").strip()[:500]
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransportError(str(exc) or type(exc).__name__) from None
        return 204, ""

    async def create_database(self) -> tuple[int, str]:
        return 501, "v2 buckets are not created by the gateway"


def make_writer(cfg: InfluxSinkConfig, secret: str | None) -> Writer:
    return V1Writer(cfg, secret) if cfg.api == "v1" else V2Writer(cfg, secret)
