"""The physics of the simulated site: one function per named signal, each a pure function of its context.

Weather (wind, temperature, humidity, pressure, rain) is shared by the whole site; dust and stack load belong to
each device. Derived channels are computed from the values the device actually serves (`ctx.get`), so the
relationships a gateway may check hold exactly after quantization: TSP > PM10 > PM2.5 > PM1, NOx = NO*1.53 + NO2,
the wind sector and Beaufort force agree with the served wind direction and speed, O2 falls as SO2 rises.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from plume_sim.noise import fractal, smooth, uniform

WORK_START_H, WORK_END_H = 7.0, 18.0  # construction working hours, site local time, Monday to Saturday
BURST_BUCKET_S = 600.0  # one chance of a dust-raising activity burst per 10 minutes
BEAUFORT_M_S = (0.3, 1.6, 3.4, 5.5, 8.0, 10.8, 13.9, 17.2, 20.8, 24.5, 28.5, 32.7)
RUN_HOURS_EPOCH = 1_700_000_000.0  # before the simulated analyzers' clocks start counting their own hours


@dataclass(slots=True)
class Ctx:
    """Everything a signal may look at: who, when, and the device's other values."""

    seed: int
    site: str
    device: str
    t: float
    tz: ZoneInfo
    get: Callable[[str], float]
    params: Mapping[str, Any] = field(default_factory=dict)
    bounds: tuple[float, float] = (0.0, 100.0)
    channel: str = ""
    run_origin: float | None = None
    _local: datetime | None = None

    def noise(self, name: str, period_s: float, octaves: int = 2) -> float:
        """Device-local noise in [-1, 1]."""
        return fractal(self.seed, f"{self.device}/{name}", self.t, period_s, octaves)

    def site_noise(self, name: str, period_s: float, octaves: int = 2) -> float:
        """Noise shared by every device of the site (weather)."""
        return fractal(self.seed, f"site:{self.site}/{name}", self.t, period_s, octaves)

    @property
    def local(self) -> datetime:
        if self._local is None:
            self._local = datetime.fromtimestamp(self.t, self.tz)
        return self._local

    @property
    def hour(self) -> float:
        lt = self.local
        return lt.hour + lt.minute / 60 + (lt.second + lt.microsecond / 1e6) / 3600

    def diurnal(self, peak_hour: float) -> float:
        """A 24 h cosine in [-1, 1], highest at peak_hour local time."""
        return math.cos(2 * math.pi * (self.hour - peak_hour) / 24)


Fn = Callable[[Ctx], float]


@dataclass(frozen=True, slots=True)
class Signal:
    """A named signal and its nominal level and swing (what `sim: {base, amplitude}` re-centre and re-scale)."""

    fn: Fn
    base: float
    amplitude: float


