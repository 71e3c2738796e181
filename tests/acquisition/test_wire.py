"""The gateway's bytes on a real pty, with the test as the slave: the CWT wire vector, byte for byte."""

from __future__ import annotations

import asyncio
import os
import tty

import pytest

from gateway.acquisition.link import ModbusLink, ReadError
from gateway.config import RtuBus
from gateway.profile import load_profile


@pytest.fixture
def pty_line(tmp_path):
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "ttyGW"
    link.symlink_to(os.ttyname(slave))
    yield master, str(link)
    os.close(master)
    os.close(slave)


async def read_exact(fd: int, n: int, timeout: float = 2.0) -> bytes:
    loop = asyncio.get_running_loop()
    buf = b""
    deadline = loop.time() + timeout
    while len(buf) < n and loop.time() < deadline:
        try:
            buf += os.read(fd, n - len(buf))
        except BlockingIOError:
            await asyncio.sleep(0.002)
    return buf


async def test_cwt_wind_speed_request_and_response_match_the_public_vector(pty_line):
    master, port = pty_line
    os.set_blocking(master, False)
    link = ModbusLink(RtuBus(name="b", type="rtu", port=port, baudrate=4800))
    wind = load_profile("cwt-dust-weather").channel("wind_speed")

    async def slave() -> bytes:
        req = await read_exact(master, 8)
        os.write(master, bytes.fromhex("01 03 02 00 7D 78 65"))
        return req

    task = asyncio.create_task(slave())
    words = await link.read(3, wind.address, 1, 1, timeout_s=1.0)
    link.close()
    assert await task == bytes.fromhex("01 03 01 F4 00 01 C4 04")
    from gateway.acquisition.codec import decode

    assert decode(wind, words).value == 1.25


async def test_bad_crc_is_reported_as_garbled_not_as_silence(pty_line):
    master, port = pty_line
    os.set_blocking(master, False)
    link = ModbusLink(RtuBus(name="b", type="rtu", port=port, baudrate=9600))

    async def slave() -> None:
        await read_exact(master, 8)
        os.write(master, bytes.fromhex("01 03 02 00 7D 78 66"))  # last CRC byte wrong

    task = asyncio.create_task(slave())
    with pytest.raises(ReadError) as exc:
        await link.read(3, 0x01F4, 1, 1, timeout_s=0.3)
    await task
    link.close()
    assert exc.value.kind == "garbled"


async def test_exception_response_becomes_a_read_error_with_its_code(pty_line):
    master, port = pty_line
    os.set_blocking(master, False)
    link = ModbusLink(RtuBus(name="b", type="rtu", port=port, baudrate=9600))

    async def slave() -> None:
        await read_exact(master, 8)
        body = bytes([0x01, 0x83, 0x02])
        crc = 0xFFFF
        for b in body:
            crc ^= b
            for _ in range(8):
                crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        os.write(master, body + crc.to_bytes(2, "little"))

    task = asyncio.create_task(slave())
    with pytest.raises(ReadError) as exc:
        await link.read(3, 0x0300, 1, 1, timeout_s=0.5)
    await task
    link.close()
    assert (exc.value.kind, exc.value.code) == ("exception", 2)
    assert "illegal data address" in str(exc.value)


async def test_missing_port_is_a_link_error():
    link = ModbusLink(RtuBus(name="b", type="rtu", port="/nonexistent/ttyX"))
    with pytest.raises(ReadError) as exc:
        await link.read(3, 0, 1, 1, timeout_s=0.2)
    assert exc.value.kind == "link"
