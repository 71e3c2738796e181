"""A light fleet of simulated gateways speaking MQTT contract v1 (tests/bench/bench_fleet_nats.py's load).

Why not paho or aiomqtt: a thousand sites on a 2-core machine leave no room for a client thread (paho) or a
paho client object per site behind asyncio (aiomqtt); the part of MQTT 3.1.1 a gateway's data path uses is small:
CONNECT (clean session, username = client id = site id, last will), PUBLISH QoS 1, PUBACK, PINGREQ. Each site is
its own TCP connection with its own credentials, as a real gateway is. Like a real gateway it keeps what the
broker has not acknowledged and, after losing its broker, connects to the next one and re-sends it first, in
order, with the DUP flag. Payloads come from the gateway's own encoder (gateway.sinks.contract.data_payload), with
`seq` counting each device's readings from 1, so loss, duplicates and order are checkable downstream.

What "committed" means here: a reading the site got a PUBACK for (`acked`); a real gateway's durable log plays
that part for `plume run`.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections import deque
from dataclasses import dataclass, field

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.sinks.contract import data_payload, data_topic
from gateway.store.records import ReadingRecord

CHANNELS = (("tsp", "ug/m3"), ("pm10", "ug/m3"), ("pm25", "ug/m3"), ("noise", "dB(A)"))


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str, user: str, password: str, will_topic: str, keepalive: int) -> bytes:
    flags = 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02  # user, password, will retain, will QoS 1, will, clean
    body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body += _str(client_id) + _str(will_topic) + _str(b"offline") + _str(user) + _str(password)
    return bytes([0x10]) + _remaining(len(body)) + body


def publish_packet(topic: str, payload: bytes, pid: int, dup: bool, retain: bool = False) -> bytes:
    body = _str(topic) + struct.pack("!H", pid) + payload
    return bytes([0x32 | (0x08 if dup else 0) | (0x01 if retain else 0)]) + _remaining(len(body)) + body


@dataclass
class Pending:
    pid: int
    device: int
    seq: int
    packet: bytes  # without the DUP bit
    sent_ms: int


@dataclass
class SiteSim:
    """One simulated gateway: `devices` devices polled every `interval_s`, one connection."""

    site: str
    password: str
    servers: list[tuple[str, int]]
    devices: int
    interval_s: float
    start_offset: int  # which server to try first (spreads the fleet over the cluster)
    inflight_max: int = 100
    acked: list[int] = field(default_factory=list)  # per device: readings acknowledged, 1..acked[d] in order
    produced: list[int] = field(default_factory=list)
    out_of_order_acks: int = 0
    resent: int = 0
    connects: int = 0
    refused: int = 0
    stopped: bool = False

    def __post_init__(self) -> None:
        self.acked = [0] * self.devices
        self.produced = [0] * self.devices
        self.queue: deque[Pending] = deque()  # produced, not yet acknowledged, in order
        self.unsent = 0  # the last `unsent` of the queue have not been written on the current connection
        self.next_pid = 1
        self.wake = asyncio.Event()
        self.rng = random.Random(self.site)

    def produce(self, ts: int) -> None:
        for d in range(self.devices):
            self.produced[d] += 1
            seq = self.produced[d]
            device = f"dust-{d + 1:02d}"
            values = {ch: ChannelValue(round(self.rng.uniform(10, 300), 1), unit, Flag.N) for ch, unit in CHANNELS}
            reading = DeviceReading(self.site, device, "dust", ts + d, values)
            rec = ReadingRecord(id=0, ts=ts + d, site=self.site, seq=seq, reading=reading)
            pid = self.next_pid
            self.next_pid = self.next_pid % 65535 + 1
            self.queue.append(Pending(pid, d, seq, publish_packet(data_topic("plume", self.site, device),
                                                                  data_payload(rec), pid, False), ts + d))
            self.unsent += 1
        self.wake.set()

    def on_puback(self, pid: int) -> None:
        if not self.queue:
            return
        head = self.queue[0]
        if head.pid != pid:  # a broker acknowledges one connection's QoS 1 messages in order
            self.out_of_order_acks += 1
            for i, p in enumerate(self.queue):
                if p.pid == pid:
                    del self.queue[i]
                    self._acked(p)
                    return
            return
        self.queue.popleft()
        self._acked(head)

    def _acked(self, p: Pending) -> None:
        if p.seq == self.acked[p.device] + 1:
            self.acked[p.device] = p.seq
        else:
            self.out_of_order_acks += 1
        self.wake.set()

    async def session(self, host: str, port: int) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        try:
            writer.write(connect_packet(self.site, self.site, self.password, f"plume/{self.site}/status", 30))
            head = await asyncio.wait_for(reader.readexactly(4), 10)
            if head[0] != 0x20 or head[3] != 0:
                self.refused += 1
                raise ConnectionError(f"{self.site}: CONNACK {head.hex()}")
            self.connects += 1
            # Everything not acknowledged goes again, in order; what was written before is marked DUP.
            written_before = len(self.queue) - self.unsent
            for i, p in enumerate(self.queue):
                if i < written_before:
                    self.resent += 1
                    writer.write(bytes([p.packet[0] | 0x08]) + p.packet[1:])
                else:
                    writer.write(p.packet)
            self.unsent = 0
            reading = asyncio.create_task(self._read(reader))
            last_out = time.monotonic()
            try:
                while not reading.done():
                    self.wake.clear()
                    if self.unsent:
                        inflight = len(self.queue) - self.unsent
                        room = max(0, self.inflight_max - inflight)
                        start = len(self.queue) - self.unsent
                        for p in list(self.queue)[start:start + room]:
                            writer.write(p.packet)
                            self.unsent -= 1
                        last_out = time.monotonic()
                    await writer.drain()
                    if self.stopped and not self.queue:
                        writer.write(b"\xe0\x00")  # DISCONNECT: no last will
                        await writer.drain()
                        return
                    if time.monotonic() - last_out > 20:
                        writer.write(b"\xc0\x00")  # PINGREQ
                        last_out = time.monotonic()
                    with_timeout = asyncio.wait({reading, asyncio.create_task(self.wake.wait())}, timeout=5,
                                                return_when=asyncio.FIRST_COMPLETED)
                    _, pending = await with_timeout
                    for t in pending:
                        if t is not reading:
                            t.cancel()
                reading.result()
            finally:
                reading.cancel()
        finally:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            first = await reader.readexactly(1)
            n, mult = 0, 1
            while True:
                b = (await reader.readexactly(1))[0]
                n += (b & 0x7F) * mult
                mult *= 128
                if not b & 0x80:
                    break
            body = await reader.readexactly(n) if n else b""
            if first[0] >> 4 == 4:  # PUBACK
                self.on_puback(struct.unpack("!H", body[:2])[0])

    async def run(self) -> None:
        i = self.start_offset
        delay = 0.2
        while not (self.stopped and not self.queue):
            host, port = self.servers[i % len(self.servers)]
            try:
                await self.session(host, port)
                delay = 0.2
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                # written-but-unacknowledged messages stay at the queue's front and go again, DUP, on the next
                i += 1  # the next broker
                await asyncio.sleep(delay * (0.5 + self.rng.random()))
                delay = min(delay * 2, 3.0)


class Fleet:
    """`sites` SiteSims producing every `interval_s` (staggered over the interval) until stop()."""

    def __init__(self, sites: list[SiteSim], interval_s: float):
        self.sites = sites
        self.interval_s = interval_s
        self.running = True

    async def produce(self, duration_s: float) -> None:
        start = time.monotonic()
        n = len(self.sites)
        tick = 0
        while time.monotonic() - start < duration_s:
            base = start + tick * self.interval_s
            for k, s in enumerate(self.sites):
                due = base + self.interval_s * k / n
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                s.produce(time.time_ns() // 1_000_000)
            tick += 1
        for s in self.sites:
            s.stopped = True
            s.wake.set()

    @property
    def produced(self) -> int:
        return sum(sum(s.produced) for s in self.sites)

    @property
    def acked(self) -> int:
        return sum(sum(s.acked) for s in self.sites)

    @property
    def unacked(self) -> int:
        return sum(len(s.queue) for s in self.sites)
