"""A site whose platform assigned a "common" HJ 212 password can report (issue 14, finding 9): the password used to
be refused with no way out; now an explicit `pw_assigned_by_platform: true` uses it, with a warning at config check
(and at run), while without it the refusal says how to proceed. The password itself is never printed."""

from __future__ import annotations

from tests.hj212.test_config import site_text

from .helpers import plume


def with_ack(text: str) -> str:
    return text.replace('    pw: "', '    pw_assigned_by_platform: true\n    pw: "', 1)


def test_a_common_password_is_refused_with_the_way_out(tmp_path):
    f = tmp_path / "site.yaml"
    f.write_text(site_text(pw="123456"), encoding="utf-8")
    r = plume("config", "check", str(f))
    assert r.returncode == 2
    assert "uplinks[0].pw: a factory default or common password is refused" in r.stderr
    assert "set `pw_assigned_by_platform: true` on this uplink" in r.stderr
    assert "123456" not in r.stdout + r.stderr


def test_a_common_password_assigned_by_the_platform_is_used_with_a_warning(tmp_path):
    f = tmp_path / "site.yaml"
    text = with_ack(site_text(pw="123456"))
    assert "pw_assigned_by_platform: true" in text
    f.write_text(text, encoding="utf-8")
    r = plume("config", "check", str(f))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: uplinks[0].pw:")]
    assert len(warnings) == 1 and "pw_assigned_by_platform" in warnings[0], r.stderr
    assert "123456" not in r.stdout + r.stderr


def test_the_acknowledgement_does_not_lift_the_pw_field_format(tmp_path):
    f = tmp_path / "site.yaml"
    f.write_text(with_ack(site_text(pw="Zq7x2K9")), encoding="utf-8")
    r = plume("config", "check", str(f))
    assert r.returncode == 2 and "uplinks[0].pw: the HJ 212 PW field holds 1 to 6 letters or digits" in r.stderr
