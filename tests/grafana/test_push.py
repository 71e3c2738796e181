"""`plume grafana push` against a fake Grafana HTTP API on 127.0.0.1.

No Grafana server can run on these machines (not in Debian; the PyPI and npm packages named grafana are
placeholders), so FakeGrafana below implements the few endpoints grafana-client calls for a push, with Grafana's
answers (folder 404 / 409, dashboard versions, 401 without the token), and records every request. The command
runs as the user runs it (typer, grafana-client, real HTTP), mounted as `plume grafana` the way gateway/cli.py
mounts it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gateway.grafana_push import grafana_app

from .boards import load_boards

TOKEN = "glsa_test_token_0123456789"  # a service-account token as Grafana issues them


class FakeGrafana:
    """Folders and dashboards of one organisation, behind Grafana's HTTP API (the endpoints a push uses)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="fake-grafana", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.prefix}"

    def add_folder(self, uid: str, title: str) -> None:
        self.folders[uid] = {"id": len(self.folders) + 1, "uid": uid, "title": title}

    def posts(self, path: str) -> list[Any]:
        return [body for method, p, body in self.requests if method == "POST" and p == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = self.path.split("?", 1)[0]
                if not path.startswith(fake.prefix + "/api/"):
                    return self._send(404, {"message": "Not found"})
                path = path[len(fake.prefix):]
                with fake.lock:
                    fake.requests.append((method, path, body))
                    if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                        return self._send(401, {"message": "invalid API key"})
                    status, answer = fake.route(method, path, body)
                self._send(status, answer)

            def _send(self, status: int, answer: Any) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/api/health":
            return 200, {"database": "ok", "version": "11.1.0"}
        if method == "GET" and path == "/api/folders":
            return 200, list(self.folders.values())
        m = re.fullmatch(r"/api/folders/([^/]+)", path)
        if method == "GET" and m:
            found = self.folders.get(m.group(1))
            return (200, found) if found else (404, {"message": "folder not found", "status": "not-found"})
        if method == "POST" and path == "/api/folders":
            if body.get("uid") in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            if any(f["title"] == body["title"] for f in self.folders.values()):
                return 409, {"message": "a folder or dashboard in the general folder with the same name already "
                                        "exists"}
            uid = body.get("uid") or f"auto{len(self.folders)}"
            self.add_folder(uid, body["title"])
            return 200, {**self.folders[uid], "url": f"/dashboards/f/{uid}/", "version": 1}
        if method == "POST" and path == "/api/dashboards/db":
            dash = body["dashboard"]
            uid = dash["uid"]
            if body.get("folderUid") not in self.folders:
                return 400, {"message": "folder not found"}
            old = self.dashboards.get(uid)
            if old is not None and not body.get("overwrite"):
                return 412, {"message": "A dashboard with the same uid already exists", "status": "name-exists"}
            version = old["version"] + 1 if old else 1
            self.dashboards[uid] = {"dashboard": dash, "folderUid": body["folderUid"], "version": version}
            return 200, {"id": list(self.dashboards).index(uid) + 1, "uid": uid, "url": f"/d/{uid}/x",
                         "status": "success", "version": version, "slug": "x"}
        return 404, {"message": "Not found"}


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    g = FakeGrafana()
    g.thread.start()
    yield g
    g.server.shutdown()
    g.server.server_close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    f = tmp_path / "grafana-token"
    f.write_text(TOKEN + "\n")
    return f


def plume(*args: str) -> Any:
    """`plume grafana ...` as gateway/cli.py mounts it (app.add_typer(grafana_app, name="grafana"))."""
    app = typer.Typer()
    app.add_typer(grafana_app, name="grafana")

    @app.callback()
    def main() -> None:
        pass

    return CliRunner().invoke(app, ["grafana", *args])


PURPOSE_FOLDERS = {"plume-overview": "Plume Overview", "plume-sites": "Plume Sites", "plume-stacks": "Plume Stacks",
                   "plume-alarms": "Plume Alarms", "plume-operations": "Plume Operations"}


def test_push_creates_each_folder_once_and_updates_dashboards_in_place(grafana: FakeGrafana,
                                                                         token_file: Path) -> None:
    boards = {b.uid: b for b in load_boards()}
    first = plume("push", "--url", grafana.url, "--token-file", str(token_file))
    assert first.exit_code == 0, first.output
    assert {uid: f["title"] for uid, f in grafana.folders.items()} == PURPOSE_FOLDERS
    assert len(grafana.posts("/api/folders")) == 5
    assert set(grafana.dashboards) == set(boards)
    for uid, d in grafana.dashboards.items():
        assert d["version"] == 1
        assert d["folderUid"] == f"plume-{boards[uid].folder}"
    for body in grafana.posts("/api/dashboards/db"):
        assert body["overwrite"] is True and body["dashboard"]["id"] is None and body["message"]
        assert body["dashboard"] == {**boards[body["dashboard"]["uid"]].data, "id": None}
    assert first.output.count("created folder ") == 5 and first.output.count("pushed ") == 5
    assert "pushed plume-site-detail 'Plume · Site detail' to Plume Sites (version 1)" in first.output

    second = plume("push", "--url", grafana.url, "--token-file", str(token_file))
    assert second.exit_code == 0, second.output
    assert len(grafana.posts("/api/folders")) == 5, "folders are found again by uid, not created twice"
    assert len(grafana.folders) == 5 and set(grafana.dashboards) == set(boards), "same uids: updated, no copies"
    assert all(d["version"] == 2 for d in grafana.dashboards.values())
    assert "created folder" not in second.output and "(version 2)" in second.output
    assert TOKEN not in first.output + second.output


def test_a_folder_with_the_same_title_is_reused(grafana: FakeGrafana, token_file: Path) -> None:
    grafana.add_folder("hand-made", "Plume Sites")  # made by hand, or by the file provisioning
    result = plume("push", "--url", grafana.url, "--token-file", str(token_file))
    assert result.exit_code == 0, result.output
    assert "Plume Sites" not in [b["title"] for b in grafana.posts("/api/folders")]
    assert grafana.dashboards["plume-site-detail"]["folderUid"] == "hand-made"
    assert len(grafana.folders) == 5


def test_one_folder(grafana: FakeGrafana, token_file: Path) -> None:
    result = plume("push", "--url", grafana.url, "--token-file", str(token_file), "--one-folder")
    assert result.exit_code == 0, result.output
    assert grafana.folders == {"plume": {"id": 1, "uid": "plume", "title": "Plume"}}
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"plume"} and len(grafana.dashboards) == 5


