"""The cockpit's password and session rules, and what the site file accepts for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cockpit.auth import Sessions, check_password, hash_password
from gateway.config import ConfigError
from gateway.site.load import load_site

SITE = """\
site: {{id: s, timezone: Asia/Shanghai}}
cockpit:
{cockpit}
"""


def test_hash_password_keeps_no_password_and_checks_only_the_right_one() -> None:
    stored = hash_password("open sesame")
    assert "open sesame" not in stored and stored.startswith("scrypt$")
    assert check_password("open sesame", stored)
    assert not check_password("open sesame ", stored)
    assert not check_password("open sesame", hash_password("open sesame").replace("scrypt", "md5"))
    assert hash_password("x") != hash_password("x")  # salted
    with pytest.raises(ValueError):
        hash_password("")


def test_a_session_expires_after_its_lifetime_whatever_happens_in_between() -> None:
    now = [1000.0]
    s = Sessions(minutes=10, clock=lambda: now[0])
    token = s.create()
    now[0] += 599
    assert s.valid(token)
    now[0] += 2
    assert not s.valid(token)
    assert not s.valid(token)
    assert not s.valid(None) and not s.valid("made-up")


def test_a_logout_ends_the_session() -> None:
    s = Sessions(minutes=10)
    token = s.create()
    s.end(token)
    assert not s.valid(token)


def test_failed_logins_in_a_row_slow_the_next_attempts() -> None:
    s = Sessions(minutes=10)
    assert s.penalty_s() == 0
    s.failures = 7
    assert s.penalty_s() == 3
    s.failures = 100
    assert s.penalty_s() == 10
    s.create()
    assert s.penalty_s() == 0


def _load(tmp_path: Path, cockpit: str) -> object:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(cockpit=cockpit), encoding="utf-8")
    return load_site(path)


def test_the_cockpit_is_off_unless_the_site_file_enables_it(tmp_path: Path) -> None:
    site = load_site(_write(tmp_path, "site: {id: s}\n"))
    assert site.config.cockpit.enabled is False


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_beyond_loopback_the_cockpit_needs_a_password_hash(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, "  enabled: true\n  host: 0.0.0.0")
    assert any("password_hash is required" in p and "plume cockpit hash-password" in p for p in exc.value.problems)
    _load(tmp_path, "  enabled: true\n  host: 127.0.0.1")  # this machine only: no password needed
    _load(tmp_path, f"  enabled: true\n  host: 0.0.0.0\n  password_hash: '{hash_password('pw')}'")


def test_a_password_instead_of_its_hash_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, "  enabled: true\n  host: 0.0.0.0\n  password_hash: hunter2")
    assert any(p.startswith("cockpit.password_hash:") and "never the password" in p for p in exc.value.problems)
