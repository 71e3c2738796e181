"""`plume grafana push`: the Plume boards into a running Grafana through its HTTP API (grafana-client).

    plume grafana push --url https://grafana.example.org/ --token-file /run/secrets/grafana-token

What it pushes is the repository's Grafana kit (`grafana/`): every dashboard under `grafana/dashboards/<dir>/`,
into the folder that `grafana/provisioning/dashboards/*.yaml` gives that directory (title and uid), so a pushed
Grafana and a file-provisioned one look the same. `--one-folder` puts every board into one folder "Plume".

Idempotent: a folder is looked up by its uid, then by its title (one made by hand or by an older push), and
created only when neither exists; a dashboard is saved with `overwrite: true` under its fixed uid, so pushing
again updates it in place (Grafana bumps its version) instead of adding a copy.

grafana-client is an optional dependency (`pip install 'plume-gateway[grafana]'`), imported only by this
command. The token (a Grafana service-account token) is read from a file and never printed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
import yaml

grafana_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                          help="The Plume Grafana boards: push them to a Grafana server.")

# the boards ship inside the package (gateway/grafana_kit links to the repository's grafana/ folder), so a plain
# `pip install` can push them
DEFAULT_KIT = Path(__file__).resolve().parent / "grafana_kit"
ONE_FOLDER = ("plume", "Plume")  # uid, title
MESSAGE = "plume grafana push"


class PushError(Exception):
    """One line for the user; `code` 2 for a problem with the input (kit, token file), 1 for the server."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BoardFile:
    path: Path
    folder_uid: str
    folder_title: str
    dashboard: dict[str, Any]

    @property
    def uid(self) -> str:
        return str(self.dashboard["uid"])

    @property
    def title(self) -> str:
        return str(self.dashboard.get("title", self.uid))


def load_kit(kit: Path, *, one_folder: bool = False) -> list[BoardFile]:
    """Every dashboard of the kit with its folder, from the dashboard providers of the kit's provisioning."""
    boards_dir = kit / "dashboards"
    providers_dir = kit / "provisioning" / "dashboards"
    if not boards_dir.is_dir():
        raise PushError(f"{boards_dir}: no such folder (give --kit, the grafana/ folder of a Plume checkout)", 2)
    folders: dict[str, tuple[str, str]] = {}
    for f in sorted(providers_dir.glob("*.y*ml")):
        try:
            doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PushError(f"{f}: cannot read: {exc}", 2) from None
        for i, p in enumerate(doc.get("providers", [])):
            path = (p.get("options") or {}).get("path")
            if not path or not p.get("folder") or not p.get("folderUid"):
                raise PushError(f"{f}: providers[{i}]: needs folder, folderUid and options.path", 2)
            folders[PurePosixPath(path).name] = (str(p["folderUid"]), str(p["folder"]))
    boards: list[BoardFile] = []
    for path in sorted(boards_dir.glob("*/*.json")):
        sub = path.parent.name
        if one_folder:
            uid, title = ONE_FOLDER
        elif sub in folders:
            uid, title = folders[sub]
        else:
            raise PushError(f"{path}: no dashboard provider in {providers_dir} for the folder {sub!r}", 2)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PushError(f"{path}: not a dashboard: {exc}", 2) from None
        if not isinstance(data, dict) or not data.get("uid"):
            raise PushError(f"{path}: a dashboard needs a fixed uid (pushing again must update it, not copy it)", 2)
        boards.append(BoardFile(path, uid, title, data))
    if not boards:
        raise PushError(f"{boards_dir}: no dashboards (*/*.json)", 2)
    return boards


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PushError(f"--token-file {path}: cannot read it: {exc.strerror or exc}", 2) from None
    if not token:
        raise PushError(f"--token-file {path}: the file is empty (put a Grafana service-account token in it)", 2)
    return token


def connect(url: str, token: str, timeout_s: float) -> Any:
    try:
        from grafana_client import GrafanaApi
    except ImportError:
        raise PushError("plume grafana push needs grafana-client: pip install 'plume-gateway[grafana]'", 2) from None
    if not url.startswith(("http://", "https://")):
        raise PushError(f"--url {url}: give the Grafana URL with http:// or https://", 2)
    if not url.endswith("/"):
        url += "/"  # grafana-client appends "api" to the path: https://host/grafana/ -> .../grafana/api
    return GrafanaApi.from_url(url, credential=token, timeout=timeout_s)


