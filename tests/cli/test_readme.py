"""The README's commands, run as written, print what the README shows (issue 14: "the README stays true").

Every `$ plume ...` line of a README code block whose output does not depend on the clock or on live devices is
run from a folder holding the repository's deploy/ and gateway/ and the files the README's examples name
(tests/cli/readme/: broken.yaml, my-analyzer.yaml); its stdout and stderr, trailing blanks stripped, must equal the
lines below it in the README. Live commands (demo, read, scan) are checked elsewhere (test_demo_view,
test_commissioning, tests/test_demo.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ROOT

LIVE = ("plume demo", "plume read", "plume scan", "plume discover")  # discover: test_discover.py


def readme_examples() -> list[tuple[str, list[str]]]:
    """(command, expected lines) for every `$ plume` line in a fenced block of the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    out: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```\n(.*?)^```", text, re.S | re.M):
        current: tuple[str, list[str]] | None = None
        for line in block.splitlines():
            if line.startswith("$ "):
                current = (line[2:], [])
                out.append(current)
            elif current is not None:
                current[1].append(line.rstrip())
    return [(cmd, lines) for cmd, lines in out if cmd.startswith("plume ") and not cmd.startswith(LIVE)]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for name in ("deploy", "gateway"):
        (tmp_path / name).symlink_to(ROOT / name)
    for f in (Path(__file__).parent / "readme").iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    return tmp_path


def test_the_readme_has_examples_to_check():
    commands = [cmd for cmd, _ in readme_examples()]
    assert any(c.startswith("plume config check broken.yaml") for c in commands)
    assert any(c.startswith("plume plan") for c in commands) and any(c.startswith("plume profiles") for c in commands)


@pytest.mark.parametrize(("command", "expected"), readme_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_readme_command_prints_what_the_readme_shows(workdir, command, expected):
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}", "COLUMNS": "160"}
    r = subprocess.run(["bash", "-c", "{ " + command + "; } 2>&1"], capture_output=True, text=True, cwd=workdir,
                       env=env, timeout=120)
    got = [ln.rstrip() for ln in r.stdout.rstrip("\n").splitlines()]
    assert got == expected
