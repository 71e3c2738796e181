"""A slow serial line: a device's response timeout is the wait for its answer, counted once the request and the
answer it asks for have had their time on the wire (as a Modbus master's response timeout is), so a short timeout
on a 1200 baud line does not turn every answer into a timeout. Real pty line, paced simulator."""

from __future__ import annotations

import pytest
from plume_sim import Simulator

from gateway.acquisition.link import ModbusLink
from gateway.acquisition.poller import Acquisition
from gateway.core.model import Flag

# 11 input registers a poll: 8 request bytes + 27 answer bytes at 1200 baud 8N1 = 292 ms on the wire alone
SLOW_BUS = {"name": "rs485", "type": "rtu", "port": "{tmp}/ttySlow", "baudrate": 1200}


async def test_a_short_timeout_on_a_1200_baud_line_still_gets_the_answer(make_site):
    site = make_site([SLOW_BUS], [{"name": "dust", "bus": "rs485", "address": 1, "profile": "dust-monitor",
                                   "timeout_s": 0.2, "retries": 0}])
    async with Simulator(site, pace=True):
        (reading,) = await Acquisition(site, lambda r: None).poll_once()
    assert reading.ok, reading.error
    assert all(cv.flag is Flag.N and cv.value is not None for cv in reading.values.values())


@pytest.mark.parametrize(("function", "count", "wire_bytes"), [(4, 11, 8 + 27), (3, 1, 8 + 7), (1, 10, 8 + 7)])
def test_the_frames_wire_time_is_waited_for_on_serial_lines_only(make_site, function, count, wire_bytes):
    rtu = make_site([SLOW_BUS], [])
    tcp = make_site([{"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": "{port}"}], [])
    assert ModbusLink(rtu.config.buses[0]).wire_s(function, count) == pytest.approx(wire_bytes * 10 / 1200)
    assert ModbusLink(tcp.config.buses[0]).wire_s(function, count) == 0