def ensure_folder(api: Any, uid: str, title: str, created: list[str]) -> str:
    """The uid of the folder for `title`: by uid, else by title, else a new folder with this uid."""
    from grafana_client.client import GrafanaClientError

    try:
        found = api.folder.get_folder(uid)
        return str(found.get("uid", uid))
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
    for f in api.folder.get_all_folders() or []:
        if f.get("title") == title and f.get("uid"):
            return str(f["uid"])
    made = api.folder.create_folder(title, uid=uid)
    created.append(title)
    return str(made.get("uid", uid))


@dataclass(frozen=True)
class Pushed:
    uid: str
    title: str
    folder: str
    version: int | None
    url: str


def push(api: Any, boards: list[BoardFile], message: str = MESSAGE) -> tuple[list[Pushed], list[str]]:
    """Save every board into its folder (created once); returns what was pushed and the folders created."""
    created: list[str] = []
    folder_uids: dict[tuple[str, str], str] = {}
    pushed: list[Pushed] = []
    for b in boards:
        key = (b.folder_uid, b.folder_title)
        if key not in folder_uids:
            folder_uids[key] = ensure_folder(api, b.folder_uid, b.folder_title, created)
        dashboard = {**b.dashboard, "id": None}
        answer = api.dashboard.update_dashboard({
            "dashboard": dashboard, "folderUid": folder_uids[key], "overwrite": True, "message": message,
        }) or {}
        version = answer.get("version")
        pushed.append(Pushed(b.uid, b.title, b.folder_title, int(version) if version is not None else None,
                             _absolute(api, str(answer.get("url", "")))))
    return pushed, created


def _absolute(api: Any, link: str) -> str:
    """Grafana answers with the dashboard's path (/d/uid/slug, its sub-path included): add scheme and host."""
    base = getattr(api, "url", None)
    if not link.startswith("/") or not isinstance(base, str):
        return link
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}{link}"


def explain(exc: Exception, url: str) -> str:
    """One line for a failure of the Grafana API (never the token)."""
    from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaServerError

    status = getattr(exc, "status_code", 0)
    detail = ""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        detail = str(response.get("message", ""))
    if isinstance(exc, GrafanaClientError) and status in (401, 403):
        return (f"grafana at {url} refused the token ({status}{': ' + detail if detail else ''}); check "
                "--token-file: a service-account token with the Editor role (folders and dashboards)")
    if isinstance(exc, GrafanaClientError) and status == 400 and "provisioned" in detail.lower():
        return (f"grafana at {url}: {detail} (this Grafana provisions the Plume boards from files: "
                "update the files instead, or push to a Grafana without the file provider)")
    if isinstance(exc, GrafanaClientError | GrafanaServerError):
        return f"grafana at {url} answered {status}: {detail or exc}"
    if isinstance(exc, GrafanaException) and status:
        return f"grafana at {url} answered {status}: {exc}"
    return f"grafana at {url}: cannot connect: {exc} (is the URL right, is Grafana running?)"


@grafana_app.command("push")
def push_cmd(
    url: Annotated[str, typer.Option("--url", help="Grafana base URL, e.g. https://grafana.example.org/",
                                     show_default=False)],
    token_file: Annotated[Path, typer.Option("--token-file", help="File holding a Grafana service-account token.",
                                             show_default=False)],
    one_folder: Annotated[bool, typer.Option(
        "--one-folder",
        help="Every board into one folder 'Plume' (default: one folder per purpose - overview, sites, stacks, "
             "alarms, operations - as the file provisioning does).")] = False,
    kit: Annotated[Path, typer.Option("--kit", help="A folder with dashboards/ and provisioning/ (default: the "
                                      "boards installed with Plume).", show_default=False)] = DEFAULT_KIT,
    timeout_s: Annotated[float, typer.Option("--timeout-s", min=1, help="HTTP timeout per request.")] = 10.0,
) -> None:
    """Create or update the Plume dashboards in a Grafana (idempotent: fixed uids, overwrite)."""
    try:
        boards = load_kit(kit, one_folder=one_folder)
        token = read_token(token_file)
        api = connect(url, token, timeout_s)
        from grafana_client.client import GrafanaException
        from niquests.exceptions import RequestException  # grafana-client's HTTP library (connection errors)

        try:
            pushed, created = push(api, boards)
        except (GrafanaException, RequestException) as exc:
            raise PushError(explain(exc, url)) from None
    except PushError as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(exc.code) from None
    for title in created:
        print(f"created folder {title}")
    for p in pushed:
        version = f" (version {p.version})" if p.version is not None else ""
        print(f"pushed {p.uid} '{p.title}' to {p.folder}{version}{' ' + p.url if p.url else ''}")
