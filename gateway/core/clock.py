"""Wall-clock time as the gateway counts it inside: UTC epoch milliseconds. Time-dependent parts take a `Clock`
(default `now_ms`) so that tests can run them in simulated time.

`now_ms()` is the gateway's one clock: the system clock plus the offset a regulator platform set (HJ 212 CN 1012)
when the gateway may not set the system clock itself. Readings, windows, alarms, DataTime and QN all read it, so
after a 1012 every timestamp the gateway makes follows the platform's time. The offset is persisted
(`<store.dir>/clock.json`, written atomically) so a restart keeps it. With `clock.set_system: true` (and the
CAP_SYS_TIME capability) a correction sets the system clock instead and the offset stays 0; without the capability
it falls back to the offset and says so.

HJ 477 asks a data logger to keep its clock within 0.5 per mille: `max_error_ms()` is that share of the time since
the last correction (at least 1 s); a platform request whose QN is further off than that makes the clock "known to
be off" (`off`): the HJ 212 uplinks then ask their platforms for the time (CN 1013). Health also reports a system
clock the kernel says is unsynchronised (no NTP) that nobody corrected as not synchronised.

Fast motion (tests and demos only): with PLUME_CLOCK_SPEEDUP="FACTOR@ANCHOR_MS" in the environment the process's
clock runs FACTOR times as fast as the real one from ANCHOR_MS on (`now = anchor + (real - anchor) * FACTOR`), and
poll schedules shrink by the same factor, so one-minute windows close every 60/FACTOR s. Every process given the
same value (the gateway, the test reading its output) agrees on the time. I/O timeouts and retries stay real.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Clock = Callable[[], int]
log = logging.getLogger("plume.clock")

PER_MILLE_ALLOWED = 0.5  # HJ 477: clock error at most 0.5 per mille
MIN_ERROR_MS = 1000  # whole seconds on the wire: never ask for better than 1 s

SPEEDUP_ENV = "PLUME_CLOCK_SPEEDUP"

_factor = 1.0
_anchor_ns = 0


def base_ms() -> int:
    """The system clock in UTC epoch ms (in fast motion: the fast clock), before any platform's correction."""
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


@dataclass(slots=True)
class Correction:
    """One change of the gateway's clock: when (on the corrected clock), by how much, by whom, and how."""

    at_ms: int
    step_ms: int
    by: str
    applied: str  # "system" (the system clock was set) or "offset"


class WallClock:
    """The system clock plus a persisted offset; see the module docstring."""

    def __init__(self) -> None:
        self.offset_ms = 0
        self.path: Path | None = None
        self.set_system = False
        self.last: Correction | None = None
        self.off_reason: str | None = None

    # --- time ----------------------------------------------------------------------------------------------
    def system_ms(self) -> int:
        return base_ms()

    def now_ms(self) -> int:
        return self.system_ms() + self.offset_ms

    # --- state -----------------------------------------------------------------------------------------------
    def attach(self, path: Path, *, set_system: bool = False) -> None:
        """Use (and load) the persisted clock state at `path`; called once when the gateway starts."""
        self.path, self.set_system = path, set_system
        self.offset_ms, self.last, self.off_reason = 0, None, None
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
            self.offset_ms = int(data.get("offset_ms", 0))
            last = data.get("last")
            self.last = Correction(**last) if isinstance(last, dict) else None
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as exc:
            log.warning("clock: %s unreadable (%s); using the system clock", path, exc)
        if self.offset_ms:
            log.info("clock: applying the offset %+.3f s set by %s", self.offset_ms / 1000,
                     self.last.by if self.last else "an earlier correction")

    def reset(self) -> None:
        """Back to the bare system clock, detached (tests)."""
        self.__init__()  # type: ignore[misc]

    def correct(self, target_ms: int, by: str) -> Correction:
        """Make now_ms() read `target_ms` now. Sets the system clock when allowed and able, else the offset."""
        step = target_ms - self.now_ms()
        applied = "offset"
        if self.set_system and _factor == 1.0:
            try:
                time.clock_settime(time.CLOCK_REALTIME, target_ms / 1000)
                self.offset_ms = 0
                applied = "system"
            except OSError as exc:  # EPERM without CAP_SYS_TIME (the shipped unit has ProtectClock=yes)
                log.warning("clock: cannot set the system clock (%s); keeping an offset instead", exc.strerror or exc)
        if applied == "offset":
            self.offset_ms += step
        self.last = Correction(target_ms, step, by, applied)
        self.off_reason = None
        self._save()
        log.info("clock: corrected by %+.3f s by %s (%s); offset now %+.3f s", step / 1000, by,
                 "system clock set" if applied == "system" else "offset applied to every timestamp",
                 self.offset_ms / 1000)
        return self.last

    def max_error_ms(self) -> int:
        """The error HJ 477 allows now: 0.5 per mille of the time since the last correction (at least 1 s)."""
        if self.last is None:
            return MIN_ERROR_MS
        return max(MIN_ERROR_MS, int((self.now_ms() - self.last.at_ms) * PER_MILLE_ALLOWED / 1000))

    def observe(self, other_ms: int, source: str) -> bool:
        """A trusted peer's time (a platform's request QN): True when ours is off by more than allowed (and
        remembers that, for health and the 1013 request)."""
        diff = other_ms - self.now_ms()
        if abs(diff) <= self.max_error_ms():
            return False
        self.off_reason = f"{source} is {diff / 1000:+.1f} s from the gateway's clock"
        return True

    @property
    def off(self) -> str | None:
        """Why the clock is known to be off (None: it is not known to be)."""
        return self.off_reason

    def state(self) -> dict[str, Any]:
        """For health: synchronised or not (known off, or an unsynchronised system clock nobody corrected), the
        offset applied, the last correction and by whom."""
        off = self.off
        if off is None and self.last is None and system_unsynchronised():
            off = "the system clock is not synchronised (no NTP) and no platform has set the time"
        return {"synchronised": off is None, "off_reason": off, "offset_ms": self.offset_ms,
                "set_system": self.set_system, "last_correction": asdict(self.last) if self.last else None}

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        text = json.dumps({"offset_ms": self.offset_ms, "last": asdict(self.last) if self.last else None})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)


class _Timex(ctypes.Structure):
    # struct timex of Linux (x86_64 / aarch64 layout): modes, then 10 longs..., then padding; only the return
    # value of adjtimex matters here, so a generous buffer is enough
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 256)]


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, found once: `ctypes.util.find_library` runs `ldconfig -p` (a process) every time it is asked,
    and every health snapshot asks about the clock."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def system_unsynchronised() -> bool:
    """True when the kernel says the system clock is not synchronised (adjtimex returns TIME_ERROR: no NTP
    discipline); False when it is, or when this cannot be asked (not Linux)."""
    with contextlib.suppress(Exception):
        libc = _libc()
        tx = _Timex()
        state = int(libc.adjtimex(ctypes.byref(tx)))
        return state == 5  # TIME_ERROR
    return False


CLOCK = WallClock()


def now_ms() -> int:
    """Now, in UTC epoch milliseconds, on the gateway's clock (the system clock plus a platform's correction)."""
    return CLOCK.now_ms()
