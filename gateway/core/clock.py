"""Wall-clock time as the gateway counts it inside: UTC epoch milliseconds. Time-dependent parts take a `Clock`
(default `now_ms`) so that tests can run them in simulated time."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def now_ms() -> int:
    """Now, in UTC epoch milliseconds."""
    return time.time_ns() // 1_000_000
