"""Site files that used to pass `plume config check` and then were wrong or failed later: a non-standard baud rate,
a relative profile path read from the working directory, YAML 1.1 numbers (octal, sexagesimal), and a user name
with an empty password."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.config import ConfigError
from gateway.site.load import load_site
from gateway.yamlio import load_yaml_text
from tests.plume_cli import plume as run_plume

ROOT = Path(__file__).resolve().parents[2]


def plume(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return run_plume(*args, cwd=cwd, timeout=60)


def site_file(tmp_path: Path, bus: str, extra: str = "", profile: str = "cwt-dust-weather") -> Path:
    f = tmp_path / "site.yaml"
    f.write_text(f"site: {{id: s1}}\nbuses:\n  - {bus}\ndevices:\n  - {{name: d, bus: b, profile: {profile}}}\n"
                 + extra)
    return f


@pytest.mark.parametrize(("kind", "rate", "nearest"), [("rtu", 96000, "115200"), ("rtu", 9601, "9600"),
                                                        ("rtu_over_tcp", 19000, "19200")])
def test_a_non_standard_baud_rate_is_refused_with_the_nearest_standard_one(tmp_path, kind, rate, nearest):
    where = "port: /dev/ttyUSB0" if kind == "rtu" else "host: 127.0.0.1"
    f = site_file(tmp_path, f"{{name: b, type: {kind}, {where}, baudrate: {rate}}}")
    with pytest.raises(ConfigError) as exc:
        load_site(f)
    (line,) = exc.value.problems
    assert line.startswith("buses[0]") and "baudrate" in line and str(rate) in line and nearest in line, line
    if rate == 96000:
        assert "9600" in line.replace("115200", "")  # the likely typo is named too


def test_standard_baud_rates_pass(tmp_path):
    for rate in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200):
        load_site(site_file(tmp_path, f"{{name: b, type: rtu, port: /dev/ttyUSB0, baudrate: {rate}}}"))


def test_a_relative_profile_path_is_read_from_the_site_files_folder(tmp_path):
    site_dir = tmp_path / "site"
    (site_dir / "profiles").mkdir(parents=True)
    (site_dir / "profiles" / "mine.yaml").write_text(
        "name: mine\nkind: dust\nregisters:\n  - {channel: pm10, address: 0, unit: ug/m3}\n")
    f = site_file(site_dir, "{name: b, type: tcp, host: 127.0.0.1}", profile="profiles/mine.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = plume("config", "check", str(f), cwd=elsewhere)  # as under systemd, working directory not the site's
    assert (r.returncode, r.stdout.strip()) == (0, "ok"), r.stderr
    r = plume("config", "check", "site.yaml", cwd=site_dir)
    assert (r.returncode, r.stdout.strip()) == (0, "ok"), r.stderr


def test_yaml_numbers_follow_the_yaml_1_2_core_schema():
    doc = load_yaml_text("pw: 012345\nat: 22:00\nhex: 0x01F4\noct: 0o17\nexp: 1e3\nneg: -12\nf: 2.5\n"
                         "u: 1_000\ninf: .inf\nzero: 0\nb: 0b101\n")
    assert doc == {"pw": "012345", "at": "22:00", "hex": 500, "oct": 15, "exp": 1000.0, "neg": -12, "f": 2.5,
                   "u": "1_000", "inf": float("inf"), "zero": 0, "b": "0b101"}


def test_an_unquoted_leading_zero_password_stays_as_written(tmp_path):
    f = site_file(tmp_path, "{name: b, type: tcp, host: 127.0.0.1}",
                  "sinks:\n  - {type: mqtt, host: 127.0.0.1, username: site1, password: 012345}\n")
    site = load_site(f)
    assert site.config.sinks[0].password.get_secret_value() == "012345"


@pytest.mark.parametrize("sink", [
    "{type: mqtt, host: 127.0.0.1, username: site1}",
    "{type: mqtt, host: 127.0.0.1, username: site1, password: ''}",
    "{type: influx, url: 'http://127.0.0.1:8086', database: plume, username: writer}",
])
def test_a_user_name_with_an_empty_password_is_a_warning(tmp_path, sink):
    f = site_file(tmp_path, "{name: b, type: tcp, host: 127.0.0.1}", f"sinks:\n  - {sink}\n")
    r = plume("config", "check", str(f))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("warning: sinks[0].password:") and "empty" in line, line


def test_no_warning_when_the_password_comes_from_elsewhere(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    f = site_file(tmp_path, "{name: b, type: tcp, host: 127.0.0.1}",
                  f"sinks:\n  - {{type: mqtt, host: 127.0.0.1, username: site1, password_file: {secret}}}\n")
    r = plume("config", "check", str(f))
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "ok", "")
