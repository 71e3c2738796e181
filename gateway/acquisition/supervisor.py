"""Each bus runs as its own supervised unit, so one bus's bug can never stop the others or the sinks.

An unexpected error in a bus worker (a decode bug, a driver exception, anything not already a flagged reading) is
logged once per distinct cause with where it happened, counted, turns that bus's scheduled readings into flag B
with the cause for as long as the bus is down, and the bus is restarted with a doubling back-off (reset after it
has run cleanly for a while). Cancellation passes straight through.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from gateway.acquisition.device import DeviceDecoder
from gateway.acquisition.link import ReadError
from gateway.core.clock import now_ms

log = logging.getLogger(__name__)

RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a bus that ran this long before failing starts its back-off from the bottom again


def innermost(exc: BaseException) -> BaseException:
    """The error itself, out of the ExceptionGroup a TaskGroup wraps it in."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def place_and_cause(exc: BaseException) -> str:
    """'ZeroDivisionError: a decoder bug (at gateway/acquisition/device.py:40 in reading, while polling device
    dust)': the error, where it was raised, and what the bus was doing."""
    exc = innermost(exc)
    cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    notes = "".join(f", {n}" for n in getattr(exc, "__notes__", ()))
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return cause + (f" ({notes[2:]})" if notes else "")
    f = frames[-1]
    parts = Path(f.filename).parts
    short = "/".join(parts[-3:]) if len(parts) >= 3 else f.filename
    return f"{cause} (at {short}:{f.lineno} in {f.name}{notes})"


class Slot(Protocol):
    """What the supervisor needs of a polled device (the poller's DeviceState)."""

    decoder: DeviceDecoder
    health: Any
    due: float

    def schedule_next(self, loop_now: float) -> None: ...


class BusSupervisor:
    """Runs one bus worker forever: restarts it after an unexpected error, flags its devices B meanwhile."""

    def __init__(self, name: str, run: Callable[[], Awaitable[None]], devices: Sequence[Slot],
                 emit: Callable[[Any], None]):
        self.name = name
        self._run = run
        self.devices = list(devices)
        self.emit = emit
        self.restarts = 0
        self.last_error = ""
        self._causes: set[str] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = RESTART_MIN_S
        while True:
            started = loop.time()
            try:
                await self._run()
                return  # the worker ended by itself: nothing (more) to poll on this bus
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if loop.time() - started >= HEALTHY_AFTER_S:
                    backoff = RESTART_MIN_S
                cause = place_and_cause(exc)
                self.restarts += 1
                self.last_error = cause
                for dev in self.devices:
                    dev.health.bus_restarts = self.restarts
                first = cause not in self._causes
                self._causes.add(cause)
                log.log(logging.ERROR if first else logging.DEBUG,
                        "bus %s failed: %s; its readings are flagged B, restarting the bus in %.1f s (restart %d)",
                        self.name, cause, backoff, self.restarts)
                await self.flag_until(loop.time() + backoff, f"bus {self.name} failed ({cause}); restarting")
                backoff = min(RESTART_MAX_S, backoff * 2)

    async def flag_until(self, until: float, why: str) -> None:
        """Emit a flag-B reading in each device's slot until the restart (a slot already due gets one now)."""
        loop = asyncio.get_running_loop()
        if not self.devices:
            await asyncio.sleep(max(0.0, until - loop.time()))
            return
        while True:
            dev = min(self.devices, key=lambda d: d.due)
            if dev.due >= until:
                await asyncio.sleep(max(0.0, until - loop.time()))
                return
            await asyncio.sleep(max(0.0, dev.due - loop.time()))
            health = dev.health
            health.skipped += 1
            health.last_error = why
            self.emit(dev.decoder.failed(now_ms(), ReadError("link", why)))
            dev.schedule_next(loop.time())
