"""The cockpit inside `plume run`: routes, login, the live stream, and the local endpoint file for the CLI.

    GET  /  /alarms  /delivery  /device/NAME  /commissioning   the page (one shell; assets/app.js draws each view)
    GET  /login, /assets/*                                      public (no site data in them)
    POST /api/login {password} -> session cookie; POST /api/logout
    GET  /api/overview | alarms | delivery | device/NAME | status | log/tail?device=&n=   JSON
    GET  /api/events                                            server-sent events: `overview` on every change
    POST /api/alarms/ack {alarm_id, by, comment}                the same command path as MQTT cmd/ack
    POST /api/read/NAME                                         commissioning: read one device now

With a password configured every page and API needs a session (or the local token below); without one (only
allowed on loopback) the page is open to this machine. The local endpoint file `{store.dir}/cockpit.json`
(mode 0600: URL and a random token) lets `plume status` on this machine use the API; it is removed at stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.cockpit.auth import Sessions, check_password
from gateway.cockpit.config import CockpitConfig, is_loopback
from gateway.cockpit.http import EventStream, HttpServer, Request, Response, sse
from gateway.cockpit.i18n import default_language, script
from gateway.cockpit.views import GatewayView, LiveState, Views

log = logging.getLogger("plume.cockpit")

COOKIE = "plume_session"
ENDPOINT_FILE = "cockpit.json"
MIN_PUSH_INTERVAL_S = 1.0  # at most one live update a second per browser, however busy the site
KEEPALIVE_S = 15.0
PAGES = ("/", "/alarms", "/delivery", "/commissioning")
ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
          "favicon.svg": "image/svg+xml"}


def endpoint_path(store_dir: Path) -> Path:
    return store_dir / ENDPOINT_FILE


def _host_of(header: str) -> str:
    """`127.0.0.1:8470` -> 127.0.0.1, `[::1]:8470` -> ::1, `localhost` -> localhost."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def _asset(name: str) -> bytes:
    return (resources.files("gateway.cockpit") / "assets" / name).read_bytes()


