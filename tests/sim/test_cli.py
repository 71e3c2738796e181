"""`plume-sim FILE` in a subprocess: ready lines, a working bus, clean exit on SIGTERM, exit 2 on bad input."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from plume_sim import Simulator
from pymodbus.client import AsyncModbusTcpClient

from .helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "sim-site.yaml"


def command() -> list[str]:
    script = Path(sys.executable).parent / "plume-sim"
    return [str(script)] if script.exists() else [sys.executable, "-m", "plume_sim"]


def example_copy(tmp_path: Path) -> tuple[Path, dict[str, str], int]:
    """The example site with its ptys under tmp_path and a free TCP port, so parallel runs do not collide."""
    data = yaml.safe_load(EXAMPLE.read_text())
    port = free_port()
    links = {}
    for bus in data["buses"]:
        if "port" in bus and isinstance(bus["port"], str):
            bus["port"] = links[bus["name"]] = str(tmp_path / "pty" / Path(bus["port"]).name)
        elif bus["type"] == "tcp":
            bus["port"] = port
    path = tmp_path / "sim-site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, links, port


def test_example_site_simulates_every_device() -> None:
    sim = Simulator(EXAMPLE)
    assert sorted(sim.devices) == sorted(d["name"] for d in yaml.safe_load(EXAMPLE.read_text())["devices"])


async def test_cli_serves_the_example_site_and_stops_on_sigterm(tmp_path: Path) -> None:
    site, links, port = example_copy(tmp_path)
    control = free_port()
    truth = tmp_path / "truth.jsonl"
    proc = await asyncio.create_subprocess_exec(
        *command(), str(site), "--seed", "3", "--truth", str(truth), "--control", f"127.0.0.1:{control}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        lines = []
        while not lines or not lines[-1].startswith("ready:"):
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            assert line, (await proc.stderr.read()).decode() if proc.stderr else ""
            lines.append(line.decode().rstrip())
        text = "\n".join(lines)
        assert f"rtu rs485-1: {links['rs485-1']} (9600 baud, paced) devices dust-1@1 stack-1@2" in text
        assert f"tcp lan: 127.0.0.1:{port} devices dust-2@1 so2-1@2" in text
        assert f"serial uart-1: {links['uart-1']} (9600 baud, paced) pms5003 frames every 1 s from pm-1" in text
        assert f"control: 127.0.0.1:{control}" in text
        assert all(Path(p).is_symlink() for p in links.values())

        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert await client.connect()
        rr = await client.read_input_registers(0, count=3, device_id=1)
        client.close()
        assert not rr.isError() and rr.registers[0] > rr.registers[1] > rr.registers[2]

        reader, writer = await asyncio.open_connection("127.0.0.1", control)
        writer.write(b'{"device": "dust-2", "fault": "dead"}\n')
        assert json.loads(await asyncio.wait_for(reader.readline(), 2)) == {"ok": True}
        writer.close()
        assert (await asyncio.wait_for(proc.stdout.readline(), 2)).decode().strip() == "dust-2: fault dead"
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 10)
    assert rc == 0
    assert not any(os.path.lexists(p) for p in links.values())
    assert any(json.loads(line)["device"] == "dust-2" for line in truth.read_text().splitlines())


def test_bad_site_file_is_one_line_per_problem_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: s}\nbuses: [{name: b, type: tcp, host: 127.0.0.1, port: 99999}]\n"
                   "devices: [{name: d, bus: nowhere, profile: nope}]\n")
    res = subprocess.run([*command(), str(bad)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines and all(": " in line for line in lines) and "Traceback" not in res.stderr
    assert lines[0].startswith("buses[0].port:")


def test_bad_fault_and_missing_file_exit_2(tmp_path: Path) -> None:
    site, _, _ = example_copy(tmp_path)
    res = subprocess.run([*command(), str(site), "--fault", "dust-1:melted"], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 2 and res.stderr.startswith("fault 'dust-1:melted': unknown fault 'melted'")
    res = subprocess.run([*command(), str(tmp_path / "none.yaml")], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "not found" in res.stderr


def test_duration_stops_by_itself(tmp_path: Path) -> None:
    site, links, _ = example_copy(tmp_path)
    res = subprocess.run([*command(), str(site), "--duration", "0.2", "--no-pace", "--quiet"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "(9600 baud, unpaced)" in res.stdout and res.stdout.strip().splitlines()[-1].startswith("stopped:")
    assert not any(os.path.lexists(p) for p in links.values())
