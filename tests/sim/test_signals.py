"""The signal model: deterministic under the seed, realistic relationships, inside every register's range."""

from __future__ import annotations

import math
import statistics
from zoneinfo import ZoneInfo

import pytest
from plume_sim.model import DeviceModel, HintError, quantize
from plume_sim.signals import SIGNALS

from gateway.profile import load_profile
from gateway.site.model import Site

from .helpers import T_WORK

DAY = [T_WORK + 300 * k for k in range(288)]  # a simulated day, every 5 minutes
TZ = ZoneInfo("Asia/Shanghai")


def model(site: Site, name: str, seed: int = 1) -> DeviceModel:
    dev = next(d for d in site.devices if d.name == name)
    return DeviceModel(dev, seed=seed, site=site.id, tz=TZ)


def served(site: Site, name: str, t: float, seed: int = 1) -> dict[str, float]:
    """What the gateway decodes from the device at time t."""
    m = model(site, name, seed)
    out = {}
    for ch, v in m.evaluate(t).items():
        q = quantize(m.specs[ch], v)
        assert isinstance(q, float)
        out[ch] = q
    return out


def test_values_are_a_pure_function_of_seed_device_and_time(site: Site) -> None:
    a = model(site, "dust-1", seed=7).evaluate(T_WORK + 1234.5)
    b = model(site, "dust-1", seed=7).evaluate(T_WORK + 1234.5)
    assert a == b


def test_different_seeds_give_different_values(site: Site) -> None:
    a = model(site, "stack-1", seed=1).evaluate(T_WORK)
    b = model(site, "stack-1", seed=2).evaluate(T_WORK)
    assert a != b
    assert sum(a[ch] != b[ch] for ch in a) >= len(a) // 2


def test_values_change_over_time(site: Site) -> None:
    m = model(site, "stack-1")
    assert m.evaluate(T_WORK) != m.evaluate(T_WORK + 60)


def test_tsp_above_pm10_above_pm25_all_day(site: Site) -> None:
    for t in DAY:
        v = served(site, "dust-2", t)
        assert v["tsp"] > v["pm10"] > v["pm25"] >= 0, t


def test_pm10_rises_with_wind_speed(site: Site) -> None:
    m = model(site, "dust-2")
    days = [T_WORK + 600 * k for k in range(6 * 24 * 14)]  # two weeks, so windy hours occur
    pairs = [(v["wind_speed"], v["pm10"]) for v in (m.evaluate(t, ["wind_speed", "pm10"]) for t in days)]
    calm = [p for w, p in pairs if isinstance(w, float) and w < 2]
    windy = [p for w, p in pairs if isinstance(w, float) and w > 6]
    assert calm and windy
    assert statistics.mean(float(p) for p in windy) > statistics.mean(float(p) for p in calm)


def test_construction_bursts_only_in_working_hours(site: Site) -> None:
    m = model(site, "dust-2")
    night = [float(m.evaluate(T_WORK + 14 * 3600 + 60 * k, ["noise"])["noise"]) for k in range(60)]  # 00:00-01:00
    day = [float(m.evaluate(T_WORK + 60 * k, ["noise"])["noise"]) for k in range(60)]  # 10:00-11:00
    assert max(night) < 50 < statistics.mean(day)


def test_o2_falls_as_so2_rises_over_a_day(site: Site) -> None:
    samples = [served(site, "stack-1", t) for t in DAY]
    o2 = [s["o2"] for s in samples]
    so2 = [s["so2"] for s in samples]
    assert statistics.correlation(o2, so2) < -0.8
    assert statistics.correlation([s["flow"] for s in samples], so2) > 0.5
    assert min(o2) > 2 and max(o2) < 13


def test_cems_relationships_hold_exactly_on_served_values(site: Site) -> None:
    for t in DAY[::12]:
        v = served(site, "stack-1", t)
        assert v["nox"] == pytest.approx(v["no"] * 1.53 + v["no2"], rel=1e-6)
        assert 115 <= v["flue_temperature"] <= 165
        assert 5 <= v["flue_humidity"] <= 12


