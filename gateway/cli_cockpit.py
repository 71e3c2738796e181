"""`plume status`, `plume alarms [ack]`, `plume log tail`, `plume cockpit hash-password`: the cockpit's views for a
shell over SSH. They talk to the running gateway of the site file through its local endpoint (gateway.cockpit
.client) and say so in one line when none is running (exit 1)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli_console import LazyConsole, Table

DEFAULT_SITE = Path("/etc/plume/site.yaml")  # what deploy/systemd/plume.service runs
SiteArg = Annotated[Path, typer.Argument(help="Site file of the running gateway.", show_default=True)]
SiteOpt = Annotated[Path, typer.Option("--site", help="Site file of the running gateway.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="The API's JSON, one document.")]

out = LazyConsole()
alarms_app = typer.Typer(help="Active alarms of the running gateway; `ack` acknowledges one.")
log_app = typer.Typer(no_args_is_help=True, help="The durable log of the running gateway.")
cockpit_app = typer.Typer(no_args_is_help=True, help="The cockpit web page.")


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.add_typer(alarms_app, name="alarms")
    app.add_typer(log_app, name="log")
    app.add_typer(cockpit_app, name="cockpit")


def _client(site_file: Path) -> Any:
    from gateway.cockpit.client import CockpitClient, NoGateway
    from gateway.config import ConfigError
    from gateway.site.load import load_site

    try:
        site = load_site(site_file)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"{site_file}: {line}", file=sys.stderr)
        raise typer.Exit(2) from None
    try:
        return CockpitClient.for_site(site)
    except NoGateway as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(1) from None


def _call(site_file: Path, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
    from gateway.cockpit.client import ApiError, NoGateway

    client = _client(site_file)
    try:
        return client.get(path, **params) if method == "GET" else client.post(path, body or {})
    except NoGateway as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(1) from None
    except ApiError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _age(s: float | None) -> str:
    return "-" if s is None else f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def status(site_file: SiteArg = DEFAULT_SITE, as_json: JsonOpt = False) -> None:
    """Devices, sinks and uplinks, active alarms and the log of the running gateway."""
    data = _call(site_file, "GET", "/api/status")
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    s = data["site"]
    out.print(f"[bold]{s['name']}[/] ({s['id']})  local time {s['now_local']} ({s['zone']})")
    t = Table("device", "bus", "state", f"last poll ({s['offset']})", "ok %", "last error", box=None, padding=(0, 2))
    for d in data["devices"]:
        rate = "-" if d["success_rate"] is None else f"{d['success_rate'] * 100:.0f}"
        t.add_row(d["name"], d["bus"], d["state"], d["last_poll_local"][11:] or "never", rate, d["last_error"])
    out.print(t)
    if data["sinks"]:
        t = Table("sink", "type", "connected", "backlog", "oldest", f"last delivered ({s['offset']})", "last error",
                  box=None, padding=(0, 2))
        for k in data["sinks"]:
            t.add_row(k["name"], k["type"], "yes" if k["connected"] else "no", str(k["depth"]), _age(k["age_s"]),
                      k["last_delivered_local"][11:] or "never", k["last_error"])
        out.print(t)
    else:
        out.print("no sinks or uplinks")
    _alarms_table(data["alarms"], s["offset"])
    lg = data["log"]
    out.print(f"log: {lg['used_mb']} MB of {lg['max_disk_mb']} MB cap, {lg['readings']} readings held, "
              f"{lg['dropped']} dropped by the cap, {lg['buffered']} waiting for the next commit")


def _alarms_table(active: list[dict[str, Any]], offset: str) -> None:
    if not active:
        out.print("no active alarm")
        return
    t = Table("alarm id", f"since ({offset})", "value", "limit", "acknowledged", box=None, padding=(0, 2))
    for a in active:
        t.add_row(a["alarm_id"], a["start_local"], f"{_num(a['value'])} {a['unit']}".strip(),
                  f"{_num(a['limit'])} {a['unit']}".strip(), a["acked_by"] or ("yes" if a["acked"] else "no"))
    out.print(t)


@alarms_app.callback(invoke_without_command=True)
def alarms(ctx: typer.Context, site_file: SiteOpt = DEFAULT_SITE, as_json: JsonOpt = False) -> None:
    """Active alarms (since when, value, limit) and the last events."""
    if ctx.invoked_subcommand is not None:
        return
    data = _call(site_file, "GET", "/api/alarms")
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    _alarms_table(data["active"], data["site"]["offset"])
    if data["events"]:
        t = Table(f"time ({data['site']['offset']})", "event", "device", "message", box=None, padding=(0, 2))
        for e in data["events"][:10]:
            t.add_row(e["ts_local"], e["type"], e["device"], e["message"])
        out.print(t)


@alarms_app.command("ack")
def alarms_ack(
    alarm_id: Annotated[str, typer.Argument(help="The alarm id (`plume alarms` lists them).", show_default=False)],
    by: Annotated[str, typer.Option("--by", help="Who acknowledges.", show_default=False)],
    comment: Annotated[str, typer.Option("--comment", help="Why, what was done.")] = "",
    site_file: SiteOpt = DEFAULT_SITE,
) -> None:
    """Acknowledge an alarm (the same command path as an MQTT acknowledgement)."""
    _call(site_file, "POST", "/api/alarms/ack", {"alarm_id": alarm_id, "by": by, "comment": comment})
    print(f"acknowledged {alarm_id} by {by}")


@log_app.command("tail")
def log_tail(
    site_file: SiteArg = DEFAULT_SITE,
    device: Annotated[str | None, typer.Option("--device", help="Only this device.")] = None,
    n: Annotated[int, typer.Option("-n", help="How many readings.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The latest readings committed to the durable log."""
    data = _call(site_file, "GET", "/api/log/tail", device=device, n=n)
    if as_json:
        for r in data["readings"]:
            print(json.dumps(r, ensure_ascii=False))
        return
    for r in data["readings"]:
        values = " ".join(f"{ch}={_num(v['value'])}{v['unit'] and ' ' + v['unit']} {v['flag']}"
                          for ch, v in r["values"].items())
        extra = f"  error: {r['error']}" if r["error"] else ""
        out.print(f"{r['ts_local']} {r['device']} seq {r['seq']}  {values}{extra}", soft_wrap=True)


@cockpit_app.command("hash-password")
def hash_password_command() -> None:
    """Ask for a password (twice) and print its scrypt hash for `cockpit.password_hash` (stdin when piped)."""
    from gateway.cockpit.auth import hash_password

    if sys.stdin.isatty():
        password = typer.prompt("cockpit password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("the password is too short (8 characters at least)", file=sys.stderr)
        raise typer.Exit(2)
    print(hash_password(password))
