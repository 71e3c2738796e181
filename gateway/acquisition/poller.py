"""Polling every device of a site: one worker per bus, one transaction at a time on each bus.

A device that stops answering is backed off: after one failed poll it gets no retries, after OFFLINE_AFTER it
is only probed (one request, no retries) at growing intervals up to backoff_max_s, and its scheduled polls in
between emit flag-B readings without touching the line — so a dead slave cannot starve its neighbours on a shared
RS-485 bus, and the data still says why it is missing.
Polls are aligned to the wall clock (a 10 s device is read at :00, :10, ...).
Writes (actuators: FC 5 coil, FC 6 register) are queued to the device's bus worker and done between polls, in
order, under the same one-transaction-at-a-time discipline; `Acquisition.write` returns the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.acquisition.device import DeviceDecoder
from gateway.acquisition.frames import FrameParser
from gateway.acquisition.link import ModbusLink, ReadError
from gateway.acquisition.planner import Request, split_request
from gateway.acquisition.supervisor import BusSupervisor, place_and_cause
from gateway.config import RtuBus, RtuOverTcpBus, SerialFrameBus, TcpBus
from gateway.core.clock import now_ms, speedup
from gateway.core.model import DeviceReading
from gateway.site.model import ResolvedDevice, Site

log = logging.getLogger(__name__)

OFFLINE_AFTER = 2  # failed polls in a row before a device is considered offline and backed off
LINK_RETRY_MAX_S = 30.0

Emit = Callable[[DeviceReading], None]



@dataclass(slots=True)
class DeviceHealth:
    """What a site manager wants to know about one device (also exported as health metrics)."""

    device: str
    bus: str
    polls: int = 0
    ok: int = 0
    failures: int = 0
    skipped: int = 0  # scheduled polls answered with flag B while the device was backed off
    consecutive_failures: int = 0
    online: bool = True
    last_latency_ms: float | None = None
    last_error: str = ""
    last_ok_ms: int | None = None
    overruns: int = 0  # polls that ended after their next slot was over (slots were skipped)
    missed_slots: int = 0  # scheduled slots skipped because the poll before them overran them
    exceptions: int = 0  # polls the device answered only with Modbus exceptions (it stays online)
    bad_frames: int = 0  # answers (or sensor frames) that arrived but were not valid: CRC, framing, checksum
    resyncs: int = 0  # frame sensors: times the parser threw bytes away to find the next frame header
    bus_restarts: int = 0  # restarts of this device's bus after an unexpected error in it

    @property
    def success_rate(self) -> float:
        return self.ok / self.polls if self.polls else 0.0


@dataclass(slots=True)
class DeviceState:
    decoder: DeviceDecoder
    health: DeviceHealth
    interval_s: float
    timeout_s: float
    retries: int
    address: int
    backoff_max_s: float
    due: float = 0.0
    probe_at: float = 0.0
    latest_frame: tuple[float, list[int]] | None = field(default=None)

    @classmethod
    def of(cls, site_id: str, dev: ResolvedDevice) -> DeviceState:
        c = dev.config
        fast = speedup()  # 1.0 but in fast-motion tests: schedules (in loop time) shrink with the clock
        return cls(DeviceDecoder(site_id, dev), DeviceHealth(c.name, c.bus), c.poll_interval_s / fast, c.timeout_s,
                   c.retries, c.address, c.backoff_max_s / fast)

    def schedule_first(self, loop_now: float) -> None:
        """The first poll on a multiple of the interval on the gateway's clock (a platform's correction
        included), so polls land on round times."""
        fast = speedup()
        wall, period = now_ms() / 1000, self.interval_s * fast
        self.due = loop_now + (math.ceil(wall / period) * period - wall) / fast

    def schedule_next(self, loop_now: float) -> None:
        """The next slot on the grid. A slot that began while the last poll was still running (a busy loop, a
        slow answer) is taken at once, late; slots whose successors began too are skipped (no burst to catch
        up) and counted in `missed_slots`."""
        self.due += self.interval_s
        late = loop_now - self.due
        if late >= self.interval_s:
            missed = int(late // self.interval_s)
            self.health.overruns += 1
            self.health.missed_slots += missed
            self.due += missed * self.interval_s

    def record(self, reading: DeviceReading, latency_s: float, loop_now: float, answered: bool = False) -> None:
        """Count one poll. `answered`: the device answered every request, if only with Modbus exceptions — it is
        there (likely a wrong register map), so it stays online and on schedule, with no back-off."""
        h = self.health
        h.polls += 1
        h.last_latency_ms = latency_s * 1000
        if not reading.ok and answered:
            h.exceptions += 1
            if h.last_error != reading.error:
                log.warning("device %s on bus %s answers with exceptions: %s", h.device, h.bus, reading.error)
            h.consecutive_failures = 0
            h.online = True
            h.last_error = reading.error
            return
        if reading.ok:
            if not h.online:
                log.info("device %s on bus %s is back online after %d failed polls", h.device, h.bus,
                         h.consecutive_failures)
            h.ok += 1
            h.consecutive_failures = 0
            h.online = True
            h.last_ok_ms = reading.ts
            h.last_error = reading.error
            return
        h.failures += 1
        h.consecutive_failures += 1
        h.last_error = reading.error
        first = h.consecutive_failures == 1
        log.log(logging.WARNING if first else logging.DEBUG, "device %s on bus %s: %s", h.device, h.bus,
                reading.error)
        if h.consecutive_failures >= OFFLINE_AFTER:
            if h.online:
                log.error("device %s on bus %s stopped answering (%s); backing off", h.device, h.bus, reading.error)
            h.online = False
            backoff = min(self.backoff_max_s, self.interval_s * 2 ** (1 + h.consecutive_failures - OFFLINE_AFTER))
            self.probe_at = loop_now + backoff


def raise_if_cancelled() -> None:
    """Python 3.11's asyncio.wait_for (used inside pymodbus) can swallow a cancellation that arrives just as the
    answer does; the task still counts the request, so honour it here instead of polling on forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class ModbusBusWorker:
    """Polls the devices of one Modbus bus in due order, one transaction at a time."""

    def __init__(self, bus: RtuBus | TcpBus | RtuOverTcpBus, devices: Sequence[DeviceState], emit: Emit):
        self.bus = bus
        self.devices = list(devices)
        self.emit = emit
        io_timeout = max([3.0, *(d.timeout_s + 1 for d in devices)])
        self.link = ModbusLink(bus, io_timeout_s=io_timeout)
        self._link_retry_at = 0.0
        self._link_backoff = 0.5
        self._writes: deque[tuple[DeviceState, int, int, int, asyncio.Future[str | None]]] = deque()
        self._reads: deque[tuple[DeviceState, asyncio.Future[DeviceReading]]] = deque()
        self._wake = asyncio.Event()
        self._draining = False
        self.idle = asyncio.Event()  # set once draining and no poll is in flight

    def drain(self) -> None:
        """Start no new poll; `idle` is set when the one in flight (if any) has been emitted."""
        self._draining = True
        self._wake.set()

    def write(self, dev: DeviceState, function: int, address: int, value: int) -> asyncio.Future[str | None]:
        """Queue one write; the future gives None when the device confirmed it, else what went wrong."""
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._writes.append((dev, function, address, value, fut))
        self._wake.set()
        return fut

    def read_now(self, dev: DeviceState) -> asyncio.Future[DeviceReading]:
        """Queue one extra poll of `dev` between the scheduled ones (commissioning: what `plume read` does, while
        the gateway runs); the reading is returned, not emitted, and does not count in the device's health."""
        fut: asyncio.Future[DeviceReading] = asyncio.get_running_loop().create_future()
        self._reads.append((dev, fut))
        self._wake.set()
        return fut

    async def _do_reads(self) -> None:
        while self._reads:
            dev, fut = self._reads.popleft()
            if not fut.done():
                reading = await self.poll(dev, dev.retries)
                if not fut.done():
                    fut.set_result(reading)

    async def _do_writes(self) -> None:
        while self._writes:
            dev, function, address, value, fut = self._writes.popleft()
            if fut.done():
                continue
            try:
                await self.link.write(function, address, value, dev.address, dev.timeout_s)
                result: str | None = None
            except ReadError as err:
                result = f"{err.kind}: {err}"
            except ValueError as err:
                result = str(err)
            if not fut.done():
                fut.set_result(result)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for d in self.devices:
            d.schedule_first(loop.time())
        try:
            while True:
                if self._draining:
                    self.idle.set()
                    await asyncio.Event().wait()  # until cancelled
                if self._writes:
                    await self._do_writes()
                if self._reads:
                    await self._do_reads()
                dev = self.pick(loop.time())
                delay = dev.due - loop.time()
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
                    continue  # a write came in, or it is time: look again
                try:
                    await self.poll_scheduled(dev)
                except Exception as exc:
                    exc.add_note(f"while polling device {dev.health.device}")
                    raise
                dev.schedule_next(loop.time())
                raise_if_cancelled()
        finally:
            self.link.close()
            for *_, fut in self._writes:
                if not fut.done():
                    fut.set_result("acquisition stopped")
            for dev, rfut in self._reads:
                if not rfut.done():
                    rfut.set_result(dev.decoder.failed(now_ms(), ReadError("link", "acquisition stopped")))

    def costly(self, dev: DeviceState, now: float) -> bool:
        """A real poll of a device that has been failing: it likely costs a whole timeout of line time."""
        h = dev.health
        return h.consecutive_failures > 0 and (h.online or now >= dev.probe_at)

    def pick(self, now: float) -> DeviceState:
        """The device to serve next. Devices that answer go first; a failing device's probe waits for the slack
        before the next slot of the others, so a dead slave does not push its neighbours' polls late. It waits
        at most one of its intervals: on a bus with no slack it is probed anyway, late."""
        due = [d for d in self.devices if d.due <= now]
        if not due:
            return min(self.devices, key=lambda d: d.due)
        cheap = [d for d in due if not self.costly(d, now)]
        if cheap:
            return min(cheap, key=lambda d: d.due)
        dev = min(due, key=lambda d: d.due)
        others = [d.due for d in self.devices if d not in due]
        if not others or now + dev.timeout_s + self.link.pause_s <= min(others) or now - dev.due >= dev.interval_s:
            return dev
        return min((d for d in self.devices if d not in due), key=lambda d: d.due)

    def slack_until(self, dev: DeviceState) -> float | None:
        """When the next other device is due: retries of `dev` must end before then (None: no one else)."""
        others = [d.due for d in self.devices if d is not dev]
        return min(others) if others else None

    async def poll_scheduled(self, dev: DeviceState) -> DeviceReading:
        loop = asyncio.get_running_loop()
        start = loop.time()
        if not dev.health.online and start < dev.probe_at:
            dev.health.skipped += 1
            wait = dev.probe_at - start
            reading = dev.decoder.failed(now_ms(), ReadError("timeout", f"offline, next probe in {wait:.0f} s: "
                                                                        f"{dev.health.last_error}"))
            self.emit(reading)
            return reading
        # a device whose last poll got no answer at all gets one try, not its full retries, until it answers again
        suspect = dev.health.consecutive_failures > 0
        reading, answered = await self.poll_answered(dev, retries=0 if suspect else dev.retries,
                                                     retry_until=self.slack_until(dev))
        dev.health.bad_frames = self.link.bad_frames[dev.address]
        dev.record(reading, loop.time() - start, loop.time(), answered)
        self.emit(reading)
        return reading

    async def poll(self, dev: DeviceState, retries: int) -> DeviceReading:
        return (await self.poll_answered(dev, retries))[0]

    async def poll_answered(self, dev: DeviceState, retries: int,
                            retry_until: float | None = None) -> tuple[DeviceReading, bool]:
        """Read every request of the plan: the reading, and whether the device answered every request (data or a
        Modbus exception). If the first read gets no answer at all, the device is not there: the rest of its
        requests are skipped rather than each waiting out its own timeout."""
        ts = now_ms()
        results: list[tuple[Request, list[int] | ReadError]] = []
        answered = False
        every = True
        for req in list(dev.decoder.plan):
            result = await self.read(dev, req, retries, retry_until)
            if isinstance(result, ReadError) and not answered and result.kind in ("timeout", "link"):
                return dev.decoder.failed(ts, result), False
            if isinstance(result, ReadError) and result.kind == "exception" and result.code == 2:
                split = await self.split_at_gaps(dev, req, retries)
                if split is not None:
                    results += split
                    answered = True
                    continue
            got = not isinstance(result, ReadError) or result.kind == "exception"
            answered = answered or got
            every = every and got
            results.append((req, result))
        return dev.decoder.reading(ts, results), every

    async def split_at_gaps(self, dev: DeviceState, req: Request,
                            retries: int) -> list[tuple[Request, list[int] | ReadError]] | None:
        """An exception 2 to a read that spans unmapped registers: many devices refuse to read across a hole in
        their map. Read it split at the holes; when that works, the device's plan stays split for the rest of the
        run (said once, with the `max_gap` to put in the site file). None when there is nothing to split."""
        parts = split_request(req)
        if len(parts) < 2:
            return None
        out: list[tuple[Request, list[int] | ReadError]] = []
        for part in parts:
            out.append((part, await self.read(dev, part, retries)))
        if all(isinstance(r, ReadError) and r.kind == "exception" and r.code == 2 for _, r in out):
            return None  # the holes were not the problem: report the original answer
        plan = dev.decoder.plan
        i = plan.index(req)
        dev.decoder.plan = [*plan[:i], *parts, *plan[i + 1 :]]
        note = (f"fc{req.function}@{req.address}+{req.count} -> "
                + ", ".join(f"fc{p.function}@{p.address}+{p.count}" for p in parts))
        dev.decoder.narrowed.append(note)
        log.warning("device %s on bus %s answers exception 2 (illegal data address) to a read across unmapped "
                    "registers (%s); reading it split at the gaps for the rest of this run. To plan it so from "
                    "the start, put `max_gap: 0` on device %s in the site file", dev.health.device,
                    dev.health.bus, note, dev.health.device)
        return out

    async def read(self, dev: DeviceState, req: Request, retries: int,
                   retry_until: float | None = None) -> list[int] | ReadError:
        """One request, retried up to `retries` times on silence or a garbled answer — but a retry only when it
        can end before `retry_until` (the next other device's slot): retries use slack, never a neighbour's time."""
        loop = asyncio.get_running_loop()
        last: ReadError = ReadError("timeout", "not tried")
        for attempt in range(retries + 1):
            if attempt and retry_until is not None and loop.time() + dev.timeout_s > retry_until:
                return last
            if not self.link.is_open and loop.time() < self._link_retry_at:
                return ReadError("link", f"{self.link.where} unavailable, retrying in "
                                         f"{self._link_retry_at - loop.time():.1f} s")
            try:
                words = await self.link.read(req.function, req.address, req.count, dev.address, dev.timeout_s)
                self._link_backoff = 0.5
                return words
            except ReadError as err:
                last = err
                if err.kind == "link":
                    self._link_retry_at = loop.time() + self._link_backoff
                    self._link_backoff = min(LINK_RETRY_MAX_S, self._link_backoff * 2)
                    return err
                if err.kind == "exception":
                    return err  # the device answered: asking again gives the same answer
        return last


