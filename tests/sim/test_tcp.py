"""Modbus TCP (several unit ids on one server) and RTU over TCP, through pymodbus clients and raw sockets."""

from __future__ import annotations

import asyncio

import pytest
from plume_sim import SimError, Simulator
from plume_sim.modbus_slave import mbap_frame
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient

from gateway.acquisition.codec import decode
from gateway.config import TcpBus
from gateway.site.model import Site

from .helpers import FakeClock, free_port, raw_exchange, rtu


@pytest.fixture
async def sim(site: Site, clock: FakeClock):
    async with Simulator(site, clock=clock) as s:
        yield s


@pytest.fixture
async def client(sim: Simulator, site: Site):
    bus = site.bus("lan")
    assert isinstance(bus, TcpBus)
    c = AsyncModbusTcpClient(bus.host, port=bus.port, timeout=1, retries=0)
    assert await c.connect()
    yield c
    c.close()


async def test_each_unit_id_is_its_own_device(sim: Simulator, client: AsyncModbusTcpClient) -> None:
    dust = await client.read_input_registers(0, count=9, device_id=1)
    so2 = await client.read_input_registers(0, count=4, device_id=2)
    assert not dust.isError() and not so2.isError()
    spec = sim.device("so2-1").resolved.profile.channel("so2_ppb")
    ppb = decode(spec, so2.registers[0:2]).value
    assert isinstance(ppb, float) and 5000 < ppb < 60000
    tsp, pm10, pm25 = dust.registers[0:3]
    assert tsp > pm10 > pm25


async def test_holding_read_of_input_registers_is_exception_2(client: AsyncModbusTcpClient) -> None:
    rr = await client.read_holding_registers(0, count=3, device_id=1)
    assert rr.isError() and rr.exception_code == 2


async def test_status_register_reads_normal(client: AsyncModbusTcpClient) -> None:
    rr = await client.read_input_registers(10, count=1, device_id=2)
    assert not rr.isError() and rr.registers == [0]


async def test_coil_write_overrides_and_is_recorded(sim: Simulator, client: AsyncModbusTcpClient) -> None:
    assert not (await client.write_coil(0, True, device_id=1)).isError()
    assert (await client.read_coils(0, count=1, device_id=1)).bits[0] is True
    assert not (await client.write_coils(0, [False], device_id=1)).isError()
    assert (await client.read_coils(0, count=1, device_id=1)).bits[0] is False
    writes = sim.written("dust-2")
    assert [(w["function"], w["values"], w["channels"]) for w in writes] == [
        (5, [1], {"heater_on": 1.0}), (15, [0], {"heater_on": 0.0})]


async def test_write_outside_the_map_is_exception_2(client: AsyncModbusTcpClient) -> None:
    rr = await client.write_coil(7, True, device_id=1)
    assert rr.isError() and rr.exception_code == 2


async def test_unknown_unit_id_gets_no_answer(sim: Simulator, site: Site) -> None:
    bus = site.bus("lan")
    assert isinstance(bus, TcpBus)
    assert await raw_exchange(bus.port, mbap_frame(7, 9, bytes.fromhex("04 00 00 00 01")), 0.25) == b""
    answer = await raw_exchange(bus.port, mbap_frame(7, 2, bytes.fromhex("04 00 0A 00 01")))
    assert answer == mbap_frame(7, 2, bytes.fromhex("04 02 00 00"))


RTU_OVER_TCP = """
site: {{id: s}}
buses: [{{name: tunnel, type: rtu_over_tcp, host: 127.0.0.1, port: {port}, baudrate: 19200}}]
devices:
  - name: wind-1
    bus: tunnel
    address: 1
    kind: dust
    registers:
      - {{channel: wind_speed, address: 0x01F4, scale: 0.01, unit: m/s, sim: {{constant: 1.25}}}}
"""


async def test_rtu_over_tcp_speaks_rtu_frames(make_site) -> None:
    port = free_port()
    site = make_site(RTU_OVER_TCP, port=port)
    async with Simulator(site) as sim:
        assert sim.describe()[0].startswith(f"rtu_over_tcp tunnel: 127.0.0.1:{port} (19200 baud, paced)")
        answer = await raw_exchange(port, bytes.fromhex("01 03 01 F4 00 01 C4 04"))
        assert answer == bytes.fromhex("01 03 02 00 7D 78 65")
        assert await raw_exchange(port, rtu(4, bytes.fromhex("03 01 F4 00 01")), 0.25) == b""
        client = AsyncModbusTcpClient("127.0.0.1", port=port, framer=FramerType.RTU, timeout=1, retries=0)
        assert await client.connect()
        try:
            rr = await client.read_holding_registers(0x01F4, count=1, device_id=1)
            assert rr.registers == [125]
        finally:
            client.close()


async def test_busy_port_is_a_one_line_error(make_site) -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        sim = Simulator(make_site(RTU_OVER_TCP, port=port))
        with pytest.raises(SimError) as exc:
            await sim.start()
        assert exc.value.problems == [f"rtu_over_tcp tunnel: cannot serve on 127.0.0.1:{port}: Address already in use"]
    finally:
        blocker.close()
        await blocker.wait_closed()
