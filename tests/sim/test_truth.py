"""The truth log says exactly what the gateway decodes, for the channels actually served, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plume_sim import Simulator
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from gateway.acquisition.codec import decode
from gateway.config import TcpBus
from gateway.site.model import Site

from .helpers import FakeClock, RawSerial, rtu


def truth(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
async def sim(site: Site, clock: FakeClock, tmp_path: Path):
    async with Simulator(site, clock=clock, truth_path=tmp_path / "truth.jsonl") as s:
        yield s


async def test_truth_matches_what_the_client_decoded(sim: Simulator, site: Site, clock: FakeClock,
                                                     tmp_path: Path) -> None:
    serial = AsyncModbusSerialClient(str(site.bus("rs485-1").port), framer=FramerType.RTU,  # type: ignore[union-attr]
                                     baudrate=9600, timeout=1, retries=0)
    bus = site.bus("lan")
    assert isinstance(bus, TcpBus)
    tcp = AsyncModbusTcpClient(bus.host, port=bus.port, timeout=1, retries=0)
    assert await serial.connect() and await tcp.connect()
    try:
        reads = [
            ("stack-1", await serial.read_holding_registers(0, count=32, device_id=2), 0),
            ("dust-1", await serial.read_holding_registers(0x01F4, count=14, device_id=3), 0x01F4),
            ("dust-2", await tcp.read_input_registers(0, count=9, device_id=1), 0),
            ("so2-1", await tcp.read_input_registers(0, count=4, device_id=2), 0),
        ]
    finally:
        serial.close()
        tcp.close()
    logged = {(t["device"], t["channel"]): t for t in truth(tmp_path / "truth.jsonl")}
    count = 0
    for device, rr, start in reads:
        assert not rr.isError()
        for spec in sim.device(device).resolved.profile.registers:
            if spec.function in (3, 4) and start <= spec.address < start + len(rr.registers):
                off = spec.address - start
                entry = logged[(device, spec.channel)]
                assert entry["value"] == decode(spec, rr.registers[off : off + spec.words]).value
                assert entry["ts"] == int(clock.t * 1000)
                count += 1
    assert count == len(logged) == 12 + 11 + 9 + 2


async def test_only_channels_covered_by_the_request_are_logged(sim: Simulator, site: Site, tmp_path: Path) -> None:
    port = RawSerial(str(site.bus("rs485-1").port))  # type: ignore[union-attr]
    try:
        assert len(await port.transact(rtu(3, bytes.fromhex("03 01 F4 00 02")), 9)) == 9
        sim.set_fault("dust-1", "exception:4")
        assert len(await port.transact(rtu(3, bytes.fromhex("03 01 F4 00 02")), 5)) == 5
        sim.set_fault("dust-1", "crc")
        assert len(await port.transact(rtu(3, bytes.fromhex("03 01 F4 00 02")), 9)) == 9
    finally:
        port.close()
    assert [t["channel"] for t in truth(tmp_path / "truth.jsonl")] == ["wind_speed", "wind_force"]


async def test_nan_is_logged_as_null_and_writes_are_logged(sim: Simulator, site: Site, tmp_path: Path) -> None:
    sim.set_fault("stack-1", "nan")
    port = RawSerial(str(site.bus("rs485-1").port))  # type: ignore[union-attr]
    try:
        assert len(await port.transact(rtu(2, bytes.fromhex("03 00 00 00 02")), 9)) == 9
        assert len(await port.transact(rtu(3, bytes.fromhex("06 01 FC 00 63")), 8)) == 8
    finally:
        port.close()
    lines = truth(tmp_path / "truth.jsonl")
    assert lines[0] == {"ts": lines[0]["ts"], "device": "stack-1", "channel": "so2", "value": None}
    assert lines[1]["device"] == "dust-1"
    assert lines[1]["write"] == {"function": 6, "address": 0x01FC, "values": [99], "channels": {"pm10": 99.0}}


async def test_same_seed_same_time_same_registers_over_the_wire(site: Site, clock: FakeClock) -> None:
    async def read(seed: int) -> list[int]:
        async with Simulator(site, seed=seed, clock=clock):
            port = RawSerial(str(site.bus("rs485-1").port))  # type: ignore[union-attr]
            try:
                return list(await port.transact(rtu(2, bytes.fromhex("03 00 00 00 20")), 69))
            finally:
                port.close()

    first = await read(5)
    assert await read(5) == first
    assert await read(6) != first
