"""Hostile answers and broken buses: every kind of bad answer at every read function code, over Modbus TCP and a real
pty RTU line, and the healthy neighbours (same bus, other bus) keep being polled with good values."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from plume_sim import Simulator

from gateway.acquisition.poller import Acquisition
from gateway.core.model import DeviceReading, Flag

TCP_BUS = {"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": "{port}"}
RTU_BUS = {"name": "rs485", "type": "rtu", "port": "{tmp}/ttyRS485", "baudrate": 38400}


def one_fc_profile(fc: int) -> dict:
    """A device that only has registers (or bits) of one read function: the hostile answer meets that fc."""
    kind = "bits" if fc in (1, 2) else "u16"
    return {"name": f"fc{fc}", "kind": "test", "registers": [
        {"channel": "a", "address": 4, "function": fc, "type": kind, "sim": {"constant": 1}},
        {"channel": "b", "address": 5, "function": fc, "type": kind, "sim": {"constant": 0 if fc < 3 else 9}},
    ]}


PROFILES = {f"fc{fc}": one_fc_profile(fc) for fc in (1, 2, 3, 4)}

HOSTILE = [
    "empty", "short", "oversized", "wrong_fc", "wrong_unit", "bytecount:0", "bytecount:7", "exception:1",
    "exception:2", "exception:3", "exception:4", "exception:6", "garbage", "dead", "drip:60",
]


def hostile_site(make_site, bus: dict):
    other = RTU_BUS if bus is TCP_BUS else TCP_BUS
    fast = {"poll_interval_s": 0.2, "timeout_s": 0.25, "retries": 0, "backoff_max_s": 0.8}
    devices = [
        *[{"name": f"bad{fc}", "bus": bus["name"], "address": 10 + fc, "profile": f"fc{fc}", **fast}
          for fc in (1, 2, 3, 4)],
        # the healthy ones get a generous timeout: a loaded test machine must not make them look faulty
        {"name": "neighbour", "bus": bus["name"], "address": 1, "profile": "dust-monitor", **fast, "timeout_s": 1.0},
        {"name": "elsewhere", "bus": other["name"], "address": 2, "profile": "dust-monitor", **fast,
         "timeout_s": 1.0},
    ]
    return make_site([bus, other], devices, profiles=PROFILES)


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("bus", [TCP_BUS, RTU_BUS], ids=["tcp", "rtu-pty"])
async def test_hostile_answers_at_every_function_code_leave_the_neighbours_polling(make_site, bus, kind):
    site = hostile_site(make_site, bus)
    readings: list[DeviceReading] = []
    faults = [f"bad{fc}:{kind}" for fc in (1, 2, 3, 4)]
    async with Simulator(site, pace=False, faults=faults):
        acq = Acquisition(site, readings.append)
        task = asyncio.create_task(acq.run())

        def count(name: str) -> int:
            return sum(r.device == name for r in readings)

        deadline = time.monotonic() + 20
        while min(count(n) for n in ("neighbour", "elsewhere", "bad1", "bad4")) < 6:
            assert not task.done(), f"acquisition stopped: {task.exception()!r}"
            assert time.monotonic() < deadline, {n: count(n) for n in ("neighbour", "elsewhere", "bad1")}
            await asyncio.sleep(0.05)
        assert not task.done(), f"acquisition stopped: {task.exception()!r}"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for r in readings:
        if r.device == "elsewhere":  # another bus never notices
            assert r.ok and all(cv.flag is Flag.N for cv in r.values.values()), (r.device, r.error)
        elif r.device == "neighbour" and kind != "drip:60":
            # same line: only a device still talking after its slot (the drip) may garble a neighbour's answer,
            # and then that answer is flagged B; a value is never wrong
            assert r.ok and all(cv.flag is Flag.N for cv in r.values.values()), (r.device, r.error)
        elif r.device == "neighbour":
            assert all((cv.value is None and cv.flag is Flag.B) or cv.flag is Flag.N for cv in r.values.values()), r
        else:  # nothing of a hostile answer is ever taken for a value
            assert all(cv.value is None and cv.flag in (Flag.B, Flag.D) for cv in r.values.values()), (
                r.device, r.values, r.error)
    good = sum(r.device == "neighbour" and r.ok for r in readings)
    assert good >= 3, ("the neighbour is starved", [r.error for r in readings if r.device == "neighbour"])
    health = acq.health()
    for fc in (1, 2, 3, 4):
        h = health[f"bad{fc}"]
        assert h.failures + h.skipped + h.exceptions > 0, h
        if kind.startswith("exception"):  # an exception is an answer: online, on schedule, no back-off
            assert h.online and h.skipped == 0 and h.exceptions > 0, h


@pytest.mark.parametrize("kind", ["bytecount:0", "short", "wrong_fc", "oversized"])
@pytest.mark.parametrize("fc", [1, 2, 3, 4])
async def test_poll_once_turns_a_hostile_answer_into_flag_b_not_a_crash(make_site, fc, kind):
    site = make_site([TCP_BUS], [{"name": "bad", "bus": "lan", "address": 3, "profile": f"fc{fc}",
                                  "timeout_s": 0.2, "retries": 0}], profiles=PROFILES)
    async with Simulator(site, pace=False, faults=[f"bad:{kind}"]):
        (reading,) = await Acquisition(site, lambda r: None).poll_once()
    assert not reading.ok
    assert {cv.flag for cv in reading.values.values()} == {Flag.B}
    assert all(cv.value is None for cv in reading.values.values())
    assert reading.error


async def test_undecodable_tcp_frames_are_one_counted_line_per_device_and_cause_not_tracebacks(make_site, caplog):
    site = make_site([TCP_BUS], [
        {"name": "bad", "bus": "lan", "address": 3, "profile": "fc3", "poll_interval_s": 0.1, "timeout_s": 0.2,
         "retries": 0, "backoff_max_s": 0.2},
        {"name": "good", "bus": "lan", "address": 1, "profile": "dust-monitor", "poll_interval_s": 0.1},
    ], profiles=PROFILES)
    readings: list[DeviceReading] = []
    async with Simulator(site, pace=False, faults=["bad:short"]):
        acq = Acquisition(site, readings.append)
        with caplog.at_level(logging.DEBUG, logger="asyncio"), caplog.at_level(logging.INFO):
            task = asyncio.create_task(acq.run())
            deadline = time.monotonic() + 15
            while acq.health()["bad"].bad_frames < 5:
                assert time.monotonic() < deadline and not task.done(), acq.health()["bad"]
                await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING]
    assert not any(r.exc_info for r in caplog.records)
    lines = [r.getMessage() for r in caplog.records if "could not decode" in r.getMessage()]
    assert len(lines) == 1 and "bad" in lines[0] and "Unable to decode" in lines[0], lines
    assert acq.health()["good"].bad_frames == 0
    assert all(r.ok for r in readings if r.device == "good")
