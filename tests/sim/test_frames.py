"""PMS5003 and SDS011 sensors: checksum-correct frames on a pty, built from the profiles, faults applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plume_sim import Simulator
from plume_sim.frames import FrameError, build_pms5003, build_sds011, find_frames, parse_pms5003, parse_sds011

from gateway.acquisition.codec import decode
from gateway.acquisition.frames import FrameParser
from gateway.profile import load_profile
from gateway.site.model import Site

from .helpers import FakeClock, RawSerial

FRAME_SITE = """
site: {{id: s, timezone: Asia/Shanghai}}
buses:
  - {{name: uart-1, type: serial, port: "{tmp}/ttyPMS", baudrate: 9600}}
  - {{name: uart-2, type: serial, port: "{tmp}/ttySDS", baudrate: 9600}}
devices:
  - {{name: pm-1, bus: uart-1, profile: pms5003}}
  - {{name: pm-2, bus: uart-2, profile: sds011}}
"""


def test_sds011_builder_matches_a_published_frame() -> None:
    frame = bytes.fromhex("AA C0 D4 04 3A 0A A1 60 1D AB")
    words = parse_sds011(frame)
    assert build_sds011(words) == frame
    profile = load_profile("sds011")
    assert [decode(r, words[r.address : r.address + 1]).value for r in profile.registers] == [123.6, 261.8]


def test_pms5003_checksum_is_the_sum_of_all_preceding_bytes() -> None:
    frame = build_pms5003(list(range(1, 14)))
    assert len(frame) == 32 and frame[:4] == bytes.fromhex("42 4D 00 1C")
    assert int.from_bytes(frame[30:], "big") == sum(frame[:30])
    assert parse_pms5003(frame) == list(range(1, 14))
    with pytest.raises(FrameError, match="checksum"):
        parse_pms5003(build_pms5003(list(range(1, 14)), bad_checksum=True))
    with pytest.raises(FrameError, match="checksum"):
        parse_sds011(build_sds011([1, 2, 3], bad_checksum=True))


@pytest.fixture
def frame_site(make_site) -> Site:
    return make_site(FRAME_SITE)


@pytest.fixture
async def sim(frame_site: Site, clock: FakeClock, tmp_path: Path):
    async with Simulator(frame_site, clock=clock, frame_period_s=0.05, truth_path=tmp_path / "truth.jsonl") as s:
        yield s


async def stream(tmp_path: Path, name: str, nbytes: int, timeout: float = 2.0) -> bytes:
    port = RawSerial(str(tmp_path / name))
    try:
        return await port.read(nbytes, timeout)
    finally:
        port.close()


async def test_pms5003_frames_are_valid_and_carry_the_truth(sim: Simulator, tmp_path: Path) -> None:
    data = await stream(tmp_path, "ttyPMS", 4 * 32)
    frames, bad = find_frames("pms5003", data)
    assert frames and bad == 0
    parser = FrameParser("pms5003")
    assert parser.feed(data) == frames and parser.bad_frames == 0
    profile = sim.device("pm-1").resolved.profile
    decoded = {r.channel: decode(r, frames[-1][r.address : r.address + 1]).value for r in profile.registers}
    assert decoded["pm10"] >= decoded["pm25"] >= decoded["pm1"]  # type: ignore[operator]
    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert {t["channel"]: t["value"] for t in truth if t["device"] == "pm-1"} == decoded


async def test_sds011_frames_are_valid(sim: Simulator, tmp_path: Path) -> None:
    data = await stream(tmp_path, "ttySDS", 3 * 10)
    frames, bad = find_frames("sds011", data)
    assert len(frames) >= 2 and bad == 0
    assert FrameParser("sds011").feed(data) == frames
    pm25 = load_profile("sds011").registers[0]
    assert 0 < decode(pm25, frames[0][0:1]).value < 999.9  # type: ignore[operator]


async def test_crc_fault_sends_bad_checksums(sim: Simulator, tmp_path: Path) -> None:
    sim.set_fault("pm-1", "crc")
    frames, bad = find_frames("pms5003", await stream(tmp_path, "ttyPMS", 3 * 32))
    assert frames == [] and bad >= 2


async def test_dead_sensor_sends_nothing(sim: Simulator, tmp_path: Path) -> None:
    sim.set_fault("pm-2", "dead")
    assert await stream(tmp_path, "ttySDS", 1, timeout=0.3) == b""


async def test_garbage_fault_sends_no_valid_frame(sim: Simulator, tmp_path: Path) -> None:
    sim.set_fault("pm-1", "garbage")
    data = await stream(tmp_path, "ttyPMS", 3 * 32)
    assert len(data) == 96 and find_frames("pms5003", data)[0] == []


async def test_overrange_and_stuck_apply_to_frames(sim: Simulator, tmp_path: Path, clock: FakeClock) -> None:
    sim.set_fault("pm-2", "overrange")
    frames, _ = find_frames("sds011", await stream(tmp_path, "ttySDS", 20))
    pm25 = load_profile("sds011").registers[0]
    assert decode(pm25, frames[-1][0:1]).value == pytest.approx(1.2 * 999.9, abs=0.1)
    sim.set_fault("pm-2", "stuck")
    before = find_frames("sds011", await stream(tmp_path, "ttySDS", 20))[0][-1]
    clock.advance(7200)
    assert find_frames("sds011", await stream(tmp_path, "ttySDS", 20))[0][-1] == before


def test_modbus_faults_are_refused_for_frame_sensors(frame_site: Site) -> None:
    sim = Simulator(frame_site)
    with pytest.raises(ValueError, match="does not apply to a pms5003 frame sensor"):
        sim.set_fault("pm-1", "exception:2")
