"""A real webhook receiver for the scenario tests: an HTTP/1.1 server on a loopback port that records every POST
(path, headers, JSON body) and answers 200. It can be down (port closed) and come back on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


class WebhookReceiver:
    def __init__(self, port: int):
        self.port = port
        self.requests: list[Request] = []
        self._server: asyncio.Server | None = None
        self._got = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, cond: Any, timeout: float = 60.0) -> list[Request]:
        """Until `cond(requests)` holds (each new request wakes it up)."""
        async def loop() -> list[Request]:
            while not cond(self.requests):
                self._got.clear()
                await self._got.wait()
            return self.requests

        return await asyncio.wait_for(loop(), timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Request(path, headers, json.loads(body) if body else None))
                self._got.set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
                             b'{"ok":true}')
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()
