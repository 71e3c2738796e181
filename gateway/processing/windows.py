"""Time windows: 1-minute, N-minute, hourly and daily aggregates per device and channel, on the site's local clock.

How an aggregate is built (HJ 212 / HJ 75):
- 1m from the raw values; every other window from the closed 1-minute aggregates under it (each minute weighs
  the same, as HJ 75 builds hours from minute data), except the day, which is built from the hours.
- `n` counts what is under the window (raw values for 1m, minutes for N-minute windows and hours, hours for the
  day); `valid` counts those that are N (a valid raw value, a valid minute, a valid hour).
- The flag is N when enough is valid: a minute when >= 75 % of the values it EXPECTS are N (expected: 60 s /
  the device's poll interval, at least the kind's `minute_min_samples`, 12 for cems after HJ 212-2017 appendix
  D2.2, which also needs that many to have arrived), so a minute with one sample, the 16 s after a start or the
  44 s before a crash is not N; an N-minute window when
  >= 75 % of its minutes are valid (4 of 5, 12 of 15); an hour with >= 45 valid minutes; a day with >= 20 valid
  hours (all configurable). Missing minutes count against the window, so a window the gateway only half saw is not
  N. Otherwise the flag is the most frequent non-N flag underneath (ties: the more severe), or B when the window
  is short of data without any flagged value (nothing arrived).
- avg/min/max are over the measured values (N and T: an over-range value is a measurement above the range and is
  never averaged away) when there is any, else over all numeric ones (so a
  calibration hour still shows what was measured; its flag says it does not count). Wind direction (`deg`) is
  averaged as a vector, sound levels (`dB...`) as energy (Leq), everything else arithmetically.
- Rates (`kg/h`, `m3/h`, ...) also get a cumulative total `cou` (kg, m3): minute average x minute length, summed.
- A window closes when a reading of the device at or after its end arrives, or when the site clock (the newest
  reading of any device, minus `lateness_s`) passes its end, so a silent device's windows close too, the same way
  live and in a replay; `advance(now)` does the same from a timer when no device reads at all. A window with no
  data at all is not emitted. Readings older than what is closed are late: counted, not used.
- `partial` marks a window whose start is before what the engine has seen ("history_from"): after a restart
  without history the first windows say so instead of passing half a window as a whole one.

Rebuilding after a restart: every open window lies in the local day of (site clock - lateness). So
`restore(aggregates)` takes the aggregates already in the log since `restore_since(last 1m end in the log)` (a local
midnight), marks them emitted and rebuilds the open windows from them; then the raw readings of each device from
`resume_from(device)` on (or from that midnight, for a device without a closed minute) are fed again. The result
equals an uninterrupted run, without a window emitted twice (property-tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.core.localtime import Period, parse_period, window_bounds
from gateway.core.model import FLAG_SEVERITY, DeviceReading, Flag
from gateway.core.patterns import matches
from gateway.processing import units

REQUIRED_PERIODS = ("1m", "1h", "1d")


class WindowsConfig(BaseModel):
    """Site-file section `windows`."""

    model_config = ConfigDict(extra="forbid")

    periods: list[str] = Field(default_factory=lambda: ["1m", "5m", "10m", "15m", "1h", "1d"],
                               description="Windows to compute; 1m, 1h and 1d are always needed.")
    devices: list[str] = Field(default_factory=lambda: ["*"], description="Device name patterns.")
    exclude: list[str] = Field(default_factory=list, description="Channel patterns not aggregated (run_hours...).")
    valid_fraction: float = Field(0.75, gt=0, le=1, description="Share of N values that makes a minute (or an "
                                  "N-minute window) N.")
    hour_min_valid_minutes: int = Field(45, ge=1, le=60)
    day_min_valid_hours: int = Field(20, ge=1, le=24)
    lateness_s: float = Field(60.0, ge=0, le=3600, description="How far a device's poll time may lag the newest "
                              "reading of the site before its windows are closed without it.")
    minute_min_samples: dict[str, int] = Field(
        default_factory=lambda: {"cems": 12},
        description="Per device kind: the instantaneous values a minute needs at least (HJ 212-2017 appendix D2.2: "
                    "n >= 12, at most 5 s apart, for flue-gas CEMS); the minute expects max(this, 60 s / poll "
                    "interval) samples.")

    @field_validator("periods")
    @classmethod
    def _periods(cls, v: list[str]) -> list[str]:
        names = [parse_period(p).name for p in v]
        missing = [p for p in REQUIRED_PERIODS if p not in names]
        if missing:
            raise ValueError(f"{', '.join(missing)} missing: 1m, 1h and 1d are always needed (HJ 212 minute, "
                             "hour and day data; longer windows are built from them)")
        return list(dict.fromkeys(names))


@dataclass(slots=True)
class ChannelAggregate:
    unit: str
    min: float | None
    avg: float | None
    max: float | None
    n: int
    valid: int
    flag: Flag
    cou: float | None = None
    cou_unit: str = ""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"unit": self.unit, "min": self.min, "avg": self.avg, "max": self.max, "n": self.n,
                             "valid": self.valid, "flag": self.flag.value}
        if self.cou is not None:
            d["cou"] = self.cou
            d["cou_unit"] = self.cou_unit
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> ChannelAggregate:
        return ChannelAggregate(d["unit"], d["min"], d["avg"], d["max"], d["n"], d["valid"], Flag(d["flag"]),
                                d.get("cou"), d.get("cou_unit", ""))


@dataclass(slots=True)
class WindowAggregate:
    """One closed window of one device: every channel's aggregate. `start`/`end` are UTC ms, [start, end)."""

    site: str
    device: str
    kind: str
    window: str
    start: int
    end: int
    expected: int  # sub-periods of a complete window; for 1m the samples expected from the poll interval (0: unknown)
    partial: bool
    channels: dict[str, ChannelAggregate] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.device, self.window, self.start)

    @property
    def measurement(self) -> str:
        """InfluxDB measurement `<kind>_<window>` (dust_15m, cems_1h)."""
        return f"{self.kind}_{self.window}"

    def fields(self) -> dict[str, float | int | str]:
        """Flat fields: <ch>_avg, _min, _max, _n, _valid, _flag (+ _cou); None values left out."""
        out: dict[str, float | int | str] = {}
        for ch, a in self.channels.items():
            for suffix, v in (("avg", a.avg), ("min", a.min), ("max", a.max), ("cou", a.cou)):
                if v is not None:
                    out[f"{ch}_{suffix}"] = v
            out[f"{ch}_n"] = a.n
            out[f"{ch}_valid"] = a.valid
            out[f"{ch}_flag"] = a.flag.value
        return out

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "device": self.device, "kind": self.kind, "window": self.window,
                "start": self.start, "end": self.end, "expected": self.expected, "partial": self.partial,
                "channels": {ch: a.to_json() for ch, a in self.channels.items()}}

    @staticmethod
    def from_json(d: dict[str, Any]) -> WindowAggregate:
        return WindowAggregate(d["site"], d["device"], d["kind"], d["window"], d["start"], d["end"],
                               d["expected"], d["partial"],
                               {ch: ChannelAggregate.from_json(a) for ch, a in d["channels"].items()})


