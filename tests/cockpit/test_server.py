"""The cockpit's HTTP side in process: a gateway stand-in with a real durable log, the real server on a free
loopback port, real HTTP clients (httpx). What a browser or a curl would see."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from gateway.cockpit.config import CockpitConfig
from gateway.cockpit.server import Cockpit, endpoint_path
from gateway.site.load import load_site
from gateway.site.model import Site
from gateway.store.log import DurableLog
from tests.pipeline.helpers import reading

SITE = """\
site: {id: s, timezone: Europe/Berlin}
buses: [{name: lan, type: tcp, host: 127.0.0.1, port: 1}]
devices: [{name: dust-1, bus: lan, address: 1, profile: dust-monitor}]
store: {dir: log}
"""


class StandIn:
    """What the cockpit reads from a running gateway: a real log, no acquisition, no stage."""

    def __init__(self, site: Site, lg: DurableLog):
        self.site = site
        self.log: DurableLog | None = lg
        self.stage: Any = None
        self.source: Any = None
        self.sinks: list[Any] = []
        self.commands: list[dict[str, Any]] = []

    def command(self, cmd: dict[str, Any]) -> str | None:
        self.commands.append(cmd)
        return None

    def on_commit(self, callback: Any) -> None:
        assert self.log is not None
        self.log.on_commit(callback)

    async def health(self) -> dict[str, Any]:
        return {"sinks": {}, "log": {"bytes": 0, "readings": 0, "dropped": 0, "buffered": 0}}


async def _cockpit(tmp_path: Path) -> tuple[Cockpit, DurableLog]:
    path = tmp_path / "site.yaml"
    path.write_text(SITE, encoding="utf-8")
    site = load_site(path)
    lg = DurableLog(tmp_path / "log" / "log.sqlite", site.config.store)
    await lg.open()
    cockpit = Cockpit(StandIn(site, lg), CockpitConfig(enabled=True, port=1, host="127.0.0.1"))
    cockpit.server.port = 0
    await cockpit.start()
    return cockpit, lg


async def test_without_a_password_only_loopback_host_names_get_an_answer(tmp_path: Path) -> None:
    cockpit, lg = await _cockpit(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=cockpit.url) as c:
            assert (await c.get("/api/overview")).status_code == 200
            local = await c.get("/api/overview", headers={"host": f"localhost:{cockpit.server.port}"})
            assert local.status_code == 200
            rebound = await c.get("/api/overview", headers={"host": "evil.example:8470"})
            assert rebound.status_code == 401 and "dust-1" not in rebound.text
    finally:
        await cockpit.stop()
        await lg.close()


async def test_the_live_stream_sends_the_overview_again_when_a_reading_is_committed(tmp_path: Path) -> None:
    cockpit, lg = await _cockpit(tmp_path)
    committer = asyncio.create_task(lg.run())
    try:
        async with httpx.AsyncClient(base_url=cockpit.url, timeout=10) as c, c.stream("GET", "/api/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = r.aiter_lines()
            events: list[str] = []
            while len(events) < 1:
                line = await anext(lines)
                if line.startswith("data: "):
                    events.append(line)
            assert '"last_poll": null' in events[0]
            lg.append(reading("dust-1", 1_800_000_000_000, {"pm10": 42.5}, site="s"))
            while len(events) < 2:
                line = await anext(lines)
                if line.startswith("data: "):
                    events.append(line)
            assert '"last_poll": 1800000000000' in events[1] and '"value": 42.5' in events[1]
            assert "Europe/Berlin UTC+01:00" in events[1]
    finally:
        committer.cancel()
        await cockpit.stop()
        await lg.close()


async def test_the_endpoint_file_is_private_and_removed_at_stop(tmp_path: Path) -> None:
    cockpit, lg = await _cockpit(tmp_path)
    path = endpoint_path(tmp_path / "log")
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        token = cockpit.local_token
        assert token in path.read_text()
    finally:
        await cockpit.stop()
        await lg.close()
    assert not path.exists()
