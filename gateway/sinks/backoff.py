"""Retry pacing and outage logging shared by the sinks.

Backoff: exponential with full jitter, so a fleet of gateways behind one 4G cell does not reconnect in lockstep.
Outage: the first failure of an outage is logged at ERROR, a changed reason at WARNING, repeats of the same
failure at DEBUG (with a WARNING reminder every few minutes), the recovery at INFO — a dead broker must not
flood a small SD card with log lines.
"""

from __future__ import annotations

import logging
import random
import time


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