def test_grafana_under_a_path_prefix(token_file: Path) -> None:
    g = FakeGrafana(prefix="/grafana")
    g.thread.start()
    try:
        result = plume("push", "--url", g.url, "--token-file", str(token_file))  # no trailing slash
        assert result.exit_code == 0, result.output
        assert len(g.dashboards) == 5
    finally:
        g.server.shutdown()
        g.server.server_close()


def test_a_wrong_token_is_one_line_and_never_printed(grafana: FakeGrafana, tmp_path: Path) -> None:
    bad = tmp_path / "bad-token"
    bad.write_text("glsa_wrong_secret")
    result = plume("push", "--url", grafana.url, "--token-file", str(bad))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"grafana at {grafana.url} refused the token (401: invalid API key); check --token-file: a "
        "service-account token with the Editor role (folders and dashboards)"]
    assert "glsa_wrong_secret" not in result.output and not grafana.dashboards


def test_input_problems_exit_2(grafana: FakeGrafana, tmp_path: Path, token_file: Path) -> None:
    missing = plume("push", "--url", grafana.url, "--token-file", str(tmp_path / "nope"))
    assert missing.exit_code == 2
    assert missing.output.startswith(f"--token-file {tmp_path / 'nope'}: cannot read it: ")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert plume("push", "--url", grafana.url, "--token-file", str(empty)).exit_code == 2
    no_kit = plume("push", "--url", grafana.url, "--token-file", str(token_file), "--kit", str(tmp_path))
    assert no_kit.exit_code == 2 and "no such folder" in no_kit.output
    assert plume("push", "--url", "grafana:3000", "--token-file", str(token_file)).exit_code == 2
    assert not grafana.requests, "nothing is sent when the input is wrong"


def test_no_grafana_at_the_url(token_file: Path) -> None:
    g = FakeGrafana()  # bound, never served: take its port, then close it
    url = g.url
    g.server.server_close()
    result = plume("push", "--url", url, "--token-file", str(token_file), "--timeout-s", "2")
    assert result.exit_code == 1
    assert result.output.startswith(f"grafana at {url}: cannot connect: ")
    assert "Traceback" not in result.output
