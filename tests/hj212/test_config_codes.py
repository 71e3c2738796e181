"""`plume config check` warns about an uplink's pollutant code outside the standard's code table
(gateway.hj212.names.KNOWN_CODES): a strict platform refuses every packet carrying it (the platform simulator
does), so a typo or a Plume channel name used as a code would lose the site's data. A warning, not a refusal: a
platform may run a wider table of its own."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import plume
from tests.hj212.test_config import site_text

CODES = ("[{code: a34002, device: dust-1, channel: pm10, unit: mg/m3}, {code: a34099, device: dust-1, channel: tsp},"
         " {code: pm25, device: dust-1, channel: pm25}, {code: LA, device: dust-1, channel: noise}]")


def test_config_check_warns_about_codes_a_strict_platform_refuses(tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(site_text(codes=CODES), encoding="utf-8")
    r = plume("config", "check", str(f))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: uplinks[0].codes")]
    assert [w.split(":")[1].strip() for w in warnings] == ["uplinks[0].codes[1].code", "uplinks[0].codes[2].code"]
    assert "a34099 is not a pollutant code of HJ 212" in warnings[0] and "strict platform refuses" in warnings[0]
    assert "pm25 is not a pollutant code" in warnings[1]


def test_known_codes_give_no_warning(tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(site_text(), encoding="utf-8")
    r = plume("config", "check", str(f))
    assert r.returncode == 0, r.stderr
    assert "codes" not in r.stderr
