"""`pip install` gives a `plume grafana push` that finds its boards (issue 14, finding 6): the boards used to live
only in the repository's grafana/ folder, so an installed `plume` had nothing to push."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from .helpers import ROOT


def test_the_wheel_carries_the_grafana_boards_and_the_installed_push_finds_them(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                        str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = (tmp_path / "dist").glob("plume_gateway-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    probe = ("import gateway.grafana_push as g; boards = g.load_kit(g.DEFAULT_KIT); "
             "print(g.__file__); print(len(boards)); print(sorted(b.folder_title for b in boards))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    where, count, folders = r.stdout.splitlines()
    assert where.startswith(str(site)), "the installed package, not the checkout"
    assert int(count) == len(list((ROOT / "grafana" / "dashboards").glob("*/*.json"))) >= 5
    assert "Plume Alarms" in folders, folders
