"""deploy/systemd/plume.service: systemd's own verifier and offline security analysis, and the hardening it must keep.

systemd does not run in these sandboxes (no PID 1 systemd), but `systemd-analyze verify` and
`systemd-analyze security --offline=yes` read unit files without it. Both run against a throwaway root holding the
unit as installed (/etc/systemd/system), the distribution's units (for the dependencies) and a stand-in
/opt/plume/venv/bin/plume (verify checks that ExecStart= is executable).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from .helpers import DEPLOY, need

UNIT = DEPLOY / "systemd/plume.service"


def directives(text: str) -> dict[str, list[str]]:
    """Section.Key -> values (repeated keys such as DeviceAllow= keep every value)."""
    out: dict[str, list[str]] = defaultdict(list)
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out[f"{section}.{key.strip()}"].append(value.strip())
    return out


@pytest.fixture
def staged_root(tmp_path: Path) -> Path:
    need("systemd-analyze")
    units = Path("/usr/lib/systemd/system")
    if not (units / "multi-user.target").exists():
        pytest.skip("the distribution's systemd units are not installed (/usr/lib/systemd/system)")
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
    shutil.copy(UNIT, root / "etc/systemd/system/plume.service")
    plume = root / "opt/plume/venv/bin/plume"
    plume.parent.mkdir(parents=True)
    plume.write_text("#!/bin/sh\nexit 0\n")
    plume.chmod(0o755)
    kill = root / "bin/kill"  # ExecReload's /bin/kill (procps on the target system)
    kill.parent.mkdir(parents=True)
    kill.write_text("#!/bin/sh\nexit 0\n")
    kill.chmod(0o755)
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", f"--root={root}", *args], capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verify_is_clean(staged_root: Path) -> None:
    proc = analyze(staged_root, "verify", "plume.service")
    # verify exits 0 for unknown keys and merely warns: any output at all is a finding.
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stdout + proc.stderr


def test_verify_catches_a_typo(staged_root: Path) -> None:
    """The check above would see a misspelt directive (systemd ignores those silently at run time)."""
    unit = staged_root / "etc/systemd/system/plume.service"
    unit.write_text(unit.read_text().replace("ProtectClock=yes", "ProtectClok=yes"))
    proc = analyze(staged_root, "verify", "plume.service")
    assert "Unknown key 'ProtectClok'" in proc.stderr


def test_offline_security_exposure_stays_low(staged_root: Path) -> None:
    proc = analyze(staged_root, "security", "--offline=yes", "--threshold=20", "plume.service")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"Overall exposure level for plume\.service: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout
    # 1.6 when written ("OK"); the ceiling leaves room for a justified drop-in, not for losing the hardening.
    assert float(m.group(1)) <= 2.0, proc.stdout


def test_hardening_directives() -> None:
    d = directives(UNIT.read_text())
    one = {k: v[-1] for k, v in d.items()}
    expected = {
        "Service.Type": "notify",
        # `systemctl reload plume`: the gateway reloads the site file on SIGHUP (and keeps the old one if invalid)
        "Service.ExecReload": "/bin/kill -HUP $MAINPID",
        "Service.NotifyAccess": "main",
        "Service.Restart": "always",
        "Service.User": "plume",
        "Service.SupplementaryGroups": "dialout",
        "Service.NoNewPrivileges": "yes",
        "Service.ProtectSystem": "strict",
        "Service.StateDirectory": "plume",
        "Service.ProtectHome": "yes",
        "Service.PrivateTmp": "yes",
        "Service.ProtectKernelTunables": "yes",
        "Service.ProtectKernelModules": "yes",
        "Service.ProtectKernelLogs": "yes",
        "Service.ProtectControlGroups": "yes",
        "Service.CapabilityBoundingSet": "",
        "Service.DevicePolicy": "closed",
        "Service.RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "Service.RestartPreventExitStatus": "2",
        "Unit.StartLimitIntervalSec": "0",
        "Install.WantedBy": "multi-user.target",
    }
    for key, value in expected.items():
        assert one.get(key) == value, f"{key}={one.get(key)!r}, expected {value!r}"
    assert int(one["Service.WatchdogSec"]) > 0 and int(one["Service.RestartSec"]) > 0
    assert one["Service.MemoryMax"].endswith("M") and int(one["Service.LimitNOFILE"]) >= 1024
    # Serial ports: the tty drivers of UARTs and USB adapters, and nothing that would hide /dev.
    assert set(d["Service.DeviceAllow"]) == {"char-ttyS rw", "char-ttyAMA rw", "char-ttyUSB rw", "char-ttyACM rw"}
    assert "Service.PrivateDevices" not in d and "Service.PrivateUsers" not in d
    assert one["Service.ExecStart"].startswith("/opt/plume/venv/bin/plume run /etc/plume/site.yaml")


def test_exec_start_matches_what_install_sh_creates() -> None:
    script = (DEPLOY / "install.sh").read_text()
    assert "VENV=$OPT/venv" in script and "OPT=$ROOT/opt/plume" in script
    assert '"$ETC/site.yaml"' in script and "ETC=$ROOT/etc/plume" in script
    assert "--home-dir /var/lib/plume" in script