class FrameBusWorker:
    """Listens to one frame sensor's serial port and reports its latest valid frame on schedule."""

    def __init__(self, bus: SerialFrameBus, device: DeviceState, emit: Emit):
        self.bus = bus
        self.device = device
        self.emit = emit
        self.parser = FrameParser(device.decoder.profile.protocol)
        self.port_errors = 0

    def freshness_s(self) -> float:
        return max(2.5, self.device.timeout_s, self.device.interval_s * 1.5)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.listen(), name=f"plume.frames[{self.bus.name}]")
            tg.create_task(self.report(), name=f"plume.frames-report[{self.bus.name}]")

    async def listen(self) -> None:
        import termios

        import serial  # pyserial

        loop = asyncio.get_running_loop()
        backoff = 0.5
        while True:
            try:
                port = serial.Serial(self.bus.port, self.bus.baudrate, bytesize=self.bus.bytesize,
                                     parity=self.bus.parity, stopbits=self.bus.stopbits, timeout=0)
            except (OSError, ValueError, termios.error) as exc:  # SerialException is an OSError
                self.port_errors += 1
                if self.port_errors == 1:
                    log.error("serial port %s for %s: %s", self.bus.port, self.device.health.device, exc)
                await asyncio.sleep(backoff)
                backoff = min(LINK_RETRY_MAX_S, backoff * 2)
                continue
            backoff = 0.5
            lost = asyncio.Event()

            def readable(port: serial.Serial = port, lost: asyncio.Event = lost) -> None:
                try:
                    data = port.read(port.in_waiting or 1)
                except (OSError, serial.SerialException):
                    lost.set()
                    return
                for words in self.parser.feed(data):
                    self.device.latest_frame = (loop.time(), words)
                if self.parser.last_was_bad:  # the frame after the last good one failed: that one is stale now
                    self.device.latest_frame = None

            loop.add_reader(port.fileno(), readable)
            try:
                await lost.wait()
                log.error("serial port %s lost; reopening", self.bus.port)
            finally:
                loop.remove_reader(port.fileno())
                port.close()

    async def report(self) -> None:
        loop = asyncio.get_running_loop()
        dev = self.device
        dev.schedule_first(loop.time())
        while True:
            await asyncio.sleep(max(0.0, dev.due - loop.time()))
            self.emit_latest()
            dev.schedule_next(loop.time())

    def emit_latest(self) -> DeviceReading:
        loop = asyncio.get_running_loop()
        dev = self.device
        frame = dev.latest_frame
        ts = now_ms()
        if frame is not None and loop.time() - frame[0] <= self.freshness_s():
            reading = dev.decoder.from_frame(ts, frame[1])
        elif self.parser.last_was_bad:
            reading = dev.decoder.failed(ts, ReadError("garbled", f"the last frame failed its checksum "
                                                                  f"({self.parser.bad_frames} bad frames so far)"))
        else:
            bad = f", {self.parser.bad_frames} bad frames" if self.parser.bad_frames else ""
            reading = dev.decoder.failed(ts, ReadError("timeout", f"no valid frame for {self.freshness_s():g} s{bad}"))
        dev.health.bad_frames = self.parser.bad_frames
        dev.health.resyncs = self.parser.resyncs
        dev.record(reading, 0.0, loop.time())
        self.emit(reading)
        return reading


