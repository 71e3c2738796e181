"""Modbus RTU on a pty: the CWT wire vector, silence where a real line is silent, exceptions, pacing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from plume_sim import Simulator
from plume_sim.model import quantize
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient

from gateway.site.model import Site

from .helpers import RTU_SITE, FakeClock, RawSerial, free_port, rtu

WIRE_REQUEST = bytes.fromhex("01 03 01 F4 00 01 C4 04")
WIRE_RESPONSE = bytes.fromhex("01 03 02 00 7D 78 65")


def port_of(site: Site) -> str:
    return str(site.bus("rs485-1").port)  # type: ignore[union-attr]


@pytest.fixture
async def sim(site: Site, clock: FakeClock):
    async with Simulator(site, seed=1, clock=clock) as s:
        yield s


@pytest.fixture
def raw(sim: Simulator, site: Site):
    port = RawSerial(port_of(site))
    yield port
    port.close()


async def test_cwt_wire_vector_byte_for_byte(raw: RawSerial) -> None:
    assert await raw.transact(WIRE_REQUEST, len(WIRE_RESPONSE)) == WIRE_RESPONSE


async def test_cwt_wire_vector_decodes_to_1_25_m_s_through_pymodbus(sim: Simulator, site: Site) -> None:
    client = AsyncModbusSerialClient(port_of(site), framer=FramerType.RTU, baudrate=9600, timeout=1, retries=0)
    assert await client.connect()
    try:
        rr = await client.read_holding_registers(0x01F4, count=1, device_id=1)
        assert not rr.isError()
        spec = sim.device("wind-1").resolved.profile.channel("wind_speed")
        from gateway.acquisition.codec import decode

        assert decode(spec, rr.registers).value == 1.25
    finally:
        client.close()


async def test_unknown_slave_id_gets_no_answer(raw: RawSerial) -> None:
    assert await raw.transact(rtu(9, bytes.fromhex("03 01 F4 00 01")), 1, timeout=0.25) == b""


async def test_wrong_crc_gets_no_answer_and_the_line_recovers(raw: RawSerial) -> None:
    bad = WIRE_REQUEST[:-1] + bytes([WIRE_REQUEST[-1] ^ 0xFF])
    assert await raw.transact(bad, 1, timeout=0.25) == b""
    assert await raw.transact(WIRE_REQUEST, len(WIRE_RESPONSE)) == WIRE_RESPONSE


async def test_reads_match_the_model_at_the_same_instant(sim: Simulator, site: Site, clock: FakeClock) -> None:
    client = AsyncModbusSerialClient(port_of(site), framer=FramerType.RTU, baudrate=9600, timeout=1, retries=0)
    assert await client.connect()
    try:
        rr = await client.read_holding_registers(0x01F4, count=10, device_id=3)
        assert not rr.isError()
    finally:
        client.close()
    dev = sim.device("dust-1")
    expected = dev.values(list(dev.resolved.profile.registers), clock.t)
    from gateway.acquisition.codec import decode

    for spec in dev.resolved.profile.registers:
        if spec.address < 0x01F4 + 10:
            got = decode(spec, rr.registers[spec.address - 0x01F4 : spec.address - 0x01F4 + spec.words]).value
            assert got == quantize(spec, expected[spec.channel]), spec.channel


@pytest.mark.parametrize(("address", "count"), [(0x01F3, 2), (0x0200, 3), (0x07D0, 1), (0, 1)])
async def test_reads_outside_the_map_get_exception_2(raw: RawSerial, address: int, count: int) -> None:
    req = rtu(3, bytes([3]) + address.to_bytes(2, "big") + count.to_bytes(2, "big"))
    assert await raw.transact(req, 5) == rtu(3, bytes([0x83, 2]))


async def test_unmapped_registers_inside_the_map_read_zero(raw: RawSerial) -> None:
    req = rtu(3, bytes.fromhex("03 01 FE 00 03"))  # 0x1FE..0x200 lie between pressure and rainfall
    assert await raw.transact(req, 11) == rtu(3, bytes.fromhex("03 06 0000 0000 0000"))


async def test_input_register_read_of_a_holding_map_is_illegal(raw: RawSerial) -> None:
    assert await raw.transact(rtu(3, bytes.fromhex("04 01 F4 00 01")), 5) == rtu(3, bytes([0x84, 2]))


async def test_unknown_function_gets_exception_1(raw: RawSerial) -> None:
    assert await raw.transact(rtu(3, bytes.fromhex("2B 0E 01 00")), 5) == rtu(3, bytes([0xAB, 1]))


async def test_bad_count_gets_exception_3(raw: RawSerial) -> None:
    assert await raw.transact(rtu(3, bytes.fromhex("03 01 F4 00 00")), 5) == rtu(3, bytes([0x83, 3]))


async def test_writes_override_the_signal_and_are_recorded(sim: Simulator, raw: RawSerial) -> None:
    assert await raw.transact(rtu(3, bytes.fromhex("06 01 F4 01 F4")), 8) == rtu(3, bytes.fromhex("06 01 F4 01 F4"))
    assert await raw.transact(rtu(3, bytes.fromhex("03 01 F4 00 01")), 7) == rtu(3, bytes.fromhex("03 02 01 F4"))
    req = rtu(3, bytes.fromhex("10 01 FB 00 02 04 00 0C 00 22"))
    assert await raw.transact(req, 8) == rtu(3, bytes.fromhex("10 01 FB 00 02"))
    writes = sim.written("dust-1")
    assert [w["function"] for w in writes] == [6, 16]
    assert writes[0]["channels"] == {"wind_speed": 5.0}
    assert writes[1]["channels"] == {"pm25": 12.0, "pm10": 34.0}


async def test_broadcast_writes_are_executed_without_answer(sim: Simulator, raw: RawSerial) -> None:
    assert await raw.transact(rtu(0, bytes.fromhex("06 01 F4 00 64")), 1, timeout=0.25) == b""
    assert sim.written("dust-1")[0]["values"] == [100]


async def test_pty_link_is_replaced_when_stale_and_removed_on_stop(site: Site) -> None:
    link = Path(port_of(site))
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("/dev/pts/does-not-exist")
    sim = Simulator(site)
    await sim.start()
    assert link.is_symlink() and os.path.exists(os.readlink(link))
    await sim.stop()
    assert not link.exists() and not link.is_symlink()


async def test_gateway_may_close_and_reopen_the_port(sim: Simulator, site: Site) -> None:
    for _ in range(3):
        port = RawSerial(port_of(site))
        try:
            assert await port.transact(WIRE_REQUEST, len(WIRE_RESPONSE)) == WIRE_RESPONSE
        finally:
            port.close()


PACING_SITE = """
site: {{id: s}}
buses: [{{name: rs485-1, type: rtu, port: "{tmp}/ttyPace", baudrate: 4800}}]
devices:
  - name: big
    bus: rs485-1
    address: 5
    kind: test
    registers:
      - {{channel: first, address: 0}}
      - {{channel: last, address: 59}}
