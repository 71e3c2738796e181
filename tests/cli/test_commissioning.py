"""`plume read`, `plan` and `scan` while commissioning (issue 14, findings 10, 11 and 12): a dead device is one
clear line with what to check, not the same note on every channel; the plan shows what a dead device costs a poll
cycle and what shaped the requests; RTU over TCP counts the same 10-bit characters as the link's inter-frame pause;
scan tries several line settings with progress and a summary; `--json` everywhere, `read --json` in the MQTT
payload's shape."""

from __future__ import annotations

from gateway.localservers import free_port

from .helpers import plume, start_sim, write

SIM = """\
site: {{id: s}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {port}}}
devices:
  - {{name: dust-1, bus: lan, profile: dust-monitor, timeout_s: 0.3}}
"""

SITE = SIM + """\
  - {{name: dust-9, bus: lan, address: 9, profile: dust-monitor, timeout_s: 0.3, retries: 1}}
"""


def test_read_of_a_dead_device_is_one_line_with_what_to_check(tmp_path, procs):
    port = free_port()
    start_sim(procs, write(tmp_path / "sim.yaml", SIM, port=port), tmp_path)
    r = plume("read", str(write(tmp_path / "site.yaml", SITE, port=port)))
    assert r.returncode == 0, r.stdout + r.stderr  # dust-1 answered
    dead = [ln for ln in r.stdout.splitlines() if "dust-9" in ln or "no answer" in ln]
    assert len(dead) == 1, r.stdout
    assert "no answer within 0.3 s" in dead[0]
    hint = [ln for ln in r.stderr.splitlines() if ln.startswith("dust-9:")]
    assert len(hint) == 1, r.stderr
    assert "address 9" in hint[0] and "plume scan --tcp 127.0.0.1:" in hint[0] and "--ids 1-247" in hint[0]
    assert "baud" not in hint[0], "no baud rate on Modbus TCP"


PLAN = """\
site: {id: s}
buses:
  - {name: gw, type: rtu_over_tcp, host: 127.0.0.1, port: 4001, baudrate: 9600}
devices:
  - {name: dust-1, bus: gw, profile: dust-monitor, timeout_s: 1.5, retries: 2, poll_interval_s: 5, max_gap: 0,
     max_registers_per_request: 4}
"""


def test_plan_shows_a_dead_devices_cost_what_shaped_the_requests_and_10_bit_characters_on_rtu_over_tcp(tmp_path):
    f = tmp_path / "site.yaml"
    f.write_text(PLAN, encoding="utf-8")
    r = plume("plan", str(f))
    assert r.returncode == 0, r.stderr
    assert "max_registers_per_request 4, max_gap 0" in r.stdout, r.stdout
    assert "dead: 1.5 s x 3 tries = 4.5 s of every 5 s poll interval" in r.stdout, r.stdout
    assert "10 bits per character" in r.stdout and "11 bits" not in r.stdout


RTU = """\
site: {{id: s}}
buses:
  - {{name: line, type: rtu, port: {tmp}/ttyLINE, baudrate: 19200}}
devices:
  - {{name: dust-3, bus: line, address: 3, profile: dust-monitor}}
"""


def test_scan_tries_several_baud_rates_and_parities_with_progress_and_a_summary(tmp_path, procs):
    start_sim(procs, write(tmp_path / "rtu.yaml", RTU, tmp=tmp_path), tmp_path)
    r = plume("scan", "--port", str(tmp_path / "ttyLINE"), "--baudrate", "9600,19200", "--parity", "N,E",
              "--ids", "1-4", "--timeout", "0.2")
    assert r.returncode == 0, r.stdout + r.stderr
    progress = [ln for ln in r.stderr.splitlines() if ln.startswith("scanning ")]
    assert [ln.split(" at ")[1] for ln in progress] == ["9600 8N1: 4 ids", "9600 8E1: 4 ids", "19200 8N1: 4 ids",
                                                       "19200 8E1: 4 ids"], r.stderr
    # a pty takes no parity bit: a setting the port refuses is one line, and the scan goes on
    assert "Traceback" not in r.stderr
    assert sum(ln.startswith("cannot scan ") and " 8E1: " in ln for ln in r.stderr.splitlines()) == 2, r.stderr
    # the simulated line answers only at its own baud rate, as a real RS-485 slave (plume_sim.ptys.LineSettings)
    assert "id   3 at 19200 8N1: answered" in r.stdout, r.stdout
    assert "at 9600" not in r.stdout, r.stdout
    summary = r.stdout.strip().splitlines()[-1]
    assert summary.startswith("found 1 device: id 3 at 19200 8N1 (4 settings x 4 ids in "), summary


def test_scan_on_modbus_tcp_has_a_summary_and_no_serial_hints(tmp_path, procs):
    port = free_port()
    start_sim(procs, write(tmp_path / "sim.yaml", SIM, port=port), tmp_path)
    r = plume("scan", "--tcp", f"127.0.0.1:{port}", "--ids", "1-3", "--timeout", "0.2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("found 1 device: id 1 (3 ids in "), r.stdout
    assert "baud" not in r.stdout + r.stderr and "parity" not in r.stdout + r.stderr


def test_json_output_of_config_check_plan_scan_profiles_and_read_in_the_mqtt_shape(tmp_path, procs):
    import json

    port = free_port()
    start_sim(procs, write(tmp_path / "sim.yaml", SIM, port=port), tmp_path)
    site = write(tmp_path / "site.yaml", SITE, port=port)

    r = plume("config", "check", "--json", str(site))
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["ok"] is True and doc["summary"] == "ok"
    assert doc["warnings"] and doc["warnings"][0].startswith("sinks: none")
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: s}\ndevices:\n  - {name: d, bus: nowhere}\n", encoding="utf-8")
    r = plume("config", "check", "--json", str(bad))
    doc = json.loads(r.stdout)
    assert r.returncode == 2 and doc["ok"] is False
    assert doc["problems"][0] == {"path": "devices[0].bus", "message": "no bus named 'nowhere' (buses: none defined)",
                                  "line": 3}, doc

    (bus,) = [json.loads(ln) for ln in plume("plan", "--json", str(site)).stdout.splitlines()]
    assert bus["bus"] == "lan" and [d["device"] for d in bus["devices"]] == ["dust-1", "dust-9"]
    assert bus["devices"][1]["dead_cost_s"] == 0.6 and bus["devices"][0]["max_gap"] >= 0

    r = plume("scan", "--json", "--tcp", f"127.0.0.1:{port}", "--ids", "1-2", "--timeout", "0.2")
    doc = json.loads(r.stdout)
    assert [f["id"] for f in doc["found"] if f["device"]] == [1] and doc["ids"] == 2

    profiles = [json.loads(ln) for ln in plume("profiles", "list", "--json").stdout.splitlines()]
    assert "dust-monitor" in {p["profile"] for p in profiles} and all(p["channels"] for p in profiles)

    lines = [json.loads(ln) for ln in plume("read", "--json", str(site)).stdout.splitlines()]
    good, dead = lines
    assert set(good) >= {"v", "site", "device", "kind", "seq", "ts", "ok", "values"} and good["ok"] is True
    assert good["v"] == 1 and good["seq"] is None and set(good["values"]["pm10"]) >= {"value", "unit", "flag"}
    assert dead["ok"] is False and "no answer" in dead["error"], dead
