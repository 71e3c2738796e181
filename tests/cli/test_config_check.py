"""`plume config check` messages a site manager can act on (issue 14, finding 8): sentences instead of pydantic's
text, a `did you mean` for a near miss, the line of the file, every problem in one run (cross-checks too while
schema errors exist), a profile or a rule-pack file checked on its own, and a hint naming a command that works."""

from __future__ import annotations

from pathlib import Path

from .helpers import ROOT, plume

BROKEN = """\
site: {id: "my site"}
buses:
  - {name: rs485, type: rtu, port: /dev/ttyUSB0}
  - {name: lan, type: tcp, host: 127.0.0.1, port: 99999}
devices:
  - name: dust-1
    bus: rs485
    profile: dust-monitor
    poll_interval_s: -1
  - {name: dust-2, bus: nowhere, profile: dust-monitor}
  - {name: dust-3, bus: rs485, profile: dust-monitor, addres: 3}
  - {name: dust-4, bus: rs485, profile: no-such-profile}
  - {name: dust-5, bus: lan, profile: dust-monitor}
"""


def check(tmp_path: Path, text: str, name: str = "site.yaml") -> tuple[int, list[str]]:
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    r = plume("config", "check", str(f))
    assert "Traceback" not in r.stderr
    return r.returncode, r.stderr.strip().splitlines() if r.returncode else r.stdout.strip().splitlines()


def test_schema_errors_are_sentences_with_the_line_of_the_file(tmp_path):
    code, lines = check(tmp_path, BROKEN)
    assert code == 2
    assert "site.id: 'my site' is not a valid name: letters, digits and _ . - only, starting with a letter or a " \
           "digit (no spaces) (line 1)" in lines
    assert "buses[1].port: must be at most 65535, got 99999 (line 4)" in lines
    assert "devices[0].poll_interval_s: must be at least 0.05, got -1 (line 9)" in lines
    assert "devices[2].addres: unknown key (typo? did you mean address?) (line 11)" in lines
    assert not any("should" in ln or "pattern '^" in ln for ln in lines), lines


def test_cross_checks_are_shown_while_schema_errors_exist(tmp_path):
    code, lines = check(tmp_path, BROKEN)
    assert code == 2
    # the cross-section checks of the entries the schema accepted, at their positions in the file
    assert "devices[1].bus: no bus named 'nowhere' (buses: rs485) (line 10)" in lines
    assert any(ln.startswith("devices[3].profile: no profile 'no-such-profile'") and ln.endswith("(line 12)")
               for ln in lines), lines
    # a device on the refused bus is not reported again as on an unknown bus
    assert not any("devices[4]" in ln for ln in lines), lines
    assert len(lines) == 6, lines


def test_the_profile_hint_names_a_command_that_works(tmp_path):
    _, lines = check(tmp_path, BROKEN)
    (hint,) = [ln for ln in lines if "no-such-profile" in ln]
    assert "`plume profiles list` lists the built-ins" in hint
    assert plume("profiles", "list").returncode == 0


PROFILE = """\
name: my-analyzer
kind: cems
registers:
  - {channel: so2, address: 0, type: FLOAT32, order: CDAB, unit: mg/m3}
  - {channel: nox, address: 2, type: FLOAT32, order: CDAB, unit: mg/m3}
  - {channel: o2, address: 4, type: {o2type}, unit: "%"}
  - {channel: temp, address: 6, type: {o2type}, unit: C}
  - {channel: status_hi, address: 8, type: UINT8H}
  - {channel: status_lo, address: 8, type: UINT8L}
"""


def test_a_profile_file_is_checked_on_its_own_with_telegraf_names(tmp_path):
    code, lines = check(tmp_path, PROFILE.replace("{o2type}", "FLOAT16"), "my-analyzer.yaml")
    assert (code, lines) == (0, ["ok: profile my-analyzer (cems, modbus), 6 channels, 1 request per poll"])


def test_a_misspelt_type_on_several_registers_is_one_line_with_the_name_meant(tmp_path):
    code, lines = check(tmp_path, PROFILE.replace("{o2type}", "flaot32"), "my-analyzer.yaml")
    assert code == 2
    assert lines == ["registers[2].type: 'flaot32' is not one of u16, i16, u32, i32, f32, u64, i64, f64, f16, u8h, "
                     "u8l, i8h, i8l, string, bits; did you mean f32? (the same at 1 more: registers[3].type) (line 6)"]


def test_a_rule_pack_file_is_checked_on_its_own(tmp_path):
    shipped = ROOT / "gateway" / "alarms" / "packs" / "dust-hebei.yaml"
    r = plume("config", "check", str(shipped))
    assert r.returncode == 0 and r.stdout.startswith("ok: rule pack dust-hebei, "), r.stdout + r.stderr
    bad = shipped.read_text(encoding="utf-8").replace("window: 1h", "window: 7m")
    code, lines = check(tmp_path, bad, "my-pack.yaml")
    assert code == 2 and len(lines) == 1 and "minutes must divide an hour" in lines[0], lines