"""


async def read_60(site: Site, pace: bool) -> float:
    async with Simulator(site, pace=pace):
        port = RawSerial(port_of(site), 4800)
        try:
            start = time.monotonic()
            answer = await port.transact(rtu(5, bytes.fromhex("03 00 00 00 3C")), 125, timeout=3)
            elapsed = time.monotonic() - start
        finally:
            port.close()
    assert len(answer) == 125
    return elapsed


async def test_paced_read_takes_at_least_the_wire_time(make_site) -> None:
    site = make_site(PACING_SITE)
    char = 10 / 4800  # 8N1
    theory = (8 + 125) * char + 3.5 * char
    assert await read_60(site, pace=True) >= 0.95 * theory


async def test_unpaced_read_is_much_faster_than_the_wire(make_site) -> None:
    site = make_site(PACING_SITE)
    theory = (8 + 125 + 3.5) * 10 / 4800
    assert await read_60(site, pace=False) < theory / 2


async def test_turnaround_is_configurable(make_site) -> None:
    site = make_site(PACING_SITE)
    async with Simulator(site, turnaround_ms=200):
        port = RawSerial(port_of(site), 4800)
        try:
            start = time.monotonic()
            assert len(await port.transact(rtu(5, bytes.fromhex("03 00 00 00 01")), 7, timeout=3)) == 7
            assert time.monotonic() - start >= 0.2
        finally:
            port.close()


@pytest.mark.parametrize("line_parity", ["O", "E"])
async def test_a_master_at_another_baud_rate_or_parity_hears_nothing(make_site, monkeypatch, line_parity) -> None:
    """A pty moves bytes at any speed; the simulated line answers only a master at its own baud rate, parity and
    stop bits, as a slave at other settings sees framing errors. The parity reaches the simulator through the
    tests' pty shim (tests/ptyparity: a Linux pty drops PARENB)."""
    import termios

    from tests.ptyparity import sitecustomize as shim

    monkeypatch.setattr(termios, "tcsetattr", shim.tcsetattr)
    site = make_site(RTU_SITE.replace("baudrate: {baud}}}", f"baudrate: {{baud}}, parity: {line_parity}}}}}"),
                     baud=19200, port=free_port())
    other = "N" if line_parity == "E" else "E"
    async with Simulator(site, seed=1, clock=FakeClock()):
        for baud, parity, heard in ((9600, line_parity, False), (19200, "N", False), (19200, line_parity, True),
                                    (115200, line_parity, False), (19200, other, False), (19200, "O", False),
                                    (19200, line_parity, True)):
            if parity == "O" and line_parity == "O" and not heard:
                continue
            raw = RawSerial(port_of(site), baud, parity)
            try:
                answer = await raw.transact(WIRE_REQUEST, len(WIRE_RESPONSE), timeout=0.3)
            finally:
                raw.close()
            assert answer == (WIRE_RESPONSE if heard else b""), (baud, parity)
