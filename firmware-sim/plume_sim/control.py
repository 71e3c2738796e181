"""The control port: set and clear faults while the simulator runs, one JSON object per line.

    {"device": "dust-1", "fault": "timeout:0.5"}  ->  {"ok": true}
    {"device": "dust-1", "fault": null}           ->  {"ok": true}        (clears it)
    {"get": "faults"}                             ->  {"ok": true, "faults": {"dust-1": "timeout:0.5"}}
    {"get": "written", "device": "dust-2"}        ->  {"ok": true, "written": [...]}
    anything wrong                                ->  {"ok": false, "error": "one line"}

Loopback only: it can make devices lie, so it must not be reachable from the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from typing import Any, Protocol


class Controllable(Protocol):
    def set_fault(self, device: str, fault: str | None) -> None: ...

    @property
    def faults(self) -> dict[str, str]: ...

    def written(self, device: str) -> list[dict[str, Any]]: ...


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT on a loopback address (port 0 picks a free one); ValueError says what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"control address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:15099")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"control address {text!r}: must be on loopback (127.0.0.1, ::1 or localhost)")
    return host, int(port)


def handle(sim: Controllable, line: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(line)
    except ValueError as exc:
        return {"ok": False, "error": f"not JSON: {exc}"}
    if not isinstance(msg, dict):
        return {"ok": False, "error": "expected a JSON object"}
    try:
        if msg.get("get") == "faults":
            return {"ok": True, "faults": sim.faults}
        if msg.get("get") == "written":
            return {"ok": True, "written": sim.written(str(msg.get("device")))}
        if "device" not in msg or "fault" not in msg:
            return {"ok": False, "error": 'expected {"device": NAME, "fault": "KIND[:ARG]" or null}'}
        fault = msg["fault"]
        if fault is not None and not isinstance(fault, str):
            return {"ok": False, "error": "fault must be a string such as \"timeout:0.5\", or null"}
        sim.set_fault(str(msg["device"]), fault)
    except (KeyError, ValueError) as exc:
        return {"ok": False, "error": str(exc.args[0]) if exc.args else str(exc)}
    return {"ok": True}


class ControlServer:
    def __init__(self, sim: Controllable, address: str):
        self.sim = sim
        self.host, self.port = parse_address(address)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer), name="plume-sim.control")
        self._tasks.add(task)
        try:
            await task
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            if line.strip():
                writer.write(json.dumps(handle(self.sim, line)).encode() + b"\n")
                await writer.drain()