def clamp(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


# --- construction activity and dust -----------------------------------------------------------------------


def activity(c: Ctx) -> float:
    """Machines on site: 0 at night and on Sundays, a working baseline by day and deterministic bursts."""
    lt = c.local
    if lt.weekday() == 6 or not WORK_START_H <= c.hour < WORK_END_H:
        return 0.0
    level = 0.3 + 0.1 * c.noise("work", 1800)
    bucket = math.floor(c.t / BURST_BUCKET_S)
    for b in (bucket - 1, bucket):  # a burst may spill into the next bucket
        key = f"{c.device}/burst"
        if uniform(c.seed, key, b) >= 0.35:
            continue
        start = (b + 0.8 * uniform(c.seed, key + "/start", b)) * BURST_BUCKET_S
        length = (0.15 + 0.5 * uniform(c.seed, key + "/len", b)) * BURST_BUCKET_S
        x = (c.t - start) / length
        if 0.0 <= x <= 1.0:
            level += (0.5 + 2.5 * uniform(c.seed, key + "/size", b)) * math.sin(math.pi * x)
    return level


def pm10(c: Ctx) -> float:
    """Urban background (morning and evening peaks) + construction bursts + dust lifted by wind above 3 m/s."""
    background = 40 + 12 * c.diurnal(8) + 6 * math.cos(4 * math.pi * (c.hour - 8) / 24) + 12 * c.noise("bg", 10800)
    background = max(10.0, background)
    work = 35 * c.get("activity") * (1 + 0.3 * c.noise("work-dust", 60))
    wind = 6 * max(0.0, c.get("wind_speed") - 3) ** 1.5
    return background + work + wind


def pm25(c: Ctx) -> float:
    """The fine fraction of PM10: smaller when construction (coarse) dust dominates; always 2 below PM10."""
    p10 = c.get("pm10")
    fine = 0.5 + 0.1 * c.noise("fine", 7200) - 0.08 * min(1.0, c.get("activity") / 2)
    return max(0.0, min(p10 * fine, p10 - 2))


def pm1(c: Ctx) -> float:
    p25 = c.get("pm25")
    return max(0.0, min(p25 * (0.68 + 0.05 * c.noise("pm1", 3600)), p25 - 1))


def tsp(c: Ctx) -> float:
    """Total suspended particles: PM10 plus the coarse part, which construction raises most."""
    p10 = c.get("pm10")
    return p10 * (1.4 + 0.1 * c.noise("tsp", 3600)) + 8 + 25 * c.get("activity")


def cf1(atm: str) -> Fn:
    """PMS5003 'CF=1' values: equal to the atmospheric ones in clean air, higher above ~30 ug/m3."""

    def fn(c: Ctx) -> float:
        a = c.get(atm)
        return a if a < 30 else a + 0.5 * (a - 30)

    return fn


def _counts(c: Ctx) -> list[float]:
    """PMS5003 particle counts per 0.1 L beyond 0.3, 0.5, 1, 2.5, 5, 10 um (cumulative, so non-increasing)."""
    p1, p25, p10 = c.get("pm1"), c.get("pm25"), c.get("pm10")
    raw = [
        170 * p1 + 40,
        0.3 * (170 * p1 + 40),
        8 * p1 + 3 * (p25 - p1),
        0.6 * (p25 - p1) + 0.15 * (p10 - p25),
        0.25 * (p10 - p25),
        0.07 * (p10 - p25),
    ]
    out: list[float] = []
    for x in raw:
        out.append(max(0.0, min(x, out[-1]) if out else x))
    return out


def count(i: int) -> Fn:
    return lambda c: _counts(c)[i]


# --- weather (site-wide) ---------------------------------------------------------------------------------


def wind_speed(c: Ctx) -> float:
    """Calm nights, breezy afternoons, windy days now and then, gusts."""
    day = 1 + 0.9 * (c.site_noise("windy-day", 86400, 1) + 1) / 2
    ws = 2.2 + 1.2 * c.diurnal(14.5) + 1.2 * c.site_noise("wind", 1800) + 0.5 * c.site_noise("gust", 20, 1)
    return max(0.0, ws * day)


def wind_dir(c: Ctx) -> float:
    prevailing = 360 * uniform(c.seed, f"site:{c.site}/prevailing")
    d = prevailing + 80 * c.site_noise("veer", 10800) + 20 * c.site_noise("dir", 120)
    return d % 360


def wind_dir_sector(c: Ctx) -> float:
    """0..7 (N, NE, E, ...), from the direction as served."""
    return float(int(((round(c.get("wind_dir")) % 360) + 22.5) // 45) % 8)


def wind_force(c: Ctx) -> float:
    """Beaufort level of the wind speed as served."""
    ws = c.get("wind_speed")
    return float(sum(1 for limit in BEAUFORT_M_S if ws >= limit))


def temperature(c: Ctx) -> float:
    return 16 + 6 * c.site_noise("season", 3 * 86400, 1) + 5 * c.diurnal(15) + 0.5 * c.site_noise("temp", 600)


def humidity(c: Ctx) -> float:
    """Relative humidity falls as the day warms."""
    rh = 62 - 15 * c.diurnal(15) + 12 * c.site_noise("damp", 43200) + 2 * c.site_noise("rh", 300)
    return clamp(rh, 15, 98)


def pressure(c: Ctx) -> float:
    """kPa: weather systems over days plus the small semi-diurnal tide."""
    return 101.3 + 0.7 * c.site_noise("baro", 2 * 86400) + 0.1 * math.cos(4 * math.pi * (c.hour - 10) / 24)


def rainfall(c: Ctx) -> float:
    """mm since local midnight: a few rainy hours, accumulating through the day."""
    lt = c.local
    midnight = lt.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    total = 0.0
    first = math.floor(midnight / 3600)
    now_h = c.t / 3600
    for h in range(first, math.floor(now_h) + 1):
        if uniform(c.seed, f"site:{c.site}/rain", h) < 0.07:
            rate = 0.5 + 8 * uniform(c.seed, f"site:{c.site}/rain-mm", h) ** 2
            total += rate * clamp(now_h - h, 0.0, 1.0)
    return total


def noise_db(c: Ctx) -> float:
    """dB(A): quiet nights, traffic by day, machines during working hours."""
    base = 58 if 6 <= c.hour < 22 else 43
    return base + 7 * min(3.0, c.get("activity")) + 2.5 * c.noise("db", 30)


def heater_on(c: Ctx) -> float:
    """The sample-line heater runs in damp or cold air."""
    return 1.0 if c.get("humidity") > 75 or c.get("temperature") < 3 else 0.0


# --- stack (per device): one load signal drives the whole flue-gas picture ------------------------------


def load(c: Ctx) -> float:
    """Boiler load 0.35..1: daytime demand and load changes every few tens of minutes."""
    lv = 0.68 + 0.14 * c.diurnal(14) + 0.14 * c.noise("load", 1500, 1) + 0.02 * c.noise("load-fast", 60, 1)
    return clamp(lv, 0.35, 1.0)


def _lf(c: Ctx) -> float:
    """Load as a 0..1 fraction of its range."""
    return (c.get("load") - 0.35) / 0.65


def o2(c: Ctx) -> float:
    return 10.5 - 7 * _lf(c) + 0.25 * c.noise("o2", 30)


def so2(c: Ctx) -> float:
    return 35 + 70 * _lf(c) + 5 * c.noise("so2", 45)


def no(c: Ctx) -> float:
    return 50 + 65 * _lf(c) + 4 * c.noise("no", 45)


def no2(c: Ctx) -> float:
    return 5 + 6 * _lf(c) + 0.8 * c.noise("no2", 45)


def nox(c: Ctx) -> float:
    """Expressed as NO2: NO * 1.53 + NO2 (HJ 75)."""
    return c.get("no") * 1.53 + c.get("no2")


def so2_ppb(c: Ctx) -> float:
    return c.get("so2") / 2.86 * 1000


def particulate(c: Ctx) -> float:
    return max(0.3, 4 + 8 * _lf(c) + 1.0 * c.noise("dust", 60))


def flue_velocity(c: Ctx) -> float:
    return 6 + 10 * _lf(c) + 0.4 * c.noise("vel", 20)


def flue_temperature(c: Ctx) -> float:
    return clamp(121 + 36 * _lf(c) + 1.5 * c.noise("ft", 300), 118, 162)


def flue_pressure(c: Ctx) -> float:
    """kPa static pressure, slightly negative at low load (induced draft)."""
    return -0.2 + 0.35 * _lf(c) + 0.04 * c.noise("fp", 30)


def flue_humidity(c: Ctx) -> float:
    return clamp(6 + 5 * _lf(c) + 0.4 * c.noise("fh", 300), 5, 12)


def flow(c: Ctx) -> float:
    """m3/h at standard conditions, dry: Q = 3600 A v 273/(273+t) (Ba+Ps)/Ba (1-Xsw), A from sim `area_m2`."""
    area = float(c.params.get("area_m2", 3.14))
    t, ps, xsw = c.get("flue_temperature"), c.get("flue_pressure"), c.get("flue_humidity") / 100
    return 3600 * area * c.get("flue_velocity") * 273 / (273 + t) * (101.325 + ps) / 101.325 * (1 - xsw)


def run_hours(c: Ctx) -> float:
    """Hours since the analyzer last started: monotonic, reset by a reboot."""
    origin = c.run_origin
    if origin is None:
        origin = RUN_HOURS_EPOCH - 20000 * 3600 * uniform(c.seed, f"{c.device}/run-hours")
    return max(0.0, (c.t - origin) / 3600)


def cell_temperature(c: Ctx) -> float:
    return 45 + 0.3 * c.noise("cell", 120)


def walk(c: Ctx) -> float:
    """The generic fallback: a slow random walk inside the register's range (0..100 without one)."""
    lo, hi = c.bounds
    return lo + (hi - lo) * (0.5 + 0.4 * c.noise(f"walk/{c.channel}", float(c.params.get("period_s", 900)), 3))


def analog(c: Ctx) -> float:
    """A 4-20 mA process value in % of span."""
    return 50 + 35 * c.noise(f"ai/{c.channel}", 1200, 3)


def toggle(c: Ctx) -> float:
    """Generic on/off bit: on about a third of the time, switching every few minutes."""
    return 1.0 if smooth(c.seed, f"{c.device}/bit/{c.channel}", c.t, 300) > 0.35 else 0.0


SIGNALS: dict[str, Signal] = {
    "activity": Signal(activity, 0.5, 0.5),
    "load": Signal(load, 0.68, 0.2),
    "pm10": Signal(pm10, 60, 30),
    "pm25": Signal(pm25, 28, 15),
    "pm1": Signal(pm1, 19, 10),
    "tsp": Signal(tsp, 100, 50),
    "pm1_cf1": Signal(cf1("pm1"), 19, 10),
    "pm25_cf1": Signal(cf1("pm25"), 30, 15),
    "pm10_cf1": Signal(cf1("pm10"), 75, 40),
    "n0_3": Signal(count(0), 3300, 1700),
    "n0_5": Signal(count(1), 1000, 500),
    "n1_0": Signal(count(2), 180, 90),
    "n2_5": Signal(count(3), 10, 5),
    "n5_0": Signal(count(4), 8, 4),
    "n10": Signal(count(5), 2, 1),
    "noise": Signal(noise_db, 58, 8),
    "wind_speed": Signal(wind_speed, 2.5, 1.5),
    "wind_dir": Signal(wind_dir, 180, 90),
    "wind_dir_sector": Signal(wind_dir_sector, 4, 2),
    "wind_force": Signal(wind_force, 2, 1),
    "temperature": Signal(temperature, 16, 5),
    "humidity": Signal(humidity, 62, 15),
    "pressure": Signal(pressure, 101.3, 0.7),
    "rainfall": Signal(rainfall, 2, 2),
    "heater_on": Signal(heater_on, 0.5, 0.5),
    "so2": Signal(so2, 70, 35),
    "so2_ppb": Signal(so2_ppb, 24000, 12000),
    "no": Signal(no, 82, 32),
    "no2": Signal(no2, 8, 3),
    "nox": Signal(nox, 134, 50),
    "o2": Signal(o2, 7, 3.5),
    "particulate": Signal(particulate, 8, 4),
    "flue_velocity": Signal(flue_velocity, 11, 5),
    "flue_temperature": Signal(flue_temperature, 139, 18),
    "flue_pressure": Signal(flue_pressure, 0, 0.2),
    "flue_humidity": Signal(flue_humidity, 8.5, 2.5),
    "flow": Signal(flow, 80000, 30000),
    "run_hours": Signal(run_hours, 10000, 5000),
    "cell_temperature": Signal(cell_temperature, 45, 0.3),
    "ai1": Signal(analog, 50, 35),
    "ai2": Signal(analog, 50, 35),
    "ai3": Signal(analog, 50, 35),
    "ai4": Signal(analog, 50, 35),
    "walk": Signal(walk, 50, 40),
    "toggle": Signal(toggle, 0.5, 0.5),
}
