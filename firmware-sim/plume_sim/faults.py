"""Faults a device can be told to have, parsed from `KIND[:ARG]` and checked against what the device is.

One fault per device at a time; setting a new one replaces the old, `None` clears it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.model import Flag
from gateway.profile import Profile

KINDS: dict[str, str] = {
    "dead": "never answers",
    "timeout": "timeout:P drops a fraction P (0..1) of requests",
    "exception": "exception:CODE answers every read with that Modbus exception code",
    "crc": "answers with a corrupted CRC (TCP: a wrong transaction id; frames: a bad checksum)",
    "garbage": "answers random bytes",
    "stuck": "values frozen at their current value",
    "reboot": "reboot:S no answer for S seconds, then back with run_hours reset",
    "nan": "float registers serve NaN",
    "status": "status:FLAG sets the status bits or code the profile maps to FLAG (e.g. status:C)",
    "overrange": "values at 1.2 x the register's max",
    "slow": "slow:MS answers MS milliseconds late",
    # hostile answers: well-formed enough to reach the gateway's decoder, wrong in one way each
    "empty": "answers a frame with no PDU at all (RTU: unit id and CRC; TCP: an MBAP header and the unit id)",
    "short": "answers with half the data its byte count promises",
    "oversized": "answers with more data than was asked for (byte count and data agree)",
    "wrong_fc": "answers with another read function code (1<->2, 3<->4)",
    "wrong_unit": "answers from another unit id",
    "bytecount": "bytecount:N answers with byte count N and N data bytes (0: the empty FC 1/2 answer)",
    "drip": "drip:MS sends its answer one byte every MS milliseconds",
    "strict": "answers exception 2 to a read that touches a register the profile does not map",
}
NEEDS_ARG = {"timeout", "exception", "reboot", "status", "slow", "bytecount", "drip"}
MANGLES = {"empty", "short", "oversized", "wrong_fc", "wrong_unit", "bytecount"}  # applied to a read's answer
FRAME_KINDS = {"dead", "garbage", "crc", "stuck", "overrange"}


class FaultError(ValueError):
    """A fault that cannot be applied, with a one-line reason."""


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    arg: str = ""
    probability: float = 0.0  # timeout
    code: int = 0  # exception
    seconds: float = 0.0  # reboot, slow, drip (per byte)
    status: tuple[tuple[int, int], ...] = ()  # (status spec index, raw value) for status:FLAG

    def __str__(self) -> str:
        return f"{self.kind}:{self.arg}" if self.arg else self.kind


def _number(kind: str, arg: str, lo: float, hi: float) -> float:
    try:
        v = float(arg)
    except ValueError:
        raise FaultError(f"{kind}: {arg!r} is not a number") from None
    if not lo <= v <= hi:
        raise FaultError(f"{kind}: {arg} outside {lo:g}..{hi:g}")
    return v


def status_words(profile: Profile, flag: Flag) -> tuple[tuple[int, int], ...]:
    """Raw values of the status registers that make the gateway read `flag`: bits first, else a code."""
    out: list[tuple[int, int]] = []
    for i, st in enumerate(profile.status):
        raw = sum(1 << bit for bit, f in st.bits.items() if f is flag)
        if not raw:
            raw = next((code for code, f in st.codes.items() if f is flag), 0)
        if raw:
            out.append((i, raw))
    return tuple(out)


def parse_fault(text: str, profile: Profile) -> Fault:
    """`KIND[:ARG]` for a device with this profile; FaultError says what is wrong."""
    kind, _, arg = text.strip().partition(":")
    kind = kind.lower()
    if kind not in KINDS:
        raise FaultError(f"unknown fault {kind!r} (kinds: {', '.join(KINDS)})")
    if kind in NEEDS_ARG and not arg:
        raise FaultError(f"{kind} needs an argument: {KINDS[kind]}")
    if kind not in NEEDS_ARG and arg:
        raise FaultError(f"{kind} takes no argument")
    if profile.protocol != "modbus" and kind not in FRAME_KINDS:
        raise FaultError(f"{kind} does not apply to a {profile.protocol} frame sensor "
                         f"(frame faults: {', '.join(sorted(FRAME_KINDS))})")
    if kind == "timeout":
        return Fault(kind, arg, probability=_number(kind, arg, 0, 1))
    if kind == "exception":
        code = _number(kind, arg, 1, 255)
        if code != int(code):
            raise FaultError(f"exception: code {arg} is not an integer")
        return Fault(kind, arg, code=int(code))
    if kind == "reboot":
        return Fault(kind, arg, seconds=_number(kind, arg, 0, 86400))
    if kind in ("slow", "drip"):
        return Fault(kind, arg, seconds=_number(kind, arg, 0, 600_000) / 1000)
    if kind == "bytecount":
        n = _number(kind, arg, 0, 255)
        if n != int(n):
            raise FaultError(f"bytecount: {arg} is not an integer")
        return Fault(kind, arg, code=int(n))
    if kind == "status":
        try:
            flag = Flag(arg.upper())
        except ValueError:
            raise FaultError(f"status: {arg!r} is not a data flag ({', '.join(f.value for f in Flag)})") from None
        words = status_words(profile, flag)
        if not words:
            mapped = sorted({f.value for st in profile.status for f in [*st.bits.values(), *st.codes.values()]})
            raise FaultError(f"status: profile {profile.name} maps no status bit or code to {flag.value} "
                             f"(it maps: {', '.join(mapped) or 'nothing, no status register'})")
        return Fault(kind, flag.value, status=words)
    return Fault(kind)
