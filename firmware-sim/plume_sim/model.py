"""A device's values: which signal feeds each register, the register's `sim:` hints, its range and quantization.

`DeviceModel.evaluate(t)` is a pure function of (seed, site, device, channel, t): the simulator's determinism and
its restart-reproducibility rest on that.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from gateway.acquisition.codec import decode, encode, exact_integer
from gateway.profile import DataType, RegisterSpec
from gateway.site.model import ResolvedDevice
from plume_sim.signals import SIGNALS, Ctx

HINT_KEYS = {
    "constant": "serve this value, always",
    "signal": "the named signal to serve instead of the one the channel name picks",
    "base": "re-centre the signal: its nominal level becomes this value",
    "amplitude": "re-scale the signal: its nominal swing becomes this value",
    "period_s": "time scale of the generic random walk (default 900)",
    "area_m2": "flue cross-section for the flow signal (default 3.14)",
}
Value = float | str


class HintError(ValueError):
    """`sim:` hints that cannot be used; `problems` are one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Hint:
    constant: Value | None = None
    signal: str | None = None
    base: float | None = None
    amplitude: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


def parse_hint(raw: Mapping[str, Any] | None, where: str, problems: list[str]) -> Hint:
    if not raw:
        return Hint()
    unknown = sorted(set(raw) - set(HINT_KEYS))
    if unknown:
        problems.append(f"{where}.sim: unknown key(s) {', '.join(unknown)} (known: {', '.join(HINT_KEYS)})")
    signal = raw.get("signal")
    if signal is not None and signal not in SIGNALS:
        problems.append(f"{where}.sim.signal: unknown signal {signal!r} (known: {', '.join(sorted(SIGNALS))})")
        signal = None
    numbers: dict[str, float | None] = {}
    for key in ("base", "amplitude", "period_s", "area_m2"):
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            problems.append(f"{where}.sim.{key}: must be a number, not {v!r}")
            v = None
        numbers[key] = None if v is None else float(v)
    period = numbers["period_s"]
    if period is not None and period <= 0:
        problems.append(f"{where}.sim.period_s: must be above 0")
    constant = raw.get("constant")
    if constant is not None and (isinstance(constant, bool) or not isinstance(constant, int | float | str)):
        problems.append(f"{where}.sim.constant: must be a number or a string, not {constant!r}")
        constant = None
    params = {k: numbers[k] for k in ("period_s", "area_m2") if numbers[k] is not None}
    return Hint(
        # an int stays an int: an exact 64-bit channel serves it as it is (a float holds integers up to 2^53)
        constant=(constant if isinstance(constant, int) else float(constant)) if isinstance(constant, int | float)
        else constant,
        signal=signal,
        base=numbers["base"],
        amplitude=numbers["amplitude"],
        params=params,
    )


def bounds(spec: RegisterSpec) -> tuple[float, float]:
    """The range a generic signal wanders in: the register's min..max, else its linear span, else 0..100."""
    lo, hi = spec.min, spec.max
    if spec.linear is not None:
        lo = spec.linear.eng_min if lo is None else lo
        hi = spec.linear.eng_max if hi is None else hi
    if lo is None and hi is None:
        return 0.0, 100.0
    if lo is None:
        assert hi is not None
        lo = min(0.0, hi - 100.0)
    if hi is None:
        hi = lo + 100.0
    return lo, hi


def quantize(spec: RegisterSpec, value: Value) -> float | str | None:
    """Exactly what the gateway decodes from the words that encode `value` (None for NaN)."""
    return decode(spec, encode(spec, value)).value


class DeviceModel:
    """Maps each register of one device to a signal and evaluates them at a given time."""

    def __init__(self, device: ResolvedDevice, *, seed: int, site: str, tz: ZoneInfo):
        self.name = device.name
        self.seed = seed
        self.site = site
        self.tz = tz
        self.specs: dict[str, RegisterSpec] = {r.channel: r for r in device.profile.registers}
        problems: list[str] = []
        self.hints = {
            r.channel: parse_hint(r.sim, f"{device.name}.{r.channel}", problems) for r in device.profile.registers
        }
        if problems:
            raise HintError(problems)

    def signal_for(self, spec: RegisterSpec) -> str:
        hint = self.hints.get(spec.channel, Hint())
        if hint.signal:
            return hint.signal
        if spec.channel in SIGNALS:
            return spec.channel
        return "toggle" if spec.type is DataType.bits else "walk"

    def evaluate(self, t: float, channels: Iterable[str] | None = None, run_origin: float | None = None
                 ) -> dict[str, Value]:
        """Served engineering values (inside min..max) of the given channels (all by default) at time t."""
        ev = _Evaluation(self, t, run_origin)
        names = self.specs.keys() if channels is None else channels
        return {ch: ev.served(ch) for ch in names}


