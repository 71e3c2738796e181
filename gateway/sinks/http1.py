"""A minimal HTTP/1.1 client on asyncio streams for the InfluxDB writes: one keep-alive connection, POST only.

Why not httpx: the sink sends a body it built itself to one endpoint, and httpx with httpcore, anyio and h11 costs
the running gateway ~6 MB of RSS (measured; README "Benchmarks") for that one POST. What this does: http and
https (the standard library's TLS: the system's CA store, or `ca_file`, or no verification), a path prefix in the
base URL, `Content-Length` and chunked answers, keep-alive with one retry when a kept-alive connection turns out
to be closed before any answer came (an InfluxDB write is idempotent). What it does not: redirects, proxies from
the environment, HTTP/2. Every failure to get an answer raises `NoAnswer` with a one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlencode, urlsplit

MAX_ANSWER = 1 << 20  # bytes of an answer's body kept (an error message; InfluxDB answers a write with 204)


class NoAnswer(Exception):
    """The server gave no (complete) HTTP answer: refused, reset, closed, timed out."""


class Http1Client:
    """POSTs to one origin over one kept-alive connection (requests are serialised by a lock)."""

    def __init__(self, base_url: str, timeout_s: float, tls: ssl.SSLContext | None = None,
                 headers: dict[str, str] | None = None):
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        self.tls = tls if url.scheme == "https" else None
        if url.scheme == "https" and self.tls is None:
            self.tls = ssl.create_default_context()
        self.timeout_s = timeout_s
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if url.scheme == "https" else 80
        self._host_header = host if self.port == default else f"{host}:{self.port}"
        self._headers = headers or {}
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn[1].close()
            with contextlib.suppress(Exception):
                await conn[1].wait_closed()

    async def post(self, path: str, body: bytes, params: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, str]:
        """(status, answer text). Raises NoAnswer when no complete answer came within the timeout."""
        target = self.prefix + path + ("?" + urlencode(params) if params else "")
        head = [f"POST {target} HTTP/1.1", f"Host: {self._host_header}", f"Content-Length: {len(body)}",
                "User-Agent: plume", "Accept-Encoding: identity"]
        head += [f"{k}: {v}" for k, v in {**self._headers, **(headers or {})}.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await self._exchange(request)
            except TimeoutError:
                await self.close()
                raise NoAnswer(f"timed out after {self.timeout_s:g} s") from None

    async def _exchange(self, request: bytes) -> tuple[int, str]:
        for attempt in range(2):
            reused = self._conn is not None
            try:
                if self._conn is None:
                    self._conn = await asyncio.open_connection(
                        self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None)
                reader, writer = self._conn
                writer.write(request)
                await writer.drain()
                status_line = await reader.readline()
                if not status_line:
                    raise ConnectionResetError("the server closed the connection without an answer")
                return await self._answer(reader, status_line)
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError, ValueError) as exc:
                await self.close()
                stale = reused and attempt == 0 and isinstance(exc, (ConnectionError, asyncio.IncompleteReadError))
                if not stale:
                    raise NoAnswer(str(exc) or type(exc).__name__) from None
        raise AssertionError("unreachable")

    async def _answer(self, reader: asyncio.StreamReader, status_line: bytes) -> tuple[int, str]:
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
        status = int(parts[1])
        fields: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            body = await _chunked(reader)
        elif "content-length" in fields:
            body = await reader.readexactly(int(fields["content-length"]))
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:  # no length: the body ends with the connection
            body = await reader.read(MAX_ANSWER)
            fields["connection"] = "close"
        if fields.get("connection", "").lower() == "close" or parts[0] == b"HTTP/1.0":
            await self.close()
        return status, body[:MAX_ANSWER].decode("utf-8", "replace")


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(out)
        chunk = await reader.readexactly(size + 2)
        if len(out) < MAX_ANSWER:
            out += chunk[:-2]