class Cockpit:
    """Serves the cockpit of one running gateway; `start()` after the gateway's log and stage exist."""

    def __init__(self, gw: GatewayView, cfg: CockpitConfig | None = None):
        self.gw = gw
        self.cfg = cfg or gw.site.config.cockpit
        self.state = LiveState()
        self.views = Views(gw, self.state)
        self.sessions = Sessions(self.cfg.session_minutes)
        self.local_token = secrets.token_urlsafe(32)
        self.language = default_language(gw.site.config.site.timezone, self.cfg.language)
        self.server = HttpServer(self.handle, self.cfg.host, self.cfg.port)
        self._subscribers: set[asyncio.Event] = set()
        self._endpoint: Path | None = None
        self._assets = {name: _asset(name) for name in ASSETS}
        self._shell = _asset("index.html")

    @property
    def auth_on(self) -> bool:
        return self.cfg.password_hash is not None

    @property
    def url(self) -> str:
        host = self.cfg.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.server.port}"

    async def start(self) -> None:
        lg = self.gw.log
        if lg is not None:
            await self.state.seed(lg, self.views.now_ms(), [d.name for d in self.views.devices])
        self.gw.on_commit(self._on_commit)
        await self.server.start()
        if lg is not None:
            self._endpoint = endpoint_path(lg.path.parent)
            tmp = self._endpoint.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"url": self.url, "token": self.local_token, "pid": os.getpid(),
                           "site": self.gw.site.id}, f)
            os.replace(tmp, self._endpoint)
        where = "password required" if self.auth_on else "no password: this machine only"
        log.info("cockpit: http://%s:%d/ (%s)", self.cfg.host, self.server.port, where)
        if not self.auth_on and not is_loopback(self.cfg.host):  # the config refuses this; belt and braces
            raise RuntimeError("cockpit beyond loopback without a password")

    async def stop(self) -> None:
        for ev in self._subscribers:
            ev.set()
        await self.server.stop()
        if self._endpoint is not None:
            with contextlib.suppress(OSError):
                self._endpoint.unlink()

    def _on_commit(self, records: list[Any]) -> None:
        before = self.state.version
        self.state.on_commit(records)
        if self.state.version != before:
            for ev in self._subscribers:
                ev.set()

    # --- auth ----------------------------------------------------------------------------------------------------
    def _authorised(self, req: Request) -> bool:
        bearer = req.headers.get("authorization", "")
        if bearer.startswith("Bearer ") and secrets.compare_digest(bearer[7:], self.local_token):
            return True
        if not self.auth_on:  # loopback only; a page elsewhere must not reach it by DNS rebinding
            return is_loopback(_host_of(req.headers.get("host", "")))
        return self.sessions.valid(req.cookie(COOKIE))

    def _cookie(self, token: str, max_age: int) -> tuple[str, str]:
        return ("set-cookie", f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}")

    async def _login(self, req: Request) -> Response:
        try:
            body = req.json()
            password = str(body.get("password", "")) if isinstance(body, dict) else ""
        except ValueError:
            password = ""
        wait = self.sessions.penalty_s()
        if wait:
            await asyncio.sleep(wait)
        if self.cfg.password_hash is None or not check_password(password, self.cfg.password_hash):
            self.sessions.failures += 1
            log.warning("cockpit: wrong password from %s (%d in a row)", req.peer, self.sessions.failures)
            return Response.json({"error": "wrong password"}, 401)
        token = self.sessions.create()
        log.info("cockpit: login from %s", req.peer)
        resp = Response.json({"ok": True})
        resp.headers.append(self._cookie(token, int(self.sessions.lifetime_s)))
        return resp

    # --- routes --------------------------------------------------------------------------------------------------
    async def handle(self, req: Request) -> Response | EventStream:
        path, method = req.path, req.method
        if path.startswith("/assets/"):
            name = path.removeprefix("/assets/")
            if name == "i18n.js":
                return Response(200, script(self.language), "text/javascript; charset=utf-8")
            if name in self._assets:
                return Response(200, self._assets[name], ASSETS[name], [("cache-control", "max-age=300")])
            return Response(404, "not found\n")
        if path == "/login":
            return Response(200, self._shell, "text/html; charset=utf-8", [("cache-control", "no-store")])
        if path == "/api/login" and method == "POST":
            return await self._login(req)
        if path == "/api/logout" and method == "POST":
            self.sessions.end(req.cookie(COOKIE))
            resp = Response.json({"ok": True})
            resp.headers.append(self._cookie("", 0))
            return resp
        if not self._authorised(req):
            if path.startswith("/api/"):
                return Response.json({"error": "log in first"}, 401)
            return Response(303, "", headers=[("location", "/login")])
        if method == "GET" and (path in PAGES or path.startswith("/device/")):
            return Response(200, self._shell, "text/html; charset=utf-8", [("cache-control", "no-store")])
        if path.startswith("/api/"):
            return await self._api(req, path.removeprefix("/api/"), method)
        if method == "GET" and path.startswith("/snapshots/"):
            return await self._snapshot(path.removeprefix("/snapshots/"))
        return Response(404, "not found\n")

    async def _snapshot(self, name: str) -> Response:
        """A camera picture of an alarm (gateway.alarms.snapshots), by its file name; nothing outside its folder."""
        from gateway.alarms.snapshots import CameraService

        cams = next((s for s in self.gw.sinks if isinstance(s, CameraService)), None)
        path = cams.store.path(name) if cams is not None else None
        if path is None:
            return Response(404, "not found\n")
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError:
            return Response(404, "this picture was removed (snapshot retention or disk budget)\n")
        return Response(200, data, "image/jpeg", [("cache-control", "private, max-age=86400")])

    async def _api(self, req: Request, path: str, method: str) -> Response | EventStream:
        v = self.views
        if method == "GET":
            if path == "overview":
                return Response.json(v.overview())
            if path == "alarms":
                return Response.json(v.alarms())
            if path == "delivery":
                return Response.json(await v.delivery())
            if path == "status":
                return Response.json(await v.status())
            if path == "events":
                return EventStream(self._events())
            if path == "log/tail":
                try:
                    n = max(1, min(1000, int(req.query.get("n", "20"))))
                except ValueError:
                    return Response.json({"error": "n must be a number"}, 400)
                device = req.query.get("device") or None
                if device is not None and device not in {d.name for d in v.devices}:
                    return Response.json({"error": f"no device {device!r}"}, 404)
                return Response.json({"site": v.site(), "readings": await v.log_tail(device, n)})
            if path.startswith("device/"):
                data = await v.device(path.removeprefix("device/"))
                return Response.json(data) if data is not None else Response.json({"error": "no such device"}, 404)
        if method == "POST":
            try:
                body = req.json()
            except ValueError:
                return Response.json({"error": "the body is not JSON"}, 400)
            if not isinstance(body, dict):
                return Response.json({"error": "the body is not a JSON object"}, 400)
            if path == "alarms/ack":
                problem = v.acknowledge(str(body.get("alarm_id") or ""), str(body.get("by") or ""),
                                        str(body.get("comment") or body.get("note") or ""), req.peer)
                if problem:
                    return Response.json({"error": problem}, 400)
                log.info("cockpit: alarm %s acknowledged by %s", body.get("alarm_id"), body.get("by"))
                return Response.json({"ok": True})
            if path.startswith("read/"):
                return await self._read_now(path.removeprefix("read/"))
        return Response.json({"error": "not found"}, 404)

    async def _read_now(self, name: str) -> Response:
        if name not in {d.name for d in self.views.devices}:
            return Response.json({"error": f"no device {name!r}"}, 404)
        reader = getattr(self.gw.source, "read_now", None)
        result = await reader(name) if reader is not None else "this source cannot read on demand"
        if isinstance(result, str):
            reading = self.state.latest.get(name)
            if reading is None:
                return Response.json({"error": result}, 400)
            note = result
        else:
            reading, note = result, ""
        return Response.json({**reading.as_json(), "ok": reading.ok, "error": reading.error, "note": note,
                              "ts_local": self.views.time.full(reading.ts)})

    async def _events(self) -> AsyncIterator[bytes]:
        wake = asyncio.Event()
        self._subscribers.add(wake)
        try:
            yield sse("overview", self.views.overview())
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(KEEPALIVE_S):
                        await wake.wait()
                await asyncio.sleep(MIN_PUSH_INTERVAL_S)  # coalesce: one update for everything of the last second
                wake.clear()
                yield sse("overview", self.views.overview())
        finally:
            self._subscribers.discard(wake)
