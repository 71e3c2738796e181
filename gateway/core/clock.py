"""Wall-clock time as the gateway counts it inside: UTC epoch milliseconds. Time-dependent parts take a `Clock`
(default `now_ms`) so that tests can run them in simulated time.

Fast motion (tests and demos only): with PLUME_CLOCK_SPEEDUP="FACTOR@ANCHOR_MS" in the environment the process's
clock runs FACTOR times as fast as the real one from ANCHOR_MS on (`now = anchor + (real - anchor) * FACTOR`), and
poll schedules shrink by the same factor, so one-minute windows close every 60/FACTOR s. Every process given the
same value (the gateway, the test reading its output) agrees on the time. I/O timeouts and retries stay real.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

Clock = Callable[[], int]

SPEEDUP_ENV = "PLUME_CLOCK_SPEEDUP"

_factor = 1.0
_anchor_ns = 0


def now_ms() -> int:
    """Now, in UTC epoch milliseconds (in fast motion: the fast clock)."""
    t = time.time_ns()
    if _factor != 1.0:
        t = _anchor_ns + int((t - _anchor_ns) * _factor)
    return t // 1_000_000


def speedup() -> float:
    """How many times faster than real time the clock runs (1.0 on a real site)."""
    return _factor


def set_speedup(factor: float, anchor_ms: int) -> None:
    """Run the clock `factor` times as fast from `anchor_ms` on (1.0: real time)."""
    global _factor, _anchor_ns
    if not factor > 0:
        raise ValueError(f"clock speedup must be > 0, not {factor}")
    _factor, _anchor_ns = float(factor), anchor_ms * 1_000_000


def speedup_value(factor: float, anchor_ms: int) -> str:
    """The PLUME_CLOCK_SPEEDUP value for a child process."""
    return f"{factor:g}@{anchor_ms}"


def speedup_from_environment(environ: dict[str, str] | None = None) -> float:
    """Apply PLUME_CLOCK_SPEEDUP when set; returns the factor (1.0 when unset). ValueError when malformed."""
    raw = (os.environ if environ is None else environ).get(SPEEDUP_ENV, "").strip()
    if not raw:
        return 1.0
    factor, sep, anchor = raw.partition("@")
    try:
        set_speedup(float(factor), int(anchor) if sep else time.time_ns() // 1_000_000)
    except ValueError:
        raise ValueError(f"{SPEEDUP_ENV}={raw!r}: expected FACTOR@ANCHOR_MS, e.g. 10@{time.time_ns() // 10**6}") \
            from None
    return _factor
