"""Plain record types shared by every stage: data flags and readings.

Kept free of I/O and of pydantic so that the hot path (decode -> log -> sinks) stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Flag(StrEnum):
    """HJ 212 data flags. A value without a trustworthy number still travels, with its flag."""

    N = "N"  # normal
    F = "F"  # stopped
    M = "M"  # maintenance
    S = "S"  # manually set
    D = "D"  # instrument fault
    C = "C"  # calibration
    T = "T"  # over upper range
    B = "B"  # communication fault


# Which flag wins when several apply to one value: a fault beats maintenance beats normal.
FLAG_SEVERITY: dict[Flag, int] = {
    Flag.N: 0,
    Flag.S: 1,
    Flag.T: 2,
    Flag.C: 3,
    Flag.M: 4,
    Flag.F: 5,
    Flag.D: 6,
    Flag.B: 7,
}


def worst_flag(*flags: Flag) -> Flag:
    """The most severe of the given flags (N when none)."""
    best = Flag.N
    for f in flags:
        if f is not Flag.N and FLAG_SEVERITY[f] > FLAG_SEVERITY[best]:  # most values are N: no lookups for them
            best = f
    return best


Value = float | str | None


@dataclass(slots=True)
class ChannelValue:
    """One channel of one poll: the number (or text), its unit and its data flag.

    `value` is None when the device gave nothing usable (flag says why); never a silent zero.
    """

    value: Value
    unit: str
    flag: Flag = Flag.N
    note: str = ""


@dataclass(slots=True)
class DeviceReading:
    """Everything one device said in one poll, stamped once (UTC epoch milliseconds)."""

    site: str
    device: str
    kind: str
    ts: int
    values: dict[str, ChannelValue] = field(default_factory=dict)
    ok: bool = True
    error: str = ""

    def as_json(self) -> dict[str, object]:
        """The `plume read --json` shape."""
        return {
            "site": self.site,
            "device": self.device,
            "kind": self.kind,
            "ts": self.ts,
            "values": {
                ch: {"value": cv.value, "unit": cv.unit, "flag": cv.flag.value} for ch, cv in self.values.items()
            },
        }