def mean_mode(unit: str) -> str:
    u = units.norm(unit)
    if u in ("deg", "°"):
        return "circular"
    if u.lower().startswith("db"):
        return "energy"
    return "linear"


class _Stats:
    """Running sums of one set of values (the measured ones, N and T, or all numeric ones). Sound levels sum their
    energy relative to the loudest level so far (`ref`): 10^(L/10) itself overflows above ~3,080 dB and vanishes
    below ~-3,230 dB, which a garbled register can say."""

    __slots__ = ("cnt", "hi", "lo", "ref", "s1", "s2")

    def __init__(self) -> None:
        self.cnt = 0
        self.s1 = 0.0
        self.s2 = 0.0
        self.lo: float | None = None
        self.hi: float | None = None
        self.ref: float | None = None

    def add(self, mode: str, avg: float, lo: float, hi: float) -> None:
        self.cnt += 1
        if mode == "circular":
            r = math.radians(avg)
            self.s1 += math.sin(r)
            self.s2 += math.cos(r)
        elif mode == "energy":
            ref = self.ref
            if ref is None or avg > ref:  # a new loudest level: the sum so far rescaled to it (it stays <= cnt)
                self.s1 = (self.s1 * 10.0 ** ((ref - avg) / 10.0) if ref is not None else 0.0) + 1.0
                self.ref = avg
            else:
                self.s1 += 10.0 ** ((avg - ref) / 10.0)
        else:
            self.s1 += avg
        self.lo = lo if self.lo is None or lo < self.lo else self.lo
        self.hi = hi if self.hi is None or hi > self.hi else self.hi

    def mean(self, mode: str) -> float | None:
        if self.cnt == 0:
            return None
        if mode == "circular":
            if math.hypot(self.s1, self.s2) < 1e-9 * self.cnt:
                return None  # directions cancel out: no mean direction
            return math.degrees(math.atan2(self.s1, self.s2)) % 360.0
        if mode == "energy":
            assert self.ref is not None
            return self.ref + 10.0 * math.log10(self.s1 / self.cnt)
        return self.s1 / self.cnt


