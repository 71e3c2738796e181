"""The `plume` command line as Telegraf and mosquitto users expect it (issue 14, findings 4 and 5): a --version,
shell completion, help that fits 80 columns without cutting option names, and `hj212 encode` taking the packet JSON
as an argument like `hj212 decode` takes the packet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import pytest
import typer

from gateway.cli import app

from .helpers import ROOT, plume


def all_commands() -> list[list[str]]:
    """Every command path of `plume`, the root first."""
    out: list[list[str]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        out.append(path)
        if hasattr(cmd, "commands"):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return out


def test_version_prints_the_installed_version():
    r = plume("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"plume {version('plume-gateway')}"


def test_shell_completion_is_on_and_completes_subcommands():
    r = plume("--help")
    assert "--install-completion" in r.stdout
    env = {**os.environ, "_PLUME_COMPLETE": "complete_bash", "COMP_WORDS": "plume con", "COMP_CWORD": "1"}
    r = subprocess.run([sys.executable, "-c", "from gateway.cli import app; app(prog_name='plume')"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert "config" in r.stdout.split(), r.stdout + r.stderr


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "plume")
def test_help_fits_80_columns_and_shows_every_option_name_in_full(path):
    r = plume(*path, "--help", columns=80)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert all(len(ln) <= 80 for ln in lines), "\n".join(ln for ln in lines if len(ln) > 80)
    assert "…" not in r.stdout, r.stdout
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    for param in cmd.params:
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("-"):
                assert opt in r.stdout, f"{opt} missing from the help of {' '.join(path)}:\n{r.stdout}"


PACKET = {"st": 39, "cn": 2011, "pw": "AbC123", "mn": "MN0001", "qn": "20240101120000000",
          "cp": {"DataTime": "20240101120000", "a34002-Rtd": "45.0", "a34002-Flag": "N"}}


def test_hj212_encode_takes_the_packet_json_as_an_argument_like_decode():
    text = json.dumps(PACKET)
    by_arg = plume("hj212", "encode", text)
    assert by_arg.returncode == 0, by_arg.stderr
    by_option = plume("hj212", "encode", "--json", text)
    assert by_arg.stdout == by_option.stdout and by_arg.stdout.startswith("##")
    back = plume("hj212", "decode", "--json", by_arg.stdout.strip())
    assert json.loads(back.stdout)["cp"] == [{"DataTime": "20240101120000"}, {"a34002-Rtd": "45.0",
                                                                              "a34002-Flag": "N"}]
