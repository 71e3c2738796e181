"""Which channel of which device feeds which HJ 212 code (a Route; gateway.site.uplinks resolves them against the
site's devices), and how a value is written: converted to the platform's unit, with at most N decimals.

Channels the processing stage derives (`so2_std`, `so2_zs`, `flow_std`, `o2_dry`, ...) are not in any profile;
they are accepted by their suffix, and their unit is only known at run time (a value that cannot be converted
then travels with flag D and no number, and the problem is logged once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.hj212.names import SIGNED_CODES

DERIVED_SUFFIXES = ("_std", "_zs", "_rate", "_dry")
DERIVED_NAMES = {"flow_std", "o2_dry"}

# factor to a base unit per family; a value converts only within its family
_FAMILIES: tuple[dict[str, float], ...] = (
    {"ng/m3": 1e-6, "ug/m3": 1e-3, "mg/m3": 1.0, "g/m3": 1e3},
    {"pa": 1.0, "hpa": 100.0, "kpa": 1000.0, "mpa": 1e6},
)
_ALIASES = str.maketrans({"μ": "u", "µ": "u", "³": "3"})


@dataclass(frozen=True, slots=True)
class Route:
    """One code: from (device, channel), optionally its converted value from `zs_channel`."""

    code: str
    device: str
    channel: str
    unit: str | None
    decimals: int
    zs_channel: str | None = None


def _norm(unit: str) -> str:
    u = unit.strip().translate(_ALIASES)
    return u.lower() if u.lower() in _FAMILIES[1] else u


def convert(value: float, from_unit: str, to_unit: str | None) -> float | None:
    """`value` in `to_unit` (None: unchanged); None when the units are not of one family."""
    if to_unit is None:
        return value
    a, b = _norm(from_unit), _norm(to_unit)
    if a == b:
        return value
    for fam in _FAMILIES:
        if a in fam and b in fam:
            return value * fam[a] / fam[b]
    return None


def number(value: float, decimals: int) -> str:
    """At most `decimals` decimals, trailing zeros dropped but one kept (`45.0`, `0.045`, `12.35`); an exact
    integer (an unscaled 64-bit channel) as its digits, never through a float."""
    if type(value) is int:
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0")
        if text.endswith("."):
            text += "0"
    return "0.0" if text in ("-0.0", "-0") else text


def impossible(code: str, value: float) -> bool:
    """A value no instrument can measure for this code: below zero where only temperatures and static pressure
    may be (a strict platform refuses the whole packet for it; Plume sends the code with flag D instead)."""
    return value < 0 and code not in SIGNED_CODES


def derived(channel: str) -> bool:
    return channel in DERIVED_NAMES or channel.endswith(DERIVED_SUFFIXES)
