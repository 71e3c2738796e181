"""The control port: faults set and cleared at run time, as JSON lines on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest
from plume_sim import SimError, Simulator

from gateway.site.model import Site


@pytest.fixture
async def sim(site: Site):
    async with Simulator(site, control="127.0.0.1:0") as s:
        yield s


@pytest.fixture
async def control(sim: Simulator):
    assert sim.control_port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.control_port)

    async def ask(msg: object) -> dict:
        writer.write((msg if isinstance(msg, str) else json.dumps(msg)).encode() + b"\n")
        await writer.drain()
        return json.loads(await asyncio.wait_for(reader.readline(), 2))

    yield ask
    writer.close()


async def test_set_and_clear_a_fault(sim: Simulator, control) -> None:
    assert await control({"device": "dust-1", "fault": "timeout:0.5"}) == {"ok": True}
    assert sim.faults == {"dust-1": "timeout:0.5"}
    assert await control({"get": "faults"}) == {"ok": True, "faults": {"dust-1": "timeout:0.5"}}
    assert await control({"device": "dust-1", "fault": None}) == {"ok": True}
    assert sim.faults == {}


@pytest.mark.parametrize(("msg", "error"), [
    ({"device": "nobody", "fault": "dead"}, "no device 'nobody'"),
    ({"device": "dust-1", "fault": "melted"}, "unknown fault 'melted'"),
    ({"device": "dust-1", "fault": 3}, "fault must be a string"),
    ({"device": "dust-1"}, "expected {"),
    ("not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
])
async def test_bad_requests_get_an_error_line_and_the_connection_stays(sim: Simulator, control, msg: object,
                                                                       error: str) -> None:
    reply = await control(msg)
    assert reply["ok"] is False and error in reply["error"]
    assert await control({"device": "dust-1", "fault": "dead"}) == {"ok": True}


async def test_written_can_be_queried(sim: Simulator, control) -> None:
    assert await control({"get": "written", "device": "dust-2"}) == {"ok": True, "written": []}


@pytest.mark.parametrize("address", ["0.0.0.0:9999", "192.168.1.5:9999", "example.com:1", "127.0.0.1"])
def test_control_must_be_loopback(site: Site, address: str) -> None:
    with pytest.raises(SimError, match="control address"):
        Simulator(site, control=address)
