"""A small HTTP/1.1 server for the event loop: h11 (the sans-I/O protocol library httpx already brings) driven by
asyncio streams. Why not aiohttp or uvicorn: measured on this machine, a running aiohttp server adds ~12 MB of RSS
(and C extensions to build on a Pi), uvicorn + Starlette ~3 MB but wake up 10 times a second (2 ms CPU per second
idle) and take over the process's signal handlers; this one adds ~1 MB and sleeps when nobody asks.

What it does: keep-alive, request bodies up to `max_body` bytes, one handler for every request, server-sent
event streams (chunked; ended when the client goes away), an idle timeout, a cap on open connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

log = logging.getLogger("plume.cockpit")

SECURITY_HEADERS = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("content-security-policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                "connect-src 'self'; frame-ancestors 'none'"),
]


@dataclass(slots=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""
    peer: str = ""
    path: str = field(init=False)
    query: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        self.path = unquote(parts.path) or "/"
        self.query = dict(parse_qsl(parts.query))

    def cookie(self, name: str) -> str | None:
        raw = self.headers.get("cookie")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return None
        morsel = jar.get(name)
        return morsel.value if morsel is not None else None

    def json(self) -> Any:
        """The body as JSON, or a form (application/x-www-form-urlencoded) as a dict."""
        if self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return dict(parse_qsl(self.body.decode(errors="replace")))
        return json.loads(self.body or b"{}")


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(data, ensure_ascii=False, allow_nan=False, default=str),
                   "application/json; charset=utf-8", [("cache-control", "no-store")])


@dataclass(slots=True)
class EventStream:
    """A server-sent events response: each item `events` yields is one complete event (bytes)."""

    events: AsyncIterator[bytes]
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response | EventStream]]


def sse(event: str, data: Any) -> bytes:
    body = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str)
    return f"event: {event}\ndata: {body}\n\n".encode()


class HttpServer:
    """Serve `handler` on host:port until `stop()`."""

    def __init__(self, handler: Handler, host: str, port: int, *, max_body: int = 65_536, idle_s: float = 30.0,
                 max_connections: int = 32):
        self.handler = handler
        self.host = host
        self.port = port
        self.max_body = max_body
        self.idle_s = idle_s
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16_384)
        peer = writer.get_extra_info("peername")
        try:
            if len(self._tasks) > self.max_connections:
                await self._send(conn, writer, Response(503, "too many connections\n"))
                return
            while True:
                try:
                    req = await self._read(conn, reader, str(peer[0]) if peer else "")
                except h11.RemoteProtocolError as exc:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await self._send(conn, writer, Response(exc.error_status_hint, "bad request\n"))
                    return
                except _TooLarge:
                    await self._send(conn, writer, Response(413, "request body too large\n"))
                    return
                if req is None:
                    return
                try:
                    resp = await self.handler(req)
                except Exception:
                    log.exception("cockpit: %s %s failed", req.method, req.path)
                    resp = Response(500, "internal error (see the gateway's log)\n")
                if isinstance(resp, EventStream):
                    await self._stream(conn, reader, writer, resp)
                    return
                await self._send(conn, writer, resp)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, TimeoutError, h11.LocalProtocolError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read(self, conn: h11.Connection, reader: asyncio.StreamReader, peer: str) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                async with asyncio.timeout(self.idle_s):
                    data = await reader.read(65_536)
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.max_body:
                    raise _TooLarge
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = {k.decode().lower(): v.decode(errors="replace") for k, v in head.headers}
                return Request(head.method.decode(), head.target.decode(errors="replace"), headers, bytes(body), peer)
            else:  # ConnectionClosed, PAUSED
                return None

    @staticmethod
    def _head(status: int, content_type: str, extra: list[tuple[str, str]], length: int | None) -> h11.Response:
        headers = [("content-type", content_type), *SECURITY_HEADERS, *extra]
        if length is not None:
            headers.append(("content-length", str(length)))
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        return h11.Response(status_code=status, headers=headers, reason=reason)

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, resp: Response) -> None:
        body = resp.body.encode() if isinstance(resp.body, str) else resp.body
        writer.write(conn.send(self._head(resp.status, resp.content_type, resp.headers, len(body))))
        if body:
            writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def _stream(self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      resp: EventStream) -> None:
        writer.write(conn.send(self._head(200, "text/event-stream; charset=utf-8",
                                          [("cache-control", "no-store"), *resp.headers], None)))
        await writer.drain()

        async def pump() -> None:
            async for chunk in resp.events:
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()

        async def gone() -> None:
            while await reader.read(4096):
                pass

        tasks = [asyncio.create_task(pump(), name="cockpit.sse"), asyncio.create_task(gone(), name="cockpit.eof")]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            aclose = getattr(resp.events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


class _TooLarge(Exception):
    pass
