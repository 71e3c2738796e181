"""The `uplinks` section: passwords refused at config check, environment secrets, code maps checked against the
site's devices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import ConfigError
from gateway.hj212.config import weak_password
from gateway.site.model import Site
from gateway.site.uplinks import check_uplinks

SITE = """\
site: {{id: s1, timezone: Asia/Shanghai}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: 1502}}
devices:
  - {{name: dust-1, bus: lan, address: 1, profile: dust-monitor}}
  - {{name: dust-2, bus: lan, address: 2, profile: dust-monitor}}
  - {{name: stack-1, bus: lan, address: 3, profile: cems-analyzer}}
sinks:
  - {{type: mqtt, name: broker, host: 127.0.0.1}}
uplinks:
  - name: {name}
    host: 127.0.0.1
    port: 8801
    mn: 010000A8900016F000169DC0
    pw: "{pw}"
    st: {st}
    codes: {codes}
    zs: {zs}
"""
CODES = "[{code: a34002, device: dust-1, channel: pm10, unit: mg/m3}]"


def site_fill(pw: str = "Zq7x2K", name: str = "city", st: int = 39, codes: str = CODES, zs: str = "{}"
              ) -> dict[str, object]:
    """What fills SITE's placeholders (the shared `make_site` fixture takes them as keywords)."""
    return {"pw": pw, "name": name, "st": st, "codes": codes, "zs": zs}


def site_text(**fill: object) -> str:
    return SITE.format(**site_fill(**fill))  # type: ignore[arg-type]


@pytest.mark.parametrize("pw", ["123456", "000000", "888888", "abc123", "abcdef", "654321", "12345", "aaaaaa",
                                "234567", "fedcba"])
def test_default_and_guessable_passwords_are_refused_naming_the_field_not_the_password(
        make_site: Callable[..., Site], pw: str) -> None:
    with pytest.raises(ConfigError) as ei:
        make_site(SITE, **site_fill(pw=pw))
    (line,) = ei.value.problems
    assert line.startswith("uplinks[0].pw: ")
    assert pw not in line


def test_password_that_does_not_fit_the_pw_field_is_refused(make_site: Callable[..., Site]) -> None:
    with pytest.raises(ConfigError, match=r"uplinks\[0\].pw: the HJ 212 PW field holds 1 to 6 letters or digits"):
        make_site(SITE, **site_fill(pw="Zq7x2K9"))


def test_password_from_the_environment_is_used_and_checked(make_site: Callable[..., Site],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HJ212_CITY_PW", "Zq7x2K")
    site = make_site(SITE, **site_fill(pw="${HJ212_CITY_PW}"))
    assert site.config.uplinks[0].pw.get_secret_value() == "Zq7x2K"
    assert "Zq7x2K" not in repr(site.config)
    monkeypatch.setenv("HJ212_CITY_PW", "123456")
    with pytest.raises(ConfigError, match=r"uplinks\[0\].pw: a factory default"):
        make_site(SITE, **site_fill(pw="${HJ212_CITY_PW}"))


def test_config_check_command_refuses_123456_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(site_text(pw="123456"))
    r = CliRunner().invoke(app, ["config", "check", str(path)])
    assert r.exit_code == 2
    assert "uplinks[0].pw: a factory default or common password is refused" in r.output
    assert "123456" not in r.output


def test_weak_password_rules() -> None:
    assert weak_password("Zq7x2K") is None and weak_password("a8F3k1") is None
    assert weak_password("135790") is None  # not a run: steps of 2 then -9
    assert weak_password("abc") == "shorter than 6 characters"


def test_site_level_checks_name_device_channel_and_unit_problems(make_site: Callable[..., Site]) -> None:
    codes = ("[{code: a34002, channel: pm10}, {code: a34001, device: dust-9, channel: tsp},"
             " {code: a21026, device: stack-1, channel: so3}, {code: a34004, device: dust-1, channel: pm25,"
             " unit: kPa}, {code: a19001, channel: o2}, {code: a21002, device: stack-1, channel: nox_std}]")
    with pytest.raises(ConfigError) as exc:  # what `plume config check` reports
        make_site(SITE, **site_fill(codes=codes, zs="{a21002: nox_zs}"))
    assert exc.value.problems == [
        "uplinks[0].codes[0].device: channel pm10 is on dust-1, dust-2; say which",
        "uplinks[0].codes[1].device: no enabled device named 'dust-9'",
        "uplinks[0].codes[2].channel: device stack-1 has no channel 'so3' (channels: so2, nox, no, no2, o2, "
        "particulate, flue_velocity, flue_temperature, flue_pressure, flue_humidity, flow, run_hours)",
        "uplinks[0].codes[3].unit: cannot convert pm25 from ug/m3 to kPa",
    ]
    # a unique channel needs no device; a channel the processing stage derives (nox_std, nox_zs) is accepted
    good = "[{code: a19001, channel: o2}, {code: a21002, device: stack-1, channel: nox_std}]"
    problems, routes = check_uplinks(make_site(SITE, **site_fill(codes=good, zs="{a21002: nox_zs}")))
    assert problems == []
    assert [(r.code, r.device, r.channel, r.zs_channel) for r in routes["city"]] == [
        ("a19001", "stack-1", "o2", None), ("a21002", "stack-1", "nox_std", "nox_zs")]


def test_uplink_may_not_reuse_a_sink_name(make_site: Callable[..., Site]) -> None:
    with pytest.raises(ConfigError) as exc:
        make_site(SITE, **site_fill(name="broker"))
    assert exc.value.problems == [
        "uplinks[0].name: 'broker' is already the name of sinks[0]; every sink and uplink needs "
        "its own name (it names its cursor in the log)"]


def test_model_level_problems(make_site: Callable[..., Site]) -> None:
    with pytest.raises(ConfigError, match=r"uplinks\[0\]: Value error|uplinks\[0\]: zs.a21026: no entry"):
        make_site(SITE, **site_fill(zs="{a21026: so2_zs}"))
    with pytest.raises(ConfigError, match=r"uplinks\[0\].st"):
        make_site(SITE, **site_fill(st=391))
    with pytest.raises(ConfigError, match="code a34002 mapped twice"):
        make_site(SITE, **site_fill(codes="[{code: a34002, channel: pm10, device: dust-1}, "
                                  "{code: a34002, channel: pm10, device: dust-2}]"))
