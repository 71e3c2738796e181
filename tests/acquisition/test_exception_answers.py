"""A Modbus exception is an answer: the device is there and says what it dislikes. It stays online and polled on
schedule, its values carry flag D with the exception named and a hint; an exception 2 to a request that reads
across unmapped registers is retried split at the gaps and the device's plan stays narrowed."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import pytest
from plume_sim import Simulator

from gateway.acquisition.poller import Acquisition
from gateway.core.model import DeviceReading, Flag

TCP_BUS = {"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": "{port}"}
FAST = {"poll_interval_s": 0.1, "timeout_s": 0.2, "retries": 1, "backoff_max_s": 2}


async def run_until(acq: Acquisition, cond, timeout: float = 10.0) -> None:
    task = asyncio.create_task(acq.run())
    deadline = time.monotonic() + timeout
    try:
        while not cond():
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "condition not reached"
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(("code", "hint"), [(2, "check the register map / profile"), (1, "function"),
                                            (4, "device")])
async def test_a_device_answering_exceptions_stays_online_with_flag_d_and_a_hint(make_site, code, hint):
    site = make_site([TCP_BUS], [{"name": "so2", "bus": "lan", "address": 2, "profile": "so2-analyzer-cdab",
                                  **FAST}])
    readings: list[DeviceReading] = []
    async with Simulator(site, pace=False, faults=[f"so2:exception:{code}"]):
        acq = Acquisition(site, readings.append)
        await run_until(acq, lambda: len(readings) >= 8)
    h = acq.health()["so2"]
    assert h.online and h.skipped == 0, h  # no back-off: every slot was really polled
    assert h.polls == len(readings)
    for r in readings:
        assert {cv.flag for cv in r.values.values()} == {Flag.D}
        note = next(iter(r.values.values())).note
        assert f"exception {code}" in note and hint in note, note


PROFILE_WITH_GAP = {
    "name": "gappy", "kind": "dust", "max_gap": 8,
    "registers": [
        {"channel": "pm25", "address": 0, "unit": "ug/m3", "sim": {"constant": 35}},
        {"channel": "pm10", "address": 1, "unit": "ug/m3", "sim": {"constant": 70}},
        {"channel": "noise", "address": 5, "scale": 0.1, "unit": "dB(A)", "sim": {"constant": 55.5}},
    ],
}


async def test_exception_2_across_a_gap_is_retried_split_and_the_plan_stays_narrowed(make_site, caplog):
    site = make_site([TCP_BUS], [{"name": "d", "bus": "lan", "address": 1, "profile": "gappy", **FAST}],
                     profiles={"gappy": PROFILE_WITH_GAP})
    readings: list[DeviceReading] = []
    async with Simulator(site, pace=False, faults=["d:strict"]) as sim:
        acq = Acquisition(site, readings.append)
        assert [(r.address, r.count) for r in acq.states["d"].decoder.plan] == [(0, 6)]
        with caplog.at_level(logging.INFO):
            await run_until(acq, lambda: len(readings) >= 5)
        served = sim.served_count
    assert all(r.ok and {cv.flag for cv in r.values.values()} == {Flag.N} for r in readings), readings[0]
    assert readings[0].values["noise"].value == 55.5
    assert [(r.address, r.count) for r in acq.states["d"].decoder.plan] == [(0, 2), (5, 1)]
    narrowed = [rec.getMessage() for rec in caplog.records if "max_gap" in rec.getMessage()]
    assert len(narrowed) == 1 and "max_gap: 0" in narrowed[0] and "d" in narrowed[0], narrowed
    # the wide read was tried once; after that only the narrow ones: 1 exception + 2 per poll
    assert served == 1 + 2 * len(readings)
    assert acq.narrowed()["d"]


async def test_plume_read_shows_the_narrowed_plan(make_site):
    site = make_site([TCP_BUS], [{"name": "d", "bus": "lan", "address": 1, "profile": "gappy", **FAST}],
                     profiles={"gappy": PROFILE_WITH_GAP})
    async with Simulator(site, pace=False, faults=["d:strict"]):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "read", str(site.path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode() + err.decode()
    assert proc.returncode == 0, text
    assert "55.5" in text
    assert "max_gap: 0" in text and "fc3@0+6" in text and "fc3@0+2" in text and "fc3@5+1" in text, text


async def test_plume_plan_probe_shows_the_plan_the_device_accepted(make_site):
    site = make_site([TCP_BUS], [{"name": "d", "bus": "lan", "address": 1, "profile": "gappy", **FAST}],
                     profiles={"gappy": PROFILE_WITH_GAP})
    async with Simulator(site, pace=False, faults=["d:strict"]):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "plan", str(site.path), "--probe",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode() + err.decode()
    assert proc.returncode == 0, text
    assert "max_gap: 0" in text and "2 requests" in text, text
    rows = [line.split() for line in out.decode().splitlines() if line.strip().startswith("3 ")]
    assert [(r[1], r[3]) for r in rows] == [("0", "2"), ("5", "1")], text
