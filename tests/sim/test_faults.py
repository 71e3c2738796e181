"""Every fault kind does what its name says, on the wire."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from plume_sim import SimError, Simulator
from plume_sim.modbus_slave import crc16, mbap_frame, rtu_crc_ok

from gateway.acquisition.codec import decode
from gateway.config import TcpBus
from gateway.site.model import Site

from .helpers import FakeClock, RawSerial, raw_exchange, rtu

CWT_READ = rtu(3, bytes.fromhex("03 01 F4 00 0E"))  # dust-1: wind speed .. rainfall
CWT_ANSWER = 5 + 2 * 14
CEMS_READ = rtu(2, bytes.fromhex("03 00 00 00 20"))  # stack-1: the whole map, status at 24, run hours at 30
CEMS_ANSWER = 5 + 2 * 32


@pytest.fixture
async def sim(site: Site, clock: FakeClock):
    async with Simulator(site, seed=1, clock=clock) as s:
        yield s


@pytest.fixture
def raw(sim: Simulator, site: Site):
    port = RawSerial(str(site.bus("rs485-1").port))  # type: ignore[union-attr]
    yield port
    port.close()


def words(answer: bytes) -> list[int]:
    assert rtu_crc_ok(answer), answer.hex(" ")
    data = answer[3:-2]
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def cems(sim: Simulator, answer: bytes) -> dict[str, object]:
    w = words(answer)
    return {r.channel: decode(r, w[r.address : r.address + r.words]).value
            for r in sim.device("stack-1").resolved.profile.registers}


async def test_dead_device_never_answers_but_its_neighbours_do(sim: Simulator, raw: RawSerial) -> None:
    sim.set_fault("dust-1", "dead")
    assert await raw.transact(CWT_READ, 1, timeout=0.25) == b""
    assert len(await raw.transact(CEMS_READ, CEMS_ANSWER)) == CEMS_ANSWER
    sim.set_fault("dust-1", None)
    assert len(await raw.transact(CWT_READ, CWT_ANSWER)) == CWT_ANSWER


def drops(site: Site, seed: int, p: str, n: int = 1000) -> list[bool]:
    sim = Simulator(site, seed=seed, faults=[f"dust-1:timeout:{p}"])
    dev = sim.device("dust-1")
    return [not dev.verdict(0.0).answer for _ in range(n)]


def test_timeout_drops_the_given_fraction_deterministically(site: Site) -> None:
    a = drops(site, 1, "0.3")
    assert 240 <= sum(a) <= 360
    assert a == drops(site, 1, "0.3")
    assert a != drops(site, 2, "0.3")


async def test_timeout_1_drops_everything(sim: Simulator, raw: RawSerial) -> None:
    sim.set_fault("dust-1", "timeout:1")
    assert await raw.transact(CWT_READ, 1, timeout=0.25) == b""


async def test_exception_fault_answers_reads_with_the_code(sim: Simulator, raw: RawSerial) -> None:
    sim.set_fault("dust-1", "exception:4")
    assert await raw.transact(CWT_READ, 5) == rtu(3, bytes([0x83, 4]))
    sim.set_fault("dust-1", "exception:6")
    assert await raw.transact(CWT_READ, 5) == rtu(3, bytes([0x83, 6]))


async def test_crc_fault_answers_with_a_bad_crc(sim: Simulator, raw: RawSerial) -> None:
    good = await raw.transact(CWT_READ, CWT_ANSWER)
    sim.set_fault("dust-1", "crc")
    bad = await raw.transact(CWT_READ, CWT_ANSWER)
    assert len(bad) == CWT_ANSWER and bad[:3] == good[:3]
    assert not rtu_crc_ok(bad)
    assert int.from_bytes(bad[-2:], "little") == crc16(bad[:-2]) ^ 0xFFFF


async def test_crc_fault_on_tcp_answers_another_transaction(sim: Simulator, site: Site) -> None:
    bus = site.bus("lan")
    assert isinstance(bus, TcpBus)
    sim.set_fault("so2-1", "crc")
    answer = await raw_exchange(bus.port, mbap_frame(0x0102, 2, bytes.fromhex("04 00 0A 00 01")))
    assert answer[2:] == mbap_frame(0, 2, bytes.fromhex("04 02 00 00"))[2:]
    assert int.from_bytes(answer[:2], "big") != 0x0102


async def test_garbage_fault_answers_random_bytes(sim: Simulator, raw: RawSerial) -> None:
    sim.set_fault("dust-1", "garbage")
    noise = await raw.transact(CWT_READ, 64, timeout=0.3)
    assert 4 <= len(noise) <= 24
    assert not (len(noise) == CWT_ANSWER and rtu_crc_ok(noise))


async def test_stuck_values_do_not_move(sim: Simulator, raw: RawSerial, clock: FakeClock) -> None:
    sim.set_fault("stack-1", "stuck")
    before = words(await raw.transact(CEMS_READ, CEMS_ANSWER))
    clock.advance(3 * 3600)
    assert words(await raw.transact(CEMS_READ, CEMS_ANSWER)) == before
    sim.set_fault("stack-1", None)
    assert words(await raw.transact(CEMS_READ, CEMS_ANSWER)) != before


async def test_reboot_is_silent_then_back_with_run_hours_reset(sim: Simulator, raw: RawSerial,
                                                               clock: FakeClock) -> None:
    assert cems(sim, await raw.transact(CEMS_READ, CEMS_ANSWER))["run_hours"] > 1000  # type: ignore[operator]
    sim.set_fault("stack-1", "reboot:30")
    assert await raw.transact(CEMS_READ, 1, timeout=0.25) == b""
    clock.advance(30)
    assert cems(sim, await raw.transact(CEMS_READ, CEMS_ANSWER))["run_hours"] == 0
    assert sim.faults == {}
    clock.advance(2 * 3600)
    assert cems(sim, await raw.transact(CEMS_READ, CEMS_ANSWER))["run_hours"] == 2


async def test_reboot_ends_by_itself_in_real_time(site: Site) -> None:
    back = asyncio.Event()

    def on_event(text: str) -> None:
        if text == "stack-1: back after reboot (run hours reset)":
            back.set()

    async with Simulator(site, faults=["stack-1:reboot:0.05"], on_event=on_event) as sim:
        await asyncio.wait_for(back.wait(), 2)
        assert sim.faults == {} and sim.device("stack-1").run_origin is not None


async def test_nan_fault_serves_nan_in_float_registers_only(sim: Simulator, raw: RawSerial) -> None:
    sim.set_fault("stack-1", "nan")
    values = cems(sim, await raw.transact(CEMS_READ, CEMS_ANSWER))
    assert values["so2"] is None and values["o2"] is None
    assert isinstance(values["run_hours"], float) and math.isfinite(values["run_hours"])


async def test_status_fault_sets_the_bit_the_profile_maps_to_the_flag(sim: Simulator, raw: RawSerial) -> None:
    assert words(await raw.transact(CEMS_READ, CEMS_ANSWER))[24] == 0
    sim.set_fault("stack-1", "status:C")
    assert words(await raw.transact(CEMS_READ, CEMS_ANSWER))[24] == 0b10
    sim.set_fault("stack-1", "status:M")
    assert words(await raw.transact(CEMS_READ, CEMS_ANSWER))[24] == 0b1100


async def test_status_fault_uses_codes_when_the_profile_has_codes(sim: Simulator, site: Site) -> None:
    bus = site.bus("lan")
    assert isinstance(bus, TcpBus)
    sim.set_fault("so2-1", "status:c")
    answer = await raw_exchange(bus.port, mbap_frame(1, 2, bytes.fromhex("04 00 0A 00 01")))
    assert answer == mbap_frame(1, 2, bytes.fromhex("04 02 00 02"))


async def test_overrange_serves_1_2_times_max(sim: Simulator, raw: RawSerial) -> None:
    sim.set_fault("dust-1", "overrange")
    w = words(await raw.transact(CWT_READ, CWT_ANSWER))
    assert w[0] == 7200  # wind speed 72.00 m/s, max 60
    assert w[8] == 1200  # PM10 1200 ug/m3, max 1000


async def test_slow_fault_answers_late(sim: Simulator, raw: RawSerial) -> None:
    sim.set_fault("dust-1", "slow:300")
    start = time.monotonic()
    assert len(await raw.transact(CWT_READ, CWT_ANSWER, timeout=2)) == CWT_ANSWER
    assert time.monotonic() - start >= 0.3


@pytest.mark.parametrize(("fault", "message"), [
    ("dust-1:melted", "unknown fault 'melted'"),
    ("dust-1:timeout", "timeout needs an argument"),
    ("dust-1:timeout:2", "timeout: 2 outside 0..1"),
    ("dust-1:status:C", "maps no status bit or code to C"),
    ("dust-1:dead:5", "dead takes no argument"),
    ("nobody:dead", "no device 'nobody'"),
    ("dust-1", "expected DEVICE:KIND[:ARG]"),
])
def test_bad_faults_are_one_line_errors(site: Site, fault: str, message: str) -> None:
    with pytest.raises(SimError) as exc:
        Simulator(site, faults=[fault])
    assert len(exc.value.problems) == 1 and message in exc.value.problems[0]


async def test_hostile_answer_kinds_on_the_wire(sim: Simulator, raw: RawSerial) -> None:
    coil_read = rtu(3, bytes.fromhex("03 01 F4 00 01"))
    sim.set_fault("dust-1", "bytecount:0")
    assert await raw.transact(coil_read, 5) == rtu(3, bytes([3, 0]))
    sim.set_fault("dust-1", "wrong_unit")
    assert (await raw.transact(coil_read, 7))[0] == 4
    sim.set_fault("dust-1", "wrong_fc")
    assert (await raw.transact(coil_read, 7))[1] == 4
    sim.set_fault("dust-1", "empty")
    assert await raw.transact(coil_read, 5, timeout=0.3) == rtu(3, b"")
    sim.set_fault("dust-1", "oversized")
    assert (await raw.transact(coil_read, 15))[2] == 10
    sim.set_fault("dust-1", "strict")
    mapped = rtu(3, bytes.fromhex("03 01 F4 00 0A"))  # wind speed .. pressure, all mapped
    assert len(await raw.transact(mapped, 5 + 20)) == 25
    assert await raw.transact(CWT_READ, 5) == rtu(3, bytes([0x83, 2]))  # spans the gap 0x01FE..0x0200
