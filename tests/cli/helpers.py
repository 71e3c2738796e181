"""Helpers of the CLI tests: the `plume` command as a child process (tests/plume_cli.py), a plume-sim serving a site
file."""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

from tests.pipeline.helpers import Proc, sim_cmd
from tests.plume_cli import plume as run_plume

ROOT = Path(__file__).resolve().parents[2]


def plume(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 90,
          columns: int | None = None) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, **(env or {})}
    if columns is not None:
        e["COLUMNS"] = str(columns)
    return run_plume(*args, env=e, cwd=cwd, timeout=timeout)


def write(path: Path, text: str, **fmt: object) -> Path:
    path.write_text(textwrap.dedent(text).format(**fmt), encoding="utf-8")
    return path


def start_sim(procs: Callable[..., Proc], site_file: Path, tmp: Path, *extra: str) -> Proc:
    """plume-sim serving `site_file`, ready once it says so."""
    p = procs(sim_cmd(site_file, tmp / f"truth-{site_file.stem}.jsonl", *extra), tmp / f"sim-{site_file.stem}.log")
    p.wait_output("ready:", 30)
    return p