class _Acc:
    __slots__ = ("all", "cou", "flags", "linear", "mode", "n", "unit", "valid", "vals")

    def __init__(self, unit: str):
        self.unit = unit
        self.mode = mean_mode(unit)
        self.linear = self.mode == "linear"
        self.n = 0
        self.valid = 0
        self.flags: dict[Flag, int] | None = None  # counts of flags other than N; made at the first one
        self.vals = _Stats()
        self.all = _Stats()
        self.cou: float | None = None

    def add(self, avg: float | None, lo: float | None, hi: float | None, flag: Flag, cou: float | None) -> None:
        self.n += 1
        numeric = avg is not None and lo is not None and hi is not None
        if flag is not Flag.N or not numeric:
            self._count(flag if flag is not Flag.N else Flag.B)
        if numeric:
            assert avg is not None and lo is not None and hi is not None
            self.all.add(self.mode, avg, lo, hi)
            if flag is Flag.N or flag is Flag.T:  # over range is measured: never averaged away
                self.vals.add(self.mode, avg, lo, hi)
            if flag is Flag.N:
                self.valid += 1
        if cou is not None:
            self.cou = cou if self.cou is None else self.cou + cou

    def _count(self, flag: Flag) -> None:
        """One more value with `flag` (a dict only once a channel has a flag other than N: most never do, and
        a channel of a 1,000-channel site keeps five of these accumulators)."""
        flags = self.flags
        if flags is None:
            self.flags = {flag: 1}
        else:
            flags[flag] = flags.get(flag, 0) + 1

    def add_raw(self, v: float | None, flag: Flag) -> None:
        """`add(v, v, v, flag, None)` for one raw value (a minute's input), with the sums of an arithmetic mean
        inlined: this runs for every value of every poll."""
        self.n += 1
        if v is None:
            self._count(flag if flag is not Flag.N else Flag.B)
            return
        if flag is not Flag.N:
            self._count(flag)
        if self.mode != "linear":
            self.all.add(self.mode, v, v, v)
            if flag is Flag.N or flag is Flag.T:
                self.vals.add(self.mode, v, v, v)
            if flag is Flag.N:
                self.valid += 1
            return
        for s in (self.all, self.vals) if flag is Flag.N or flag is Flag.T else (self.all,):
            s.cnt += 1
            s.s1 += v
            if s.lo is None or v < s.lo:
                s.lo = v
            if s.hi is None or v > s.hi:
                s.hi = v
        if flag is Flag.N:
            self.valid += 1

    def result(self, required: int, minute_h: float | None, min_n: int = 0) -> ChannelAggregate:
        s = self.vals if self.vals.cnt else self.all
        avg = s.mean(self.mode)
        if self.n > 0 and self.n >= min_n and self.valid >= required:
            flag = Flag.N
        elif self.flags:
            counts = self.flags
            flag = max(counts, key=lambda f: (counts[f], FLAG_SEVERITY[f]))
        else:
            flag = Flag.B
        cou, cou_unit = self.cou, ""
        per = units.period_unit(self.unit)
        if per is not None:
            cou_unit = per[0]
            if minute_h is not None:  # a minute: its total is its average rate times its length
                cou = None if avg is None else avg * minute_h * 3600.0 / per[1]
        return ChannelAggregate(self.unit, s.lo, avg, s.hi, self.n, self.valid, flag, cou, cou_unit)


