"""CEMS arithmetic (HJ 75 / HJ 76, quoted in HJ 212 appendix D): from what the analyzers report to what the
regulator judges — concentrations at standard conditions (273 K, 101325 Pa) on dry gas, converted to reference O2
("Zs"), flue-gas flow at standard dry conditions, and emission rates.

The formulas are plain float functions (tested against hand-computed numbers). `derive` applies them to one
reading (plus, for a stack fed by several devices, the latest readings of the others) and returns the derived
channels, each flagged with the worst flag of the inputs it used: a value computed from a calibrating O2 analyzer
is C, never N. Near 21 % O2 (burner off) the reference-O2 correction explodes; at or above the configured guard
there is no Zs value, only a flag (F, "stopped", by default) — never a blind division.

Which channels feed which formula is data: `StackConfig` in the site file, with defaults per boiler type.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.core.model import ChannelValue, DeviceReading, Flag, worst_flag
from gateway.core.strict import Strict
from gateway.processing import units

T0_K = 273.0  # HJ 75 writes 273, not 273.15; the standard's own arithmetic is what the regulator recomputes
P0_PA = 101325.0
MOLAR_VOLUME_L = 22.4  # L/mol at 273 K, 101325 Pa
NO_AS_NO2 = 1.53  # mass of NO expressed as NO2 (46.01 / 30.01)
O2_AIR = 21.0

# g/mol; ppm * M / 22.4 = mg/m3 at standard conditions (SO2 x2.86, NO2 x2.05, NO x1.34)
MOLAR_MASS: dict[str, float] = {
    "so2": 64.066,
    "no": 30.006,
    "no2": 46.006,
    "nox": 46.006,  # NOx is expressed as NO2
    "co": 28.010,
    "co2": 44.009,
    "hcl": 36.461,
    "hf": 20.006,
    "nh3": 17.031,
    "h2s": 34.08,
}

BoilerType = Literal["coal", "oil_gas", "coal_power", "gas_turbine"]


@dataclass(frozen=True, slots=True)
class BoilerDefaults:
    reference_o2: float
    standard: str


BOILER_DEFAULTS: dict[str, BoilerDefaults] = {
    "coal": BoilerDefaults(9.0, "GB 13271-2014 (coal-fired boilers)"),
    "oil_gas": BoilerDefaults(3.5, "GB 13271-2014 (oil- and gas-fired boilers)"),
    "coal_power": BoilerDefaults(6.0, "GB 13223-2011 (coal-fired power units)"),
    "gas_turbine": BoilerDefaults(15.0, "GB 13223-2011 (gas turbines)"),
}


class CemsError(ValueError):
    """An input that makes a formula meaningless (moisture >= 100 %, absolute pressure <= 0, ...)."""


class O2GuardError(CemsError):
    """O2 at or above the guard: the reference-O2 correction would explode."""


# --- the formulas ------------------------------------------------------------------------------------------------
def ppm_to_mg_m3(ppm: float, molar_mass: float) -> float:
    """Volume mixing ratio to mass concentration at standard conditions: ppm * M / 22.4."""
    return ppm * molar_mass / MOLAR_VOLUME_L


def nox_as_no2(no_mg_m3: float, no2_mg_m3: float) -> float:
    """NOx expressed as NO2 (mg/m3): NO * 1.53 + NO2."""
    return no_mg_m3 * NO_AS_NO2 + no2_mg_m3


def moisture_fraction(moisture_pct: float) -> float:
    x = moisture_pct / 100.0
    if not 0.0 <= x < 1.0:
        raise CemsError(f"flue-gas moisture {moisture_pct:g} % is outside 0..100 %")
    return x


def wet_to_dry(value_wet: float, moisture_pct: float) -> float:
    """C_dry = C_wet / (1 - Xsw); the same for O2 in %."""
    return value_wet / (1.0 - moisture_fraction(moisture_pct))


def absolute_pressure_pa(ambient_pa: float, static_pa: float) -> float:
    p = ambient_pa + static_pa
    if p <= 0:
        raise CemsError(f"absolute flue pressure {p:g} Pa (Ba + Ps) is not positive")
    return p


def _kelvin(t_c: float) -> float:
    k = T0_K + t_c
    if k <= 0:
        raise CemsError(f"flue temperature {t_c:g} C is below absolute zero")
    return k


def actual_to_standard(value: float, t_c: float, ambient_pa: float, static_pa: float) -> float:
    """C_std = C_actual * (273 + t) / 273 * 101325 / (Ba + Ps)."""
    return value * _kelvin(t_c) / T0_K * P0_PA / absolute_pressure_pa(ambient_pa, static_pa)


def reference_o2(value_dry: float, o2_dry_pct: float, o2_ref_pct: float, guard_pct: float) -> float:
    """C_ref = C_dry * (21 - O2_ref) / (21 - O2_measured_dry); O2GuardError at or above the guard."""
    if o2_dry_pct >= guard_pct:
        raise O2GuardError(f"O2 {o2_dry_pct:g} % >= guard {guard_pct:g} %: no reference-O2 value")
    if o2_dry_pct < 0:
        raise CemsError(f"O2 {o2_dry_pct:g} % is negative")
    return value_dry * (O2_AIR - o2_ref_pct) / (O2_AIR - o2_dry_pct)


def flow_std_dry(area_m2: float, velocity_m_s: float, t_c: float, ambient_pa: float, static_pa: float,
                 moisture_pct: float) -> float:
    """Q_std,dry (m3/h) = 3600 * A * v * 273 / (273 + t) * (Ba + Ps) / 101325 * (1 - Xsw)."""
    return (3600.0 * area_m2 * velocity_m_s * T0_K / _kelvin(t_c)
            * absolute_pressure_pa(ambient_pa, static_pa) / P0_PA * (1.0 - moisture_fraction(moisture_pct)))


def flow_to_std_dry(q_m3_h: float, t_c: float, ambient_pa: float, static_pa: float, moisture_pct: float,
                    conditions: str, basis: str) -> float:
    """A measured flow (m3/h) to standard dry conditions (the inverse direction of a concentration)."""
    q = q_m3_h
    if conditions == "actual":
        q = q * T0_K / _kelvin(t_c) * absolute_pressure_pa(ambient_pa, static_pa) / P0_PA
    if basis == "wet":
        q = q * (1.0 - moisture_fraction(moisture_pct))
    return q


def emission_rate_kg_h(c_std_dry_mg_m3: float, q_std_dry_m3_h: float) -> float:
    """Emission rate (kg/h) = C (mg/m3, standard dry, not O2-corrected) * Q (m3/h, standard dry) * 1e-6."""
    return c_std_dry_mg_m3 * q_std_dry_m3_h * 1e-6


# --- configuration -----------------------------------------------------------------------------------------------
REF = re.compile(r"^(?:(?P<device>[A-Za-z0-9][A-Za-z0-9_.-]*)\.)?(?P<channel>[a-z][a-z0-9_]*)$")
Ref = float | str


@functools.lru_cache(maxsize=1024)  # a stack's few references, parsed again for every reading otherwise
def parse_ref(ref: str, default_device: str) -> tuple[str, str]:
    """`channel` (of the stack's own device) or `device.channel` -> (device, channel)."""
    m = REF.match(ref)
    if not m:
        raise ValueError(f"{ref!r}: give a number, a channel name, or device.channel")
    return m.group("device") or default_device, m.group("channel")


def _check_ref(v: Ref | None) -> Ref | None:
    if isinstance(v, str) and not REF.match(v):
        raise ValueError(f"{v!r}: give a number, a channel name, or device.channel")
    return v


class PollutantConfig(Strict):
    """One pollutant of a stack: where its concentration comes from and how the analyzer reports it.

    A unit of ppm/ppb (from the channel) is converted with the molar mass and is at standard conditions by
    definition; a mass unit (mg/m3, ug/m3) is converted from `conditions: actual` when the analyzer measures in
    the duct (in-situ particulate monitors do). `basis: wet` analyzers (hot-wet extractive, in-situ) are converted
    to dry gas with the stack's moisture.
    """

    channel: str | None = Field(None, description="Concentration channel (or device.channel).")
    no: str | None = Field(None, description="For NOx as NO2: the NO channel.")
    no2: str | None = Field(None, description="For NOx as NO2: the NO2 channel.")
    gas: str | None = Field(None, description="Molar-mass key for ppm units (default: the pollutant's name).")
    molar_mass: float | None = Field(None, gt=0, description="g/mol, overrides `gas`.")
    conditions: Literal["standard", "actual"] = "standard"
    basis: Literal["dry", "wet"] = "dry"
    zs: bool = Field(True, description="Derive the reference-O2 (converted) concentration <name>_zs.")
    rate: bool = Field(True, description="Derive the emission rate <name>_rate (kg/h) when the flow is known.")

    _refs = field_validator("channel", "no", "no2")(_check_ref)

    @model_validator(mode="after")
    def _source(self) -> PollutantConfig:
        if (self.channel is None) == (self.no is None and self.no2 is None):
            raise ValueError("give channel, or no and no2 (NOx as NO2 = NO * 1.53 + NO2)")
        if (self.no is None) != (self.no2 is None):
            raise ValueError("NOx as NO2 needs both no and no2")
        if self.gas is not None and self.gas not in MOLAR_MASS:
            raise ValueError(f"unknown gas {self.gas!r} (known: {', '.join(MOLAR_MASS)}); or give molar_mass")
        return self


class StackConfig(Strict):
    """Site-file section `stacks` (a list): one flue and the channels that feed its regulatory values.

    Derived channels are added to the readings of `device`: <pollutant>_std (mg/m3, standard dry),
    <pollutant>_zs (mg/m3 at reference O2), <pollutant>_rate (kg/h), flow_std (m3/h, standard dry), and o2_dry
    (%) when O2 is measured wet. Inputs are a channel of `device`, `device.channel` of another device (its latest
    reading, if not older than max_input_age_s), or a number (a fixed value in the unit given below).
    """

    device: str = Field(description="The device whose readings carry the derived channels (usually the analyzer).")
    name: str | None = Field(None, description="Name of the stack (default: the device's).")
    boiler: BoilerType | None = Field(None, description="Sets the reference O2: coal 9, oil_gas 3.5, "
                                      "coal_power 6, gas_turbine 15 (%).")
    reference_o2: float | None = Field(None, ge=0, lt=21, description="Reference O2 (%), overrides `boiler`.")
    o2_guard: float = Field(19.0, gt=0, lt=21, description="At or above this O2 (%, dry) there is no Zs value.")
    guard_flag: Flag = Field(Flag.F, description="Flag of a Zs value withheld by the guard (F: stopped).")
    o2: Ref | None = Field(None, description="O2 (%).")
    o2_basis: Literal["dry", "wet"] = "dry"
    moisture: Ref | None = Field(None, description="Flue-gas moisture Xsw (% volume); needed for wet inputs.")
    temperature: Ref | None = Field(None, description="Flue-gas temperature (C).")
    static_pressure: Ref | None = Field(None, description="Flue static (gauge) pressure Ps (kPa, or the channel's).")
    ambient_pressure: Ref = Field(101.325, description="Atmospheric pressure Ba (kPa, or the channel's unit).")
    velocity: Ref | None = Field(None, description="Flue-gas velocity (m/s).")
    area_m2: float | None = Field(None, gt=0, description="Cross-section of the flue at the velocity probe.")
    flow: Ref | None = Field(None, description="A measured flow (m3/h) instead of velocity x area.")
    flow_conditions: Literal["standard", "actual"] = "standard"
    flow_basis: Literal["dry", "wet"] = "dry"
    pollutants: dict[str, PollutantConfig] = Field(default_factory=dict)
    max_input_age_s: float = Field(60.0, gt=0, description="Inputs from other devices older than this are missing.")
    zs_window_average: Literal["from_means", "of_values"] = Field(
        "from_means", description="A window's Zs average: its mean concentration converted with its mean O2 "
        "(from_means, HJ 75 / HJ 212 appendix D), or the mean of instantaneous Zs values (of_values).")

    _refs = field_validator("o2", "moisture", "temperature", "static_pressure", "ambient_pressure", "velocity",
                            "flow")(_check_ref)

    @field_validator("pollutants")
    @classmethod
    def _names(cls, v: dict[str, PollutantConfig]) -> dict[str, PollutantConfig]:
        for name in v:
            if not re.match(r"^[a-z][a-z0-9_]*$", name):
                raise ValueError(f"pollutant {name!r}: snake_case (it prefixes channel names)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        ref = self.effective_reference_o2
        if self.o2 is not None and ref is None and any(p.zs for p in self.pollutants.values()):
            raise ValueError("reference O2 unknown: give boiler (coal, oil_gas, coal_power, gas_turbine) "
                             "or reference_o2")
        if ref is not None and ref >= self.o2_guard:
            raise ValueError(f"o2_guard {self.o2_guard:g} must be above the reference O2 {ref:g}")
        if self.velocity is not None and self.area_m2 is None:
            raise ValueError("velocity needs area_m2 (flue cross-section) to give a flow")
        if self.flow is not None and self.velocity is not None:
            raise ValueError("give flow or velocity (with area_m2), not both")
        wet = self.o2_basis == "wet" or self.flow_basis == "wet" or any(
            p.basis == "wet" for p in self.pollutants.values())
        if (wet or self.velocity is not None) and self.moisture is None:
            raise ValueError("wet-basis inputs and velocity flows need moisture (% volume, a channel or a number)")
        actual = self.flow_conditions == "actual" or self.velocity is not None or any(
            p.conditions == "actual" for p in self.pollutants.values())
        if actual and (self.temperature is None or self.static_pressure is None):
            raise ValueError("actual-condition inputs need temperature and static_pressure")
        return self

    @property
    def effective_reference_o2(self) -> float | None:
        if self.reference_o2 is not None:
            return self.reference_o2
        return BOILER_DEFAULTS[self.boiler].reference_o2 if self.boiler else None

    @property
    def stack_name(self) -> str:
        return self.name or self.device

    def inputs(self) -> list[tuple[str, str]]:
        """Every (device, channel) this stack reads."""
        refs: list[Ref | None] = [self.o2, self.moisture, self.temperature, self.static_pressure,
                                  self.ambient_pressure, self.velocity, self.flow]
        for p in self.pollutants.values():
            refs += [p.channel, p.no, p.no2]
        return [parse_ref(r, self.device) for r in refs if isinstance(r, str)]


# --- derivation with flags ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Term:
    """A value on its way through the formulas, with the worst flag of everything it came from."""

    value: float | None
    flag: Flag = Flag.N
    note: str = ""


def apply(fn: Callable[..., float], *terms: Term) -> Term:
    """fn over the values; the worst flag of all inputs; None (with a D flag and the reason) if fn refuses."""
    flag = worst_flag(*[t.flag for t in terms])
    for missing in terms:
        if missing.value is None:
            return Term(None, flag if flag is not Flag.N else Flag.B, missing.note or "input missing")
    try:
        return Term(fn(*[t.value for t in terms]), flag)
    except O2GuardError:
        raise
    except CemsError as exc:
        return Term(None, worst_flag(flag, Flag.D), str(exc))


CONSTANT_UNITS = {"o2": "%", "moisture": "%", "temperature": "C", "static_pressure": "kPa",
                  "ambient_pressure": "kPa", "velocity": "m/s", "flow": "m3/h"}


class _Inputs:
    """Looks up a stack's inputs in its own reading and the latest readings of other devices."""

    def __init__(self, stack: StackConfig, reading: DeviceReading, others: Mapping[str, DeviceReading]):
        self.stack = stack
        self.reading = reading
        self.others = others
        self.max_age_ms = stack.max_input_age_s * 1000

    def raw(self, what: str, ref: Ref | None) -> tuple[Term, str]:
        """(term, unit) of an input; a missing one is a B term saying why."""
        if ref is None:
            return Term(None, Flag.B, f"{what} not configured"), ""
        if not isinstance(ref, str):
            return Term(float(ref)), CONSTANT_UNITS.get(what, "")
        device, channel = parse_ref(ref, self.stack.device)
        src = self.reading if device == self.reading.device else self.others.get(device)
        if src is None:
            return Term(None, Flag.B, f"no reading from {device} yet"), ""
        if abs(self.reading.ts - src.ts) > self.max_age_ms:
            return Term(None, Flag.B, f"{device}.{channel} is {abs(self.reading.ts - src.ts) / 1000:g} s old"), ""
        cv = src.values.get(channel)
        if cv is None:
            return Term(None, Flag.B, f"{device} has no channel {channel}"), ""
        if not isinstance(cv.value, (int, float)) or isinstance(cv.value, bool):
            return Term(None, cv.flag if cv.flag is not Flag.N else Flag.D,
                        cv.note or f"{device}.{channel} has no number"), cv.unit
        return Term(float(cv.value), cv.flag), cv.unit

    def scaled(self, what: str, ref: Ref | None, convert: Callable[[float, str], float | None]) -> Term:
        term, unit = self.raw(what, ref)
        if term.value is None:
            return term
        v = convert(term.value, unit)
        if v is None:
            return Term(None, worst_flag(term.flag, Flag.D), f"{what}: unit {unit!r} cannot be used")
        return Term(v, term.flag)


def _pa(v: float, unit: str) -> float | None:
    return units.to_pa(v, unit)


def _pct(v: float, unit: str) -> float | None:
    return units.to_percent(v, unit)


def _same(expected: str) -> Callable[[float, str], float | None]:
    def conv(v: float, unit: str) -> float | None:
        return v if units.norm(unit) == expected else None

    return conv


class StackCalculator:
    """The derived channels of one stack for one reading."""

    def __init__(self, stack: StackConfig):
        self.stack = stack

    def derive(self, reading: DeviceReading, others: Mapping[str, DeviceReading] | None = None,
               ) -> dict[str, ChannelValue]:
        s = self.stack
        inp = _Inputs(s, reading, others or {})
        out: dict[str, ChannelValue] = {}
        moisture = inp.scaled("moisture", s.moisture, _pct)
        temp = inp.scaled("temperature", s.temperature, units.to_celsius)
        ps = inp.scaled("static_pressure", s.static_pressure, _pa)
        ba = inp.scaled("ambient_pressure", s.ambient_pressure, _pa)

        o2_dry: Term | None = None
        if s.o2 is not None:
            o2 = inp.scaled("o2", s.o2, _pct)
            if s.o2_basis == "wet":
                o2_dry = apply(wet_to_dry, o2, moisture)
                out["o2_dry"] = _cv(o2_dry, "%")
            else:
                o2_dry = o2

        flow: Term | None = None
        if s.flow is not None:
            q = inp.scaled("flow", s.flow, _same("m3/h"))
            fc, fb = s.flow_conditions, s.flow_basis
            needs = [q]
            if fc == "actual":
                needs += [temp, ba, ps]
            if fb == "wet":
                needs.append(moisture)

            def conv(qv: float, *rest: float) -> float:
                it = iter(rest)
                t = next(it) if fc == "actual" else 0.0
                b = next(it) if fc == "actual" else P0_PA
                p = next(it) if fc == "actual" else 0.0
                x = next(it) if fb == "wet" else 0.0
                return flow_to_std_dry(qv, t, b, p, x, fc, fb)

            flow = apply(conv, *needs)
        elif s.velocity is not None and s.area_m2 is not None:
            v = inp.scaled("velocity", s.velocity, _same("m/s"))
            area = s.area_m2
            flow = apply(lambda vv, t, b, p, x: flow_std_dry(area, vv, t, b, p, x), v, temp, ba, ps, moisture)
        if flow is not None:
            out["flow_std"] = _cv(flow, "m3/h")

        ref = s.effective_reference_o2
        for name, p in s.pollutants.items():
            if p.channel is not None:
                conc = self._concentration(inp, name, p, p.channel, p.gas or name, moisture, temp, ba, ps)
            else:
                assert p.no is not None and p.no2 is not None
                no = self._concentration(inp, name, p, p.no, "no", moisture, temp, ba, ps)
                no2 = self._concentration(inp, name, p, p.no2, "no2", moisture, temp, ba, ps)
                conc = apply(nox_as_no2, no, no2)
            out[f"{name}_std"] = _cv(conc, "mg/m3")
            if p.zs and o2_dry is not None and ref is not None:
                out[f"{name}_zs"] = _cv(self._zs(conc, o2_dry, ref), "mg/m3")
            if p.rate and flow is not None:
                out[f"{name}_rate"] = _cv(apply(emission_rate_kg_h, conc, flow), "kg/h")
        return out

    def _concentration(self, inp: _Inputs, name: str, p: PollutantConfig, ref: str, gas: str, moisture: Term,
                       temp: Term, ba: Term, ps: Term) -> Term:
        """mg/m3 at standard conditions on dry gas."""
        term, unit = inp.raw(name, ref)
        if term.value is None:
            return term
        if units.is_mixing_ratio(unit):
            mass = p.molar_mass if p.molar_mass is not None and gas not in ("no", "no2") else MOLAR_MASS.get(gas)
            if mass is None:
                return Term(None, worst_flag(term.flag, Flag.D), f"{name}: no molar mass for {gas!r} (give molar_mass)")
            ppm = term.value * units.VOLUME_MIXING[units.norm(unit).lower()]
            std = Term(ppm_to_mg_m3(ppm, mass), term.flag)
        else:
            mg = units.convert(term.value, unit, "mg/m3")
            if mg is None:
                return Term(None, worst_flag(term.flag, Flag.D), f"{name}: unit {unit!r} is not a concentration")
            std = Term(mg, term.flag)
            if p.conditions == "actual":
                std = apply(actual_to_standard, std, temp, ba, ps)
        if p.basis == "wet":
            std = apply(wet_to_dry, std, moisture)
        return std

    def _zs(self, conc: Term, o2_dry: Term, ref: float) -> Term:
        guard = self.stack.o2_guard
        try:
            return apply(lambda c, o: reference_o2(c, o, ref, guard), conc, o2_dry)
        except O2GuardError as exc:
            return Term(None, worst_flag(conc.flag, o2_dry.flag, self.stack.guard_flag), str(exc))


def _cv(t: Term, unit: str) -> ChannelValue:
    v = None if t.value is None else round(t.value, 6)
    return ChannelValue(v, unit, t.flag, t.note)


class StackDeriver:
    """The CEMS stage: remembers the latest reading of every device a stack reads, and adds the derived channels
    to each reading of a stack's own device. Deterministic in log order; after a restart, replaying the last
    max_input_age_s of readings restores the remembered inputs."""

    def __init__(self, stacks: list[StackConfig]):
        self.by_device = {s.device: StackCalculator(s) for s in stacks}
        self._watched = {dev for s in stacks for dev, _ in s.inputs()}
        self._latest: dict[str, DeviceReading] = {}

    def apply(self, reading: DeviceReading) -> DeviceReading:
        """Add the derived channels to `reading` when it is a stack's device (in place; returned)."""
        if reading.device in self._watched:
            self._latest[reading.device] = reading
        calc = self.by_device.get(reading.device)
        if calc is not None:
            for ch, cv in calc.derive(reading, self._latest).items():
                reading.values.setdefault(ch, cv)
        return reading
