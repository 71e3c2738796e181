"""`plume init` writes a commented starter site file that passes `config check` and polls the devices it names
(issue 14, "What to build"); it never overwrites a file unasked and refuses a device it cannot resolve."""

from __future__ import annotations

from gateway.localservers import free_port

from .helpers import plume, start_sim, write

SIM = """\
site: {{id: s}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {port}}}
devices:
  - {{name: dust-1, bus: lan, address: 1, profile: dust-monitor}}
  - {{name: stack-1, bus: lan, address: 2, profile: cems-analyzer}}
"""


def test_init_writes_a_site_file_that_checks_and_reads(tmp_path, procs):
    port = free_port()
    start_sim(procs, write(tmp_path / "sim.yaml", SIM, port=port), tmp_path)
    site = tmp_path / "site.yaml"
    r = plume("init", str(site), "--site-id", "riverside", "--timezone", "Asia/Shanghai", "--tcp",
              f"127.0.0.1:{port}", "--device", "dust-1:dust-monitor:1", "--device", "stack-1:cems-analyzer:2")
    assert r.returncode == 0, r.stderr
    text = site.read_text(encoding="utf-8")
    assert text.startswith("# Plume site file, written by `plume init`") and "timezone: Asia/Shanghai" in text
    check = plume("config", "check", str(site))
    assert check.returncode == 0 and check.stdout.strip() == "ok", check.stderr
    read = plume("read", str(site))
    assert read.returncode == 0 and "dust-1" in read.stdout and "stack-1" in read.stdout, read.stdout + read.stderr
    assert "UTC+08:00" in read.stdout

    again = plume("init", str(site))
    assert again.returncode == 2 and "--force" in again.stderr
    assert site.read_text(encoding="utf-8") == text


def test_init_refuses_a_device_whose_profile_does_not_exist(tmp_path):
    site = tmp_path / "site.yaml"
    r = plume("init", str(site), "--device", "x:no-such-profile:1")
    assert r.returncode == 2 and "no profile 'no-such-profile'" in r.stderr
    assert not site.exists()


def test_init_defaults_to_a_serial_line(tmp_path):
    site = tmp_path / "site.yaml"
    assert plume("init", str(site), "--port", "/dev/ttyUSB1", "--baudrate", "19200", "--parity", "E").returncode == 0
    text = site.read_text(encoding="utf-8")
    assert "type: rtu" in text and "port: /dev/ttyUSB1" in text and "baudrate: 19200" in text and "parity: E" in text
    assert plume("config", "check", str(site)).returncode == 0