@dataclass(slots=True)
class _Open:
    start: int
    end: int
    partial: bool
    accs: dict[str, _Acc] = field(default_factory=dict)


@dataclass(slots=True)
class _Device:
    kind: str
    coverage: int | None = None
    open: dict[str, _Open] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)  # end of the last closed window, per period


def _finite(v: object) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


class WindowEngine:
    """Incremental, deterministic aggregation of one site's readings. Feed readings in log order; every call
    returns the windows it closed (oldest first)."""

    def __init__(self, config: WindowsConfig | None = None, site: str = "", tz: ZoneInfo | str = "UTC",
                 history_from: int | None = None, sampling: Mapping[str, float] | None = None,
                 finish: Callable[[WindowAggregate], None] | None = None):
        self.config = config or WindowsConfig()
        self._finish = finish  # adjusts each closed window before it is emitted (converted averages)
        self.sampling = dict(sampling or {})  # device -> poll interval (s): what a minute expects
        self.site = site
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.history_from = history_from
        self.periods: list[Period] = sorted((parse_period(p) for p in self.config.periods),
                                            key=lambda p: (p.is_day, p.ms or 0))
        self._order = {p.name: i for i, p in enumerate(self.periods)}
        self._period = {p.name: p for p in self.periods}
        self._parents: dict[str, list[Period]] = {
            "1m": [p for p in self.periods if p.name not in ("1m", "1d")],
            "1h": [p for p in self.periods if p.name == "1d"],
        }
        self._devices: dict[str, _Device] = {}
        self._restored: set[tuple[str, str, int]] = set()
        self._excluded: dict[str, bool] = {}
        self._lateness_ms = int(self.config.lateness_s * 1000)
        self._next_close = math.inf
        self.clock: int | None = None  # the newest reading's time
        self.late = 0

    # --- input ----------------------------------------------------------------------------------------------
    def feed(self, reading: DeviceReading) -> list[WindowAggregate]:
        if not matches(reading.device, self.config.devices):
            return []
        dev = self._device(reading.device, reading.kind)
        dev.kind = reading.kind
        if dev.coverage is None:
            dev.coverage = self.history_from if self.history_from is not None else reading.ts
        ts = reading.ts
        out: list[WindowAggregate] = []
        if self.clock is None or ts > self.clock:
            self.clock = ts
        self._sweep(self.clock - self._lateness_ms, out)
        minute = dev.open.get("1m")
        if ts < dev.done.get("1m", ts) or (minute is not None and ts < minute.start):
            self.late += 1
            return out
        self._advance(dev, reading.device, ts, out)
        minute = dev.open.get("1m")
        if minute is None:
            minute = self._open(dev, "1m", ts)
        excluded, accs, isfinite, normal = self._excluded, minute.accs, math.isfinite, Flag.N
        for ch, cv in reading.values.items():
            value = cv.value
            acc = accs.get(ch)  # a channel with an accumulator is aggregated: no exclusion to look up
            if acc is None:
                if isinstance(value, str):
                    continue
                ex = excluded.get(ch)
                if ex is None:
                    ex = self._exclude(ch)
                if ex:
                    continue
                acc = accs[ch] = _Acc(cv.unit)
            if type(value) is float:
                if value - value == 0.0 and cv.flag is normal and acc.linear:  # finite: inf - inf is NaN
                    # add_raw of a valid value, inlined: the sums of both sets (all and measured) move alike
                    acc.n += 1
                    acc.valid += 1
                    s = acc.all
                    s.cnt += 1
                    s.s1 += value
                    if s.lo is None or value < s.lo:
                        s.lo = value
                    if s.hi is None or value > s.hi:
                        s.hi = value
                    s = acc.vals
                    s.cnt += 1
                    s.s1 += value
                    if s.lo is None or value < s.lo:
                        s.lo = value
                    if s.hi is None or value > s.hi:
                        s.hi = value
                    continue
                acc.add_raw(value if isfinite(value) else None, cv.flag)
            elif not isinstance(value, str):  # text is not aggregated
                acc.add_raw(_finite(value), cv.flag)
        return out

    def feed_many(self, readings: Iterable[DeviceReading]) -> list[WindowAggregate]:
        out: list[WindowAggregate] = []
        for r in readings:
            out += self.feed(r)
        return out

    def advance(self, now: int) -> list[WindowAggregate]:
        """Close every window that ended at or before `now` (devices gone silent). Call it from a timer with a
        `now` a little behind the wall clock (the commit interval), so no reading still on its way is late."""
        out: list[WindowAggregate] = []
        self._sweep(now, out)
        return out

    def _sweep(self, now: int, out: list[WindowAggregate]) -> None:
        if now < self._next_close:
            return
        nxt = math.inf
        for name, dev in self._devices.items():
            self._advance(dev, name, now, out)
            for o in dev.open.values():
                nxt = min(nxt, o.end)
        self._next_close = nxt

    # --- restart --------------------------------------------------------------------------------------------
    def restore(self, aggregates: Iterable[WindowAggregate], history_from: int | None = None,
                ) -> list[WindowAggregate]:
        """Rebuild the open windows from aggregates already in the log (not emitted again). Returns the windows
        they complete that are not among them (closed before a crash, never written)."""
        if history_from is not None:
            self.history_from = history_from
        items = [a for a in aggregates if a.window in self._order and matches(a.device, self.config.devices)]
        items.sort(key=lambda a: (a.end, self._order[a.window]))
        self._restored.update((a.device, a.window, a.start) for a in items)
        out: list[WindowAggregate] = []
        for a in items:
            dev = self._device(a.device, a.kind)
            if dev.coverage is None:
                dev.coverage = self.history_from if self.history_from is not None else a.start
            if a.start < dev.done.get(a.window, a.start):
                continue
            dev.done[a.window] = max(dev.done.get(a.window, a.end), a.end)
            opened = dev.open.get(a.window)
            if opened is not None and opened.start < a.end:
                del dev.open[a.window]  # the real aggregate replaces a rebuild
            for parent in self._parents.get(a.window, []):
                self._feed_child(dev, a.device, parent, a, out)
        return out

    def restore_since(self, last_minute_end: int) -> int:
        """The local midnight from which aggregates must be given to `restore`, given the end of the newest 1m
        aggregate in the log (the site clock had passed it, so every window still open lies in this day or later).
        """
        return window_bounds(last_minute_end - self._lateness_ms, self._period["1d"], self.tz)[0]

    def resume_from(self, device: str) -> int | None:
        """Raw readings of `device` from this instant on must be fed after `restore` (None: from the start)."""
        dev = self._devices.get(device)
        return None if dev is None else dev.done.get("1m")

    def expected_samples(self, device: str, kind: str) -> tuple[int, int]:
        """(samples a minute of `device` expects, samples it needs at least): max(60 s / poll interval, the
        kind's `minute_min_samples`) and that minimum. (0, 0) for a device whose poll interval is not known (a
        tool aggregating a log without its site file): its minutes are judged on what arrived."""
        interval = self.sampling.get(device)
        if interval is None or interval <= 0:
            return 0, 0
        min_n = self.config.minute_min_samples.get(kind, 0)
        return max(1, math.floor(60.0 / interval + 1e-9), min_n), min_n

    def open_windows(self, device: str) -> dict[str, tuple[int, int, bool]]:
        """What is open for `device`: period -> (start, end, partial)."""
        dev = self._devices.get(device)
        return {} if dev is None else {p: (o.start, o.end, o.partial) for p, o in dev.open.items()}

    # --- machinery ------------------------------------------------------------------------------------------
    def _device(self, name: str, kind: str) -> _Device:
        dev = self._devices.get(name)
        if dev is None:
            dev = self._devices[name] = _Device(kind)
        return dev

    def _exclude(self, ch: str) -> bool:
        ex = self._excluded.get(ch)
        if ex is None:
            ex = self._excluded[ch] = matches(ch, self.config.exclude)
        return ex

    def _open(self, dev: _Device, period: str, ts: int) -> _Open:
        start, end = window_bounds(ts, self._period[period], self.tz)
        partial = dev.coverage is not None and start < dev.coverage
        o = dev.open[period] = _Open(start, end, partial)
        self._next_close = min(self._next_close, end)
        return o

    def _advance(self, dev: _Device, name: str, now: int, out: list[WindowAggregate]) -> None:
        for p in self.periods:
            o = dev.open.get(p.name)
            if o is not None and o.end <= now:
                self._close(dev, name, p.name, out)

    def _required(self, period: str, o: _Open) -> tuple[int, int]:
        """(expected sub-periods, valid ones needed for N); 1m: computed per channel from its n."""
        cfg = self.config
        if period == "1h":
            return 60, cfg.hour_min_valid_minutes
        if period == "1d":
            return round((o.end - o.start) / 3_600_000), cfg.day_min_valid_hours
        minutes = self._period[period].minutes
        return minutes, math.ceil(cfg.valid_fraction * minutes - 1e-9)

    def _close(self, dev: _Device, name: str, period: str, out: list[WindowAggregate]) -> None:
        o = dev.open.pop(period)
        dev.done[period] = max(dev.done.get(period, o.end), o.end)
        channels: dict[str, ChannelAggregate] = {}
        if period == "1m":
            expected, min_n = self.expected_samples(name, dev.kind)
            f = self.config.valid_fraction
            for ch, acc in o.accs.items():
                need = max(1, math.ceil(f * max(acc.n, expected) - 1e-9))
                channels[ch] = acc.result(need, 1 / 60, min_n)
        else:
            expected, need = self._required(period, o)
            for ch, acc in o.accs.items():
                channels[ch] = acc.result(need, None)
        agg = WindowAggregate(self.site, name, dev.kind, period, o.start, o.end, expected, o.partial, channels)
        if self._finish is not None:
            self._finish(agg)
        out.append(agg)
        for parent in self._parents.get(period, []):
            self._feed_child(dev, name, parent, agg, out)

    def _feed_child(self, dev: _Device, name: str, parent: Period, child: WindowAggregate,
                    out: list[WindowAggregate]) -> None:
        p = parent.name
        po = dev.open.get(p)
        if po is not None and child.start >= po.end:
            self._close(dev, name, p, out)
            po = None
        if po is None:
            if child.start < dev.done.get(p, child.start):
                return  # that window is closed already (restored from the log)
            start, _ = window_bounds(child.start, parent, self.tz)
            if (name, p, start) in self._restored:
                return
            po = self._open(dev, p, child.start)
        elif child.start < po.start:
            return
        po.partial = po.partial or child.partial
        for ch, a in child.channels.items():
            acc = po.accs.get(ch)
            if acc is None:
                acc = po.accs[ch] = _Acc(a.unit)
            acc.add(a.avg, a.min, a.max, a.flag, a.cou)
        if child.end >= po.end:
            self._close(dev, name, p, out)
