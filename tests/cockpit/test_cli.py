"""`plume status`, `plume alarms [ack]`, `plume log tail` against a running `plume run` (a process, polling
`plume-sim`), over the local endpoint; and what they say when no gateway runs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.cockpit.rig import CockpitRig
from tests.pipeline.helpers import Proc
from tests.pipeline.servers import wait_for
from tests.plume_cli import plume as run_plume


def plume(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_plume(*args, cwd=Path.cwd(), timeout=60)


def test_the_views_say_in_one_line_that_no_gateway_is_running(tmp_path: Path) -> None:
    rig = CockpitRig(tmp_path, lambda *a: None)  # type: ignore[arg-type,return-value]
    for args in (("status", rig.site), ("alarms", "--site", rig.site), ("log", "tail", rig.site),
                 ("alarms", "ack", "x", "--by", "me", "--site", rig.site)):
        done = plume(*args)
        assert done.returncode == 1, args
        assert done.stderr.startswith("no gateway is running for site cockpit-site"), done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_status_alarms_ack_and_log_tail_show_the_running_gateway(tmp_path: Path,
                                                                 procs: Callable[..., Proc]) -> None:
    rig = CockpitRig(tmp_path, procs).start()

    def status() -> dict:  # type: ignore[type-arg]
        done = plume("status", rig.site, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    wait_for(lambda: all(d["state"] == "online" for d in status()["devices"]), 20, "every device online")
    text = plume("status", rig.site)
    assert text.returncode == 0
    assert "Asia/Shanghai UTC+08:00" in text.stdout
    for name in ("dust-1", "so2-1", "stack-1"):
        assert name in text.stdout
    assert "no active alarm" in text.stdout and "MB cap" in text.stdout

    rig.fault("so2-1", "dead")
    wait_for(lambda: any(a["alarm_id"].startswith("offline/so2-1/") for a in status()["alarms"]), 20,
             "the offline alarm of so2-1")
    alarm_id = next(a["alarm_id"] for a in status()["alarms"] if a["alarm_id"].startswith("offline/so2-1/"))
    assert next(d for d in status()["devices"] if d["name"] == "so2-1")["state"] in ("offline", "backed_off")
    listed = plume("alarms", "--site", rig.site)
    assert alarm_id in listed.stdout

    done = plume("alarms", "ack", alarm_id, "--by", "王 Wang", "--comment", "on my way", "--site", rig.site)
    assert done.returncode == 0, done.stderr
    assert f"acknowledged {alarm_id} by 王 Wang" in done.stdout

    def acked() -> bool:
        data = json.loads(plume("alarms", "--site", rig.site, "--json").stdout)
        return any(a["alarm_id"] == alarm_id and a["acked_by"] == "王 Wang" for a in data["active"])

    wait_for(acked, 15, "the alarm acknowledged")
    again = plume("alarms", "ack", "offline/no-such/-/1", "--by", "me", "--site", rig.site)
    assert again.returncode == 1 and again.stderr.startswith("refused: no active alarm")
    nameless = plume("alarms", "ack", alarm_id, "--by", " ", "--site", rig.site)
    assert nameless.returncode == 1 and "a name is required" in nameless.stderr

    tail = plume("log", "tail", rig.site, "--device", "dust-1", "-n", "5", "--json")
    rows = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(rows) == 5 and {r["device"] for r in rows} == {"dust-1"}
    assert [r["seq"] for r in rows] == list(range(rows[0]["seq"], rows[0]["seq"] + 5))
    assert "pm10" in rows[-1]["values"]
    unknown = plume("log", "tail", rig.site, "--device", "nope")
    assert unknown.returncode == 1 and "no device 'nope'" in unknown.stderr
    rig.stop()
    gone = plume("status", rig.site)
    assert gone.returncode == 1 and gone.stderr.startswith("no gateway is running")


def test_hash_password_prints_a_hash_the_site_file_accepts() -> None:
    from gateway.cockpit.auth import check_password
    from gateway.cockpit.config import CockpitConfig

    done = run_plume("cockpit", "hash-password", input="long enough pw\n", cwd=Path.cwd(), timeout=60)
    assert done.returncode == 0, done.stderr
    stored = done.stdout.strip()
    assert check_password("long enough pw", stored)
    assert CockpitConfig(enabled=True, host="0.0.0.0", password_hash=stored).password_hash == stored
    short = run_plume("cockpit", "hash-password", input="short\n", cwd=Path.cwd(), timeout=60)
    assert short.returncode == 2 and "too short" in short.stderr