def test_wind_sector_and_force_agree_with_served_direction_and_speed(site: Site) -> None:
    beaufort = (0.3, 1.6, 3.4, 5.5, 8.0, 10.8, 13.9, 17.2, 20.8, 24.5, 28.5, 32.7)
    for t in DAY:
        v = served(site, "dust-1", t)
        assert v["wind_dir_sector"] == int(((round(v["wind_dir"]) % 360) + 22.5) // 45) % 8
        assert v["wind_force"] == sum(v["wind_speed"] >= b for b in beaufort)


def test_run_hours_never_decrease(site: Site) -> None:
    hours = [served(site, "stack-1", t)["run_hours"] for t in DAY]
    assert hours == sorted(hours) and hours[-1] - hours[0] >= 23


@pytest.mark.parametrize("profile", ["cwt-dust-weather", "cems-analyzer", "dust-monitor", "so2-analyzer-cdab",
                                     "pms5003", "sds011", "analog-4-20ma"])
def test_every_builtin_profile_stays_inside_its_ranges(make_site, profile: str) -> None:
    bus = "{name: b, type: serial, port: /tmp/x}" if load_profile(profile).protocol != "modbus" else \
        "{name: b, type: tcp, host: 127.0.0.1}"
    site = make_site("""
        site: {{id: s, timezone: Asia/Shanghai}}
        buses: [{bus}]
        devices: [{{name: d, bus: b, profile: {profile}}}]
        """, bus=bus, profile=profile)
    m = model(site, "d")
    for t in DAY[::3]:
        for ch, v in m.evaluate(t).items():
            spec = m.specs[ch]
            q = quantize(spec, v)
            assert isinstance(q, float) and math.isfinite(q), (ch, v)
            assert spec.min is None or q >= spec.min, (ch, q)
            assert spec.max is None or q <= spec.max, (ch, q)


def test_pms_counts_are_cumulative_and_follow_pm(make_site) -> None:
    site = make_site("""
        site: {{id: s, timezone: Asia/Shanghai}}
        buses: [{{name: u, type: serial, port: /tmp/x}}]
        devices: [{{name: pm, bus: u, profile: pms5003}}]
        """)
    for t in DAY[::6]:
        v = served(site, "pm", t)
        counts = [v[c] for c in ("n0_3", "n0_5", "n1_0", "n2_5", "n5_0", "n10")]
        assert counts == sorted(counts, reverse=True)
        assert v["pm10"] >= v["pm25"] >= v["pm1"]
        assert v["pm10_cf1"] >= v["pm10"]


SIM_SITE = """
site: {{id: s, timezone: UTC}}
buses: [{{name: b, type: tcp, host: 127.0.0.1}}]
devices:
  - name: d
    bus: b
    kind: test
    registers:
      - {{channel: level, address: 0, scale: 0.1, min: 0, max: 500, sim: {sim}}}
      - {{channel: mystery, address: 1, min: 200, max: 300}}
      - {{channel: pm10, address: 2, sim: {{signal: pm10, base: 300, amplitude: 10}}}}
"""


def test_sim_constant_is_served_as_is(make_site) -> None:
    m = model(make_site(SIM_SITE, sim="{constant: 12.5}"), "d")
    assert all(m.evaluate(t)["level"] == 12.5 for t in DAY[::20])


def test_sim_base_and_amplitude_rescale_a_signal(make_site) -> None:
    m = model(make_site(SIM_SITE, sim="{signal: walk, base: 100, amplitude: 5}"), "d")
    levels = [float(m.evaluate(t)["level"]) for t in DAY]
    assert min(levels) >= 95 and max(levels) <= 105 and max(levels) - min(levels) > 1
    pm = [float(m.evaluate(t)["pm10"]) for t in DAY]
    assert statistics.mean(pm) > 250


def test_unknown_channel_walks_inside_its_range(make_site) -> None:
    m = model(make_site(SIM_SITE, sim="{constant: 1}"), "d")
    vals = [float(m.evaluate(t)["mystery"]) for t in DAY]
    assert 200 <= min(vals) < max(vals) <= 300


def test_sim_typos_are_errors(make_site) -> None:
    site = make_site(SIM_SITE, sim="{constnat: 1, signal: pm11, base: high, period_s: 0}")
    with pytest.raises(HintError) as exc:
        model(site, "d")
    assert exc.value.problems == [
        "d.level.sim: unknown key(s) constnat (known: constant, signal, base, amplitude, period_s, area_m2)",
        "d.level.sim.signal: unknown signal 'pm11' (known: " + ", ".join(sorted(SIGNALS)) + ")",
        "d.level.sim.base: must be a number, not 'high'",
        "d.level.sim.period_s: must be above 0",
    ]
