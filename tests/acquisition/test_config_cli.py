"""`plume config check` and `plume config schema` as a site manager runs them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gateway.config import ConfigError
from gateway.site.load import load_site
from tests.plume_cli import plume as run_plume

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "deploy" / "examples").glob("*.yaml"))


def plume(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_plume(*args, env=env, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_site_file_is_valid(path):
    r = plume("config", "check", str(path))
    # the demo's site has no sinks (the demo delivers nowhere unless --with-servers): a warning says so
    warning = ("warning: sinks: none: readings are committed to the durable log but delivered nowhere (add an mqtt "
               "or influx sink, or an HJ 212 uplink)\n") if path.name == "sim-site.yaml" else ""
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "ok", warning)


def test_problems_are_one_line_each_starting_with_the_field_path(tmp_path):
    f = tmp_path / "site.yaml"
    f.write_text(
        """
site: {id: s1}
buses:
  - {name: rs485, type: rtu, port: /dev/ttyUSB0}
  - {name: lan, type: tcp, host: 127.0.0.1}
devices:
  - {name: dust, bus: rs485, address: 1, profile: cwt-dust-weather}
  - {name: dust, bus: rs485, address: 1, profile: dust-monitor}
  - {name: ghost, bus: nowhere, profile: cems-analyzer}
  - {name: odd, bus: lan, profile: no-such-profile}
"""
    )
    r = plume("config", "check", str(f))
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr
    assert any(ln.startswith("devices[1].name: duplicate device name 'dust'") for ln in lines)
    assert any(ln.startswith("devices[1].address: address 1 on bus rs485") for ln in lines)
    assert any(ln.startswith("devices[2].bus: no bus named 'nowhere'") for ln in lines)
    assert any(ln.startswith("devices[3].profile: no profile 'no-such-profile'") for ln in lines)
    assert len(lines) == 4


def test_unknown_keys_and_bad_types_name_the_nested_field(tmp_path):
    f = tmp_path / "site.yaml"
    f.write_text(
        """
site: {id: s1, timezone: Asia/Shanghai}
buses:
  - {name: lan, type: tcp, host: 127.0.0.1, prot: 502}
devices:
  - name: a
    bus: lan
    kind: dust
    registers:
      - {channel: pm10, address: 0, type: flot}
      - {channel: so2, address: 65535, type: f32}
"""
    )
    r = plume("config", "check", str(f))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2
    assert any(ln.startswith("buses[0].prot: unknown key") for ln in lines), lines
    assert any(ln.startswith("devices[0].registers[0].type: ") for ln in lines), lines
    assert any(ln.startswith("devices[0].registers[1]: address 65535 + 2 registers runs past 65535") for ln in lines)


def test_missing_file_and_broken_yaml_are_one_clear_line(tmp_path):
    r = plume("config", "check", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: [\n")
    r = plume("config", "check", str(bad))
    assert r.returncode == 2 and "not valid YAML" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_channel_named_no_stays_a_string_not_a_boolean(tmp_path):
    """YAML 1.1 would read `no` (nitric oxide) as False."""
    f = tmp_path / "site.yaml"
    f.write_text(
        "site: {id: s}\nbuses: [{name: lan, type: tcp, host: 127.0.0.1}]\n"
        "devices: [{name: a, bus: lan, kind: cems, registers: [{channel: no, address: 0, type: f32}]}]\n"
    )
    assert [r.channel for r in load_site(f).devices[0].profile.registers] == ["no"]


def test_environment_overrides_endpoint_values(tmp_path, monkeypatch):
    f = tmp_path / "site.yaml"
    f.write_text(
        "site: {id: s}\nbuses: [{name: lan, type: tcp, host: '${LAN_HOST:-127.0.0.1}', port: '${LAN_PORT:-502}'}]\n"
        "devices: [{name: a, bus: lan, profile: dust-monitor}]\n"
    )
    assert (load_site(f).bus("lan").host, load_site(f).bus("lan").port) == ("127.0.0.1", 502)
    monkeypatch.setenv("LAN_PORT", "1502")
    assert load_site(f).bus("lan").port == 1502
    f.write_text(f.read_text().replace("${LAN_HOST:-127.0.0.1}", "${LAN_HOST}"))
    monkeypatch.delenv("LAN_HOST", raising=False)
    with pytest.raises(ConfigError) as exc:
        load_site(f)
    assert exc.value.problems == ["buses[0].host: environment variable LAN_HOST is not set and has no default"]


def test_schema_is_json_schema_of_the_site_file():
    r = plume("config", "schema")
    schema = json.loads(r.stdout)
    assert r.returncode == 0
    assert {"site", "buses", "devices"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_device_profile_from_a_user_file_without_python(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "my-analyzer.yaml").write_text(
        "name: my-analyzer\nkind: cems\nregisters:\n"
        "  - {channel: co, address: 10, type: f32, order: CDAB, unit: mg/m3}\n"
    )
    f = tmp_path / "site.yaml"
    f.write_text(
        "site: {id: s}\nprofiles_dir: [profiles]\nbuses: [{name: lan, type: tcp, host: 127.0.0.1}]\n"
        "devices: [{name: a, bus: lan, profile: my-analyzer}]\n"
    )
    assert plume("config", "check", str(f)).returncode == 0
    assert load_site(f).devices[0].profile.channel("co").unit == "mg/m3"


def test_device_register_entry_replaces_the_profile_channel_of_the_same_name(tmp_path):
    f = tmp_path / "site.yaml"
    f.write_text(
        "site: {id: s}\nbuses: [{name: lan, type: tcp, host: 127.0.0.1}]\n"
        "devices: [{name: a, bus: lan, profile: cwt-dust-weather,\n"
        "  registers: [{channel: pm10, address: 0x01FC, scale: 0.1, unit: mg/m3}]}]\n"
    )
    prof = load_site(f).devices[0].profile
    assert [r.channel for r in prof.registers].count("pm10") == 1
    assert (prof.channel("pm10").scale, prof.channel("pm10").unit) == (0.1, "mg/m3")
