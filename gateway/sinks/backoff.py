"""Retry pacing and outage logging shared by the sinks.

Backoff: exponential with full jitter, so a fleet of gateways behind one 4G cell does not reconnect in lockstep.
Recovery: while a back-off delay runs, the target is probed (a TCP connect) every second; once a target that was
unreachable accepts connections again the wait ends, so a broker's or database's return is noticed within about a
second instead of after a back-off that may have doubled up to its maximum. A target that is reachable but refuses
(bad password, HTTP 5xx) gets the full back-off: probing cannot tell that it got better.
Outage: the first failure of an outage is logged at ERROR, a changed reason at WARNING, repeats of the same
failure at DEBUG (with a WARNING reminder every few minutes), the recovery at INFO — a dead broker must not
flood a small SD card with log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

RECOVERY_PROBE_S = 1.0


class Backoff:
    def __init__(self, min_s: float, max_s: float, factor: float = 2.0):
        self.min_s = min_s
        self.max_s = max(max_s, min_s)
        self.factor = factor
        self.attempt = 0

    def next(self) -> float:
        """The next delay: uniformly in [d/2, d], d doubling from min_s up to max_s."""
        d = min(self.max_s, self.min_s * self.factor**self.attempt)
        self.attempt += 1
        return d * (0.5 + random.random() / 2)

    def reset(self) -> None:
        self.attempt = 0


async def tcp_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Does host:port accept a TCP connection now?"""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


@dataclass(slots=True)
class RecoveryWait:
    """One back-off wait: its planned delay, the probes made, whether the target's return ended it early."""

    delay_s: float
    probes: int = 0
    woke_early: bool = False


class Recovery:
    """Waits out a back-off delay while probing the target; see the module docstring."""

    def __init__(self, host: str, port: int, interval_s: float = RECOVERY_PROBE_S,
                 probe: Callable[[], Awaitable[bool]] | None = None):
        self.host = host
        self.port = port
        self.interval_s = interval_s
        self._probe = probe or (lambda: tcp_reachable(host, port, min(1.0, interval_s)))
        self.probes = 0  # since start
        self.last: RecoveryWait | None = None

    async def wait(self, delay_s: float, sleep: Callable[[float], Awaitable[bool]]) -> bool:
        """Sleep `delay_s` with `sleep` (True: the gateway is stopping), ending early once an unreachable target
        is back. Returns True if stopping."""
        w = self.last = RecoveryWait(delay_s)
        down = not await self._count()
        w.probes += 1
        remaining = delay_s
        while remaining > 0:
            step = min(self.interval_s, remaining)
            if await sleep(step):
                return True
            remaining -= step
            if down and remaining > 0:
                w.probes += 1
                if await self._count():
                    w.woke_early = True
                    return False
        return False

    async def _count(self) -> bool:
        self.probes += 1
        return await self._probe()


class Outage:
    REMIND_S = 300.0

    def __init__(self, logger: logging.Logger, what: str):
        self.logger = logger
        self.what = what
        self.since: float | None = None
        self.failures = 0
        self._last_msg = ""
        self._last_loud = 0.0

    @property
    def failing(self) -> bool:
        return self.since is not None

    def fail(self, message: str) -> None:
        now = time.monotonic()
        self.failures += 1
        first = self.since is None
        if self.since is None:
            self.since = now
        if first:
            self.logger.error("%s: %s", self.what, message)
            self._last_loud = now
        elif message != self._last_msg:
            self.logger.warning("%s: now %s", self.what, message)
            self._last_loud = now
        elif now - self._last_loud >= self.REMIND_S:
            self.logger.warning("%s: still failing after %.0f s: %s", self.what, now - self.since, message)
            self._last_loud = now
        else:
            self.logger.debug("%s: %s", self.what, message)
        self._last_msg = message

    def ok(self, message: str = "") -> None:
        if self.since is not None:
            self.logger.info("%s: recovered after %.1f s%s", self.what, time.monotonic() - self.since,
                             f" ({message})" if message else "")
        self.since = None
        self._last_msg = ""