class Acquisition:
    """All buses of a site. `run` polls forever; `poll_once` is what `plume read` does."""

    def __init__(self, site: Site, emit: Emit):
        self.site = site
        self.emit = emit
        self.states = {d.name: DeviceState.of(site.id, d) for d in site.devices if d.config.enabled}
        self.modbus_workers: list[ModbusBusWorker] = []
        self.frame_workers: list[FrameBusWorker] = []
        for bus in site.config.buses:
            members = [self.states[d.name] for d in site.devices_on(bus.name)]
            if not members:
                continue
            if isinstance(bus, SerialFrameBus):
                self.frame_workers.append(FrameBusWorker(bus, members[0], emit))
            else:
                self.modbus_workers.append(ModbusBusWorker(bus, members, emit))
        self.supervisors = [BusSupervisor(w.bus.name, w.run, w.devices, emit) for w in self.modbus_workers]
        self.supervisors += [BusSupervisor(f.bus.name, f.run, [f.device], emit) for f in self.frame_workers]

    def health(self) -> dict[str, DeviceHealth]:
        return {name: s.health for name, s in self.states.items()}

    async def write(self, device: str, function: int, address: int, value: int) -> str | None:
        """Write one coil (FC 5, value 1/0) or register (FC 6) of `device` on its bus, between polls. Returns None
        when the device confirmed it, else a one-line reason. Needs `run` to be running."""
        state = self.states.get(device)
        if state is None:
            return f"device {device} is not polled (unknown or disabled)"
        for w in self.modbus_workers:
            if any(d is state for d in w.devices):
                return await w.write(state, function, address, value)
        return f"device {device} is not on a Modbus bus"

    async def drain(self) -> None:
        """Let the Modbus polls in flight finish and start no new ones (a graceful stop or a reload loses no
        answer a device already gave); frame sensors are reported on schedule and have nothing in flight."""
        for w in self.modbus_workers:
            w.drain()
        await asyncio.gather(*(w.idle.wait() for w in self.modbus_workers))

    async def read_now(self, device: str) -> DeviceReading | str:
        """Poll `device` once now, between its scheduled polls, without logging the reading (commissioning while
        the gateway runs). Returns the reading, or why there is none. Needs `run` to be running."""
        state = self.states.get(device)
        if state is None:
            return f"device {device} is not polled (unknown or disabled)"
        for w in self.modbus_workers:
            if any(d is state for d in w.devices):
                return await w.read_now(state)
        return f"device {device} pushes its own frames: its latest frame is its latest reading"

    def link_reconnects(self) -> dict[str, int]:
        return {w.bus.name: w.link.reconnects for w in self.modbus_workers}

    def narrowed(self) -> dict[str, list[str]]:
        """Devices whose plan was split at run time (they refused a read across unmapped registers)."""
        return {name: list(s.decoder.narrowed) for name, s in self.states.items() if s.decoder.narrowed}

    def bus_restarts(self) -> dict[str, int]:
        """Restarts of each bus after an unexpected error in it (0 for a bus that never failed)."""
        return {s.name: s.restarts for s in self.supervisors}

    async def run(self) -> None:
        """Every bus under its own supervisor: an error in one restarts that one; the others never notice."""
        async with asyncio.TaskGroup() as tg:
            for s in self.supervisors:
                tg.create_task(s.run(), name=f"plume.bus[{s.name}]")

    async def poll_once(self, devices: Sequence[str] | None = None, frame_wait_s: float = 3.0) -> list[DeviceReading]:
        """Poll each (selected) device once, bus by bus, in site-file order."""
        wanted = set(devices) if devices else None
        out: dict[str, DeviceReading] = {}
        for w in self.modbus_workers:
            try:
                for d in w.devices:
                    if wanted is None or d.health.device in wanted:
                        try:
                            out[d.health.device] = await w.poll(d, d.retries)
                        except Exception as exc:  # an unexpected error: this device's reading says so, the rest go on
                            cause = place_and_cause(exc)
                            log.error("bus %s, device %s: %s", w.bus.name, d.health.device, cause)
                            w.link.close()
                            out[d.health.device] = d.decoder.failed(now_ms(), ReadError("link", f"internal error: "
                                                                                                f"{cause}"))
            finally:
                w.link.close()
        frames = [f for f in self.frame_workers if wanted is None or f.device.health.device in wanted]
        if frames:
            listeners = [asyncio.create_task(f.listen()) for f in frames]
            try:
                deadline = asyncio.get_running_loop().time() + frame_wait_s
                loop = asyncio.get_running_loop()
                while any(f.device.latest_frame is None for f in frames) and loop.time() < deadline:
                    await asyncio.sleep(0.05)
                for f in frames:
                    out[f.device.health.device] = f.emit_latest()
            finally:
                for t in listeners:
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
        order = [d.name for d in self.site.devices]
        return [out[n] for n in order if n in out]
