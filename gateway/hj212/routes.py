"""Which channel of which device feeds which HJ 212 code, checked against the site's devices, and how a value is
written: converted to the platform's unit, with at most N decimals.

Channels the processing stage derives (`so2_std`, `so2_zs`, `flow_std`, `o2_dry`, ...) are not in any profile;
they are accepted by their suffix, and their unit is only known at run time (a value that cannot be converted
then travels with flag D and no number, and the problem is logged once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.config import Site
from gateway.hj212.config import UplinkConfig

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
    """At most `decimals` decimals, trailing zeros dropped but one kept (`45.0`, `0.045`, `12.35`)."""
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0")
        if text.endswith("."):
            text += "0"
    return "0.0" if text in ("-0.0", "-0") else text


def derived(channel: str) -> bool:
    return channel in DERIVED_NAMES or channel.endswith(DERIVED_SUFFIXES)


def resolve(cfg: UplinkConfig, site: Site, where: str, problems: list[str]) -> list[Route]:
    """Routes for an uplink's code map; every problem is `where.codes[i].field: message`."""
    devices = {d.name: d for d in site.devices if d.config.enabled}
    routes: list[Route] = []
    for i, c in enumerate(cfg.codes):
        at = f"{where}.codes[{i}]"
        if c.device is not None:
            dev = devices.get(c.device)
            if dev is None:
                problems.append(f"{at}.device: no enabled device named {c.device!r}")
                continue
            name = dev.name
        else:
            having = [d.name for d in devices.values() if any(r.channel == c.channel for r in d.profile.registers)]
            if len(having) != 1:
                problems.append(f"{at}.device: " + (f"channel {c.channel} is on {', '.join(having)}; say which"
                                                    if having else f"no enabled device has a channel {c.channel}"))
                continue
            name = having[0]
            dev = devices[name]
        spec = next((r for r in dev.profile.registers if r.channel == c.channel), None)
        if spec is None and not derived(c.channel):
            problems.append(f"{at}.channel: device {name} has no channel {c.channel!r} (channels: "
                            f"{', '.join(r.channel for r in dev.profile.registers)})")
            continue
        if spec is not None and c.unit is not None and spec.unit and convert(1.0, spec.unit, c.unit) is None:
            problems.append(f"{at}.unit: cannot convert {c.channel} from {spec.unit} to {c.unit}")
            continue
        zs = cfg.zs.get(c.code)
        if zs is not None and not derived(zs) and not any(r.channel == zs for r in dev.profile.registers):
            problems.append(f"{where}.zs.{c.code}: device {name} has no channel {zs!r}")
            continue
        routes.append(Route(c.code, name, c.channel, c.unit, c.decimals, zs))
    return routes
