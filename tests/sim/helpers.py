"""Helpers shared by the simulator tests."""

from __future__ import annotations

from gateway.localservers import free_port as free_port  # the tests of this folder import it from here

# 2026-03-10 (a Tuesday) 10:00 Asia/Shanghai: working hours, so construction activity is on.
T_WORK = 1773108000.0




class FakeClock:
    """Wall time that moves only when a test says so."""

    def __init__(self, t: float = T_WORK):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


RTU_SITE = """
site: {{id: test-site, timezone: Asia/Shanghai}}
buses:
  - {{name: rs485-1, type: rtu, port: "{tmp}/dev/ttyRS485", baudrate: {baud}}}
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {port}}}
devices:
  - name: wind-1
    bus: rs485-1
    address: 1
    kind: dust
    registers:
      - {{channel: wind_speed, address: 0x01F4, scale: 0.01, unit: m/s, min: 0, max: 60, sim: {{constant: 1.25}}}}
  - {{name: dust-1, bus: rs485-1, address: 3, profile: cwt-dust-weather}}
  - {{name: stack-1, bus: rs485-1, address: 2, profile: cems-analyzer}}
  - {{name: dust-2, bus: lan, address: 1, profile: dust-monitor}}
  - {{name: so2-1, bus: lan, address: 2, profile: so2-analyzer-cdab}}
"""


class RawSerial:
    """pyserial on the gateway's end of a pty, read in a thread so the simulator's loop keeps running."""

    def __init__(self, path: str, baudrate: int = 9600, parity: str = "N"):
        import serial

        self.port = serial.Serial(path, baudrate, parity=parity, timeout=1.0)

    async def transact(self, request: bytes, expect: int, timeout: float = 1.0) -> bytes:
        """Send a request; return up to `expect` bytes of answer (fewer when the line stays quiet)."""
        import asyncio

        self.port.reset_input_buffer()
        self.port.timeout = timeout
        self.port.write(request)
        return bytes(await asyncio.to_thread(self.port.read, expect))

    async def read(self, n: int, timeout: float = 1.0) -> bytes:
        import asyncio

        self.port.timeout = timeout
        return bytes(await asyncio.to_thread(self.port.read, n))

    def close(self) -> None:
        self.port.close()


def rtu(unit: int, pdu: bytes) -> bytes:
    """An RTU frame with a correct CRC."""
    from plume_sim.modbus_slave import rtu_frame

    return rtu_frame(unit, pdu)


async def raw_exchange(port: int, request: bytes, timeout: float = 1.0) -> bytes:
    """One request on a fresh loopback connection; b"" when nothing comes back within timeout."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(260), timeout)
        except TimeoutError:
            return b""
    finally:
        writer.close()