class _Evaluation:
    """One instant: caches values so derived channels see exactly what their sources serve."""

    def __init__(self, model: DeviceModel, t: float, run_origin: float | None):
        self.m = model
        self.t = t
        self.run_origin = run_origin
        self.values: dict[str, Value] = {}
        self.quantized: dict[str, float] = {}
        self.raw: dict[str, float] = {}
        self.busy: set[str] = set()

    def ctx(self, channel: str, params: Mapping[str, Any], span: tuple[float, float]) -> Ctx:
        m = self.m
        return Ctx(m.seed, m.site, m.name, self.t, m.tz, self.get, params, span, channel, self.run_origin)

    def get(self, name: str) -> float:
        """Another value of this device: the served, quantized one when the device has that channel."""
        if name in self.m.specs and name not in self.busy:
            if name not in self.quantized:
                q = quantize(self.m.specs[name], self.served(name))
                self.quantized[name] = q if isinstance(q, float) else math.nan
            return self.quantized[name]
        if name not in self.raw:
            self.raw[name] = SIGNALS[name].fn(self.ctx(name, {}, (0.0, 100.0)))
        return self.raw[name]

    def served(self, channel: str) -> Value:
        if channel in self.values:
            return self.values[channel]
        spec = self.m.specs[channel]
        hint = self.m.hints[channel]
        self.busy.add(channel)
        try:
            value = self._compute(spec, hint)
        finally:
            self.busy.discard(channel)
        self.values[channel] = value
        return value

    def _compute(self, spec: RegisterSpec, hint: Hint) -> Value:
        if spec.type is DataType.string:
            return str(hint.constant) if hint.constant is not None else f"SIM-{self.m.name}"
        if isinstance(hint.constant, str):
            return hint.constant
        if hint.constant is not None:
            value = hint.constant
            if isinstance(value, int) and exact_integer(spec):
                return value
        else:
            name = self.m.signal_for(spec)
            span = bounds(spec)
            value = SIGNALS[name].fn(self.ctx(spec.channel, hint.params, span))
            if hint.base is not None or hint.amplitude is not None:
                if name == "walk":
                    b0, a0 = (span[0] + span[1]) / 2, 0.4 * (span[1] - span[0])
                else:
                    b0, a0 = SIGNALS[name].base, SIGNALS[name].amplitude
                base = b0 if hint.base is None else hint.base
                amp = a0 if hint.amplitude is None else hint.amplitude
                value = base + (value - b0) * (amp / a0 if a0 else 1.0)
        if spec.type is DataType.bits:
            return 1.0 if value >= 0.5 else 0.0
        return fit(spec, float(value))


def fit(spec: RegisterSpec, value: float) -> float:
    """Clamp to min..max so that the *decoded* value stays inside too (float32 and integer rounding)."""
    lo, hi = spec.min, spec.max
    if lo is not None and value <= lo:
        value = lo
        for _ in range(8):
            q = quantize(spec, value)
            if not isinstance(q, float) or q >= lo:
                break
            value = _step(spec, value, +1)
    if hi is not None and value >= hi:
        value = hi
        for _ in range(8):
            q = quantize(spec, value)
            if not isinstance(q, float) or q <= hi:
                break
            value = _step(spec, value, -1)
    return value


def _step(spec: RegisterSpec, value: float, direction: int) -> float:
    """The next representable value in a direction: one float32 ulp, or one raw count."""
    if spec.type in (DataType.f32, DataType.f64):
        return math.nextafter(value, direction * math.inf) if spec.type is DataType.f64 else _f32_next(value, direction)
    if spec.linear is not None:
        lin = spec.linear
        return value + direction * (lin.eng_max - lin.eng_min) / (lin.raw_max - lin.raw_min)
    return value + direction * abs(spec.scale)


def _f32_next(value: float, direction: int) -> float:
    bits = struct.unpack(">i", struct.pack(">f", value))[0]
    bits += direction if bits >= 0 else -direction
    return float(struct.unpack(">f", struct.pack(">i", bits))[0])
