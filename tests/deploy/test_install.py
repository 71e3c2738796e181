"""deploy/install.sh end to end in a throwaway root (--root): users via useradd --prefix, the unit enabled with
systemctl --root, plume really pip-installed into a fresh virtualenv, `plume config check` run by the script.

The one shortcut: pip installs plume with --no-deps (a full install with its dependencies from the package index
takes ~18 s; done by hand, see docs-deploy.md), and the check finds the dependencies through PYTHONPATH = this
interpreter's site-packages. The checked `gateway` package is the one installed in the throwaway root.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from .helpers import DEPLOY, need

SCRIPT = DEPLOY / "install.sh"


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("install.sh needs root (chown, useradd --prefix)")


def fresh_root(path: Path) -> Path:
    """A root with only what Debian has before the install: root, and the dialout group (serial ports)."""
    (path / "etc").mkdir(parents=True)
    (path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (path / "etc/group").write_text("root:x:0:\ndialout:x:20:\n")
    return path


def run_install(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PLUME_PIP_ARGS": "--no-deps",
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    env.pop("PLUME_ROOT", None)
    proc = subprocess.run(["bash", str(SCRIPT), "--root", str(root), "--python", sys.executable, *args],
                          capture_output=True, text=True, env=env, timeout=240, cwd=root)
    if check:
        assert proc.returncode == 0, f"install.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path with its type, mode, owner, size, mtime and link target (pip's caches excluded)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            st = p.lstat()
            target = os.readlink(p) if p.is_symlink() else None
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                                             st.st_gid, st.st_size, st.st_mtime_ns, target)
    return out


def entry(root: Path, file: str, name: str) -> list[str]:
    for line in (root / "etc" / file).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    raise AssertionError(f"{name} not in {file}")


def owner_mode(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    _require_root()
    need("useradd")
    need("systemctl")
    root = fresh_root(tmp_path_factory.mktemp("root"))
    return root, run_install(root)


def test_first_run_creates_user_folders_venv_config_and_enabled_unit(installed) -> None:
    root, proc = installed
    assert "creating system user plume" in proc.stdout
    assert proc.stdout.rstrip().endswith("== done: logs with journalctl -u plume -f")

    user = entry(root, "passwd", "plume")
    uid, gid = int(user[2]), int(user[3])
    assert 0 < uid < 1000, "a system user"
    assert user[5] == "/var/lib/plume" and user[6] == "/usr/sbin/nologin"
    assert entry(root, "group", "plume")[2] == str(gid)
    assert "plume" in entry(root, "group", "dialout")[3].split(",")

    assert owner_mode(root / "etc/plume") == (0, gid, 0o750)
    assert owner_mode(root / "etc/plume/site.yaml") == (0, gid, 0o640)
    assert (root / "etc/plume/site.yaml").read_bytes() == (DEPLOY / "site.example.yaml").read_bytes()
    assert owner_mode(root / "etc/plume/plume.env") == (0, gid, 0o640)
    assert owner_mode(root / "var/lib/plume") == (uid, gid, 0o750)
    assert owner_mode(root / "opt/plume") == (0, 0, 0o755)
    assert owner_mode(root / "opt/plume/venv")[:2] == (0, 0)
    unit = root / "etc/systemd/system/plume.service"
    assert owner_mode(unit) == (0, 0, 0o644)
    assert unit.read_bytes() == (DEPLOY / "systemd/plume.service").read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/plume.service"
    assert wants.is_symlink() and os.readlink(wants) == "/etc/systemd/system/plume.service"

    # The check ran with the plume installed in the root, and nothing was started.
    assert "== check: plume config check" in proc.stdout and "\nok\n" in proc.stdout
    assert "not started" in proc.stdout


def test_the_installed_gateway_is_the_one_in_the_root(installed) -> None:
    root, _ = installed
    venv = root / "opt/plume/venv"
    where = subprocess.run([str(venv / "bin/python"), "-c", "import gateway; print(gateway.__file__)"],
                           capture_output=True, text=True, check=True, cwd=root).stdout.strip()
    assert where.startswith(str(venv)), where
    assert os.access(venv / "bin/plume", os.X_OK)


def test_host_users_are_untouched(installed) -> None:
    host = subprocess.run(["getent", "passwd", "plume"], capture_output=True, text=True)
    staged_uid = entry(installed[0], "passwd", "plume")[2]
    assert host.returncode != 0 or host.stdout.split(":")[2] != staged_uid or staged_uid == "", (
        "useradd --prefix must not create the user on the host")


def test_second_run_changes_nothing(installed) -> None:
    root, _ = installed
    before = snapshot(root)
    proc = run_install(root)
    assert snapshot(root) == before
    assert "plume is up to date" in proc.stdout and "keeping" in proc.stdout
    assert "creating" not in proc.stdout and "installing" not in proc.stdout


def test_a_users_config_is_never_overwritten(installed) -> None:
    root, _ = installed
    site = root / "etc/plume/site.yaml"
    edited = site.read_text().replace("name: Example construction site", "name: Riverside Tower")
    site.write_text(edited)
    run_install(root)
    assert site.read_text() == edited


def test_a_broken_site_file_fails_the_install_with_the_checks_message(installed) -> None:
    root, _ = installed
    site = root / "etc/plume/site.yaml"
    good = site.read_bytes()
    try:
        site.write_text("site:\n  id: bad id\n")
        proc = run_install(root, check=False)
        assert proc.returncode != 0
        assert "site.id" in proc.stderr and "does not pass the check" in proc.stderr
        assert site.read_text() == "site:\n  id: bad id\n", "the script never rewrites a user's config"
    finally:
        site.write_bytes(good)


def test_without_root_files_the_script_refuses(tmp_path: Path) -> None:
    _require_root()
    proc = run_install(tmp_path, check=False)
    assert proc.returncode == 1 and "has no etc/passwd" in proc.stderr


def test_help_and_unknown_options() -> None:
    out = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--root DIR" in out and "--no-start" in out and not out.startswith("#")
    bad = subprocess.run(["bash", str(SCRIPT), "--frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 1 and "unknown option --frobnicate" in bad.stderr
