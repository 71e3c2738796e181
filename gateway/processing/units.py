"""Unit conversions the regulatory code needs: mass concentrations, pressures, temperatures, fractions.

Units travel as text on every channel (profiles say `ug/m3`, `kPa`, `%`); a rule or a formula that needs another
unit converts explicitly, and an impossible conversion is None (the caller flags it), never a silent pass-through.
"""

from __future__ import annotations

from functools import lru_cache

_ALIASES = str.maketrans({"μ": "u", "µ": "u", "³": "3"})

# factor to the base unit of each family
_CONCENTRATION = {"ng/m3": 1e-6, "ug/m3": 1e-3, "mg/m3": 1.0, "g/m3": 1e3}  # base mg/m3
_PRESSURE = {"pa": 1.0, "hpa": 100.0, "kpa": 1000.0, "mpa": 1e6, "mbar": 100.0, "bar": 1e5}  # base Pa
_FRACTION = {"%": 1.0, "%vol": 1.0, "ppm": 1e-4, "ppb": 1e-7}  # base % (volume)
_AMOUNTS = {"mg", "g", "kg", "t", "m3", "Nm3", "L"}  # what a rate may be a rate of (not m/s: a speed)
VOLUME_MIXING = {"ppm": 1.0, "ppb": 1e-3, "ppt": 1e-6}  # base ppm (gas volume mixing ratios)


@lru_cache(maxsize=1024)  # a site has a few unit spellings; the CEMS stage asks for them on every reading
def norm(unit: str) -> str:
    """Canonical spelling: `μg/m³` and `ug/m3` are the same unit."""
    return unit.strip().translate(_ALIASES)


def _family_key(unit: str) -> tuple[dict[str, float], str] | None:
    u = norm(unit)
    if u in _CONCENTRATION:
        return _CONCENTRATION, u
    if u.lower() in _PRESSURE:
        return _PRESSURE, u.lower()
    return None


def convert(value: float, from_unit: str, to_unit: str) -> float | None:
    """`value` in `from_unit` expressed in `to_unit`; None when the units are not of one family."""
    a, b = norm(from_unit), norm(to_unit)
    if a == b:
        return value
    fa, fb = _family_key(a), _family_key(b)
    if fa is None or fb is None or fa[0] is not fb[0]:
        if a.lower() in ("c", "°c", "degc") and b.lower() in ("k",):
            return value + 273.15
        if a.lower() == "k" and b.lower() in ("c", "°c", "degc"):
            return value - 273.15
        return None
    return value * fa[0][fa[1]] / fb[0][fb[1]]


def to_pa(value: float, unit: str) -> float | None:
    return convert(value, unit, "Pa")


def to_celsius(value: float, unit: str) -> float | None:
    u = norm(unit).lower()
    if u in ("c", "°c", "degc"):
        return value
    if u == "k":
        return value - 273.15
    return None


def to_percent(value: float, unit: str) -> float | None:
    """A volume fraction in percent (O2, flue-gas moisture)."""
    u = norm(unit).lower()
    if u in _FRACTION:
        return value * _FRACTION[u]
    return None


def is_mixing_ratio(unit: str) -> bool:
    return norm(unit).lower() in VOLUME_MIXING


def period_unit(rate_unit: str) -> tuple[str, float] | None:
    """For a rate unit (`kg/h`, `m3/h`, `g/s`): the unit of its total and seconds per time unit; else None."""
    u = norm(rate_unit)
    amount, sep, per = u.rpartition("/")
    if not sep or amount not in _AMOUNTS:
        return None
    seconds = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}.get(per)
    if seconds is None:
        return None
    return amount, seconds
