"""Frame sensors (PMS5003, SDS011) on a real pty: a frame that failed its checksum is never covered by re-reporting
the previous good one as N, and bad frames and resyncs are counted per device for health."""

from __future__ import annotations

import asyncio
import time

import pytest
from plume_sim import Simulator

from gateway.acquisition.frames import FrameParser
from gateway.acquisition.poller import Acquisition
from gateway.core.model import DeviceReading, Flag


@pytest.mark.parametrize("profile", ["pms5003", "sds011"])
async def test_after_a_bad_checksum_the_previous_frame_is_not_reported_again_as_n(make_site, profile):
    bus = {"name": "uart", "type": "serial", "port": "{tmp}/ttyPM"}
    site = make_site([bus], [{"name": "pm", "bus": "uart", "profile": profile, "poll_interval_s": 0.3}])
    readings: list[DeviceReading] = []
    async with Simulator(site, pace=False, frame_period_s=0.1) as sim:
        acq = Acquisition(site, readings.append)
        task = asyncio.create_task(acq.run())
        deadline = time.monotonic() + 10
        while not any(r.ok for r in readings):
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.02)
        sim.set_fault("pm", "crc")  # every frame from now on fails its checksum
        await asyncio.sleep(0.25)  # a few bad frames arrive: the sensor's own pace, not a synchronisation
        n = len(readings)
        while len(readings) < n + 3:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    after = readings[n:]
    assert all(not r.ok and {cv.flag for cv in r.values.values()} == {Flag.B} for r in after), after
    assert "checksum" in after[-1].error
    h = acq.health()["pm"]
    assert h.bad_frames >= 2


def test_resyncs_are_counted_when_bytes_are_thrown_away_to_find_a_frame():
    p = FrameParser("pms5003")
    good = b"\x42\x4d" + (28).to_bytes(2, "big") + bytes(26)
    good += (sum(good) & 0xFFFF).to_bytes(2, "big")
    p.feed(good + b"noise" + good)
    assert p.good_frames == 2 and p.resyncs == 1
    assert not p.last_was_bad
    bad = bytearray(good)
    bad[10] ^= 1
    p.feed(bytes(bad))
    assert p.last_was_bad and p.bad_frames == 1
