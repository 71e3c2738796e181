"""The regulatory sections of a site file, as `plume config check` will see them, and the whole pure core driven
by one site file: quality -> CEMS -> windows -> alarms -> actuation."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.alarms.actuation import ActuationPolicy
from gateway.alarms.engine import AlarmEngine
from gateway.config import ConfigError
from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.processing.cems import StackDeriver
from gateway.processing.quality import QualityProcessor
from gateway.processing.windows import WindowEngine
from gateway.site.checks import check_alarms, check_processing
from gateway.site.load import load_site, parse_site
from gateway.site.model import Site
from gateway.yamlio import load_yaml_text
from tests.alarms.helpers import ms

FIXTURE = Path(__file__).parents[1] / "processing" / "data" / "regulatory-site.yaml"


@pytest.fixture
def site(monkeypatch) -> Site:
    monkeypatch.setenv("WECOM_URL", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k")
    return load_site(FIXTURE)


def test_the_example_site_is_valid(site):
    assert check_processing(site) == []
    rules, problems = check_alarms(site)
    assert problems == []
    assert {r.id for r in rules} == {
        "pm10-15m", "tsp-burst", "dust-shanghai.particulate-15m", "gb13271-in-service-coal.particulate-1h",
        "gb13271-in-service-coal.so2-1h", "gb13271-in-service-coal.nox-1h", "noise-gb12523.leq-20m",
        "noise-gb12523.lmax-night", "gateway-health.offline", "gateway-health.bad-data",
        "gateway-health.log-drops", "gateway-health.sink-problem"}
    assert site.config.notify.webhooks[0].url.get_secret_value().endswith("key=k")


def edit(site_yaml: dict, path: list, value) -> dict:
    node = site_yaml
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return site_yaml


def broken(monkeypatch, *edits) -> list[str]:
    """The problems loading the example with `edits` reports (the site-wide checks run at every load)."""
    monkeypatch.setenv("WECOM_URL", "https://x/y")
    data = load_yaml_text(FIXTURE.read_text())  # YAML 1.2: the channel `no` stays a string
    for path, value in edits:
        edit(data, path, value)
    with pytest.raises(ConfigError) as exc:
        parse_site(data, FIXTURE)
    return exc.value.problems


def test_cross_references_are_checked(monkeypatch):
    problems = broken(
        monkeypatch,
        (["stacks", 0, "temperature"], "stack-2.t"),
        (["stacks", 0, "o2"], "oxygen"),
        (["windows", "periods"], ["1m", "5m", "15m", "1h", "1d"]),
        (["actuators", 0, "device"], "fog"),
        (["rules", 1, "actuate"], ["fog-2"]),
        (["rule_packs", 0, "devices"], ["dust-9"]),
        (["notify", "webhooks", 1, "name"], "officers"),
    )
    assert problems == [
        "stacks[0]: input stack-1.oxygen: stack-1 has no channel 'oxygen' (it has: flow, flue_humidity, "
        "flue_pressure, flue_temperature, flue_velocity, no, no2, nox, o2, particulate, run_hours, so2)",
        "stacks[0]: input stack-2.t: no device named 'stack-2'",
        "rules (dust-shanghai.particulate-15m).devices: no device named 'dust-9' (devices: dust-1, stack-1, "
        "fog-plc)",
        "windows.periods: rules judge the 20m window (noise-gb12523.leq-20m); add 20m",
        "actuators[0].device: no device named 'fog' (devices: dust-1, stack-1, fog-plc)",
        "rules (tsp-burst).actuate: no actuator named 'fog-2' (actuators: fog-1)",
        "notify.webhooks[1].name: duplicate webhook 'officers'",
    ]


def test_a_rule_that_could_never_fire_is_reported(monkeypatch):
    # a TSP pack on a site whose dust monitor is a CWT station (PM10 and PM2.5 only); a converted SO2 rule on a
    # site without that pollutant in its stack
    problems = broken(monkeypatch, (["devices", 0, "profile"], "cwt-dust-weather"),
                      (["stacks", 0, "pollutants"], {"so2x": {"channel": "so2"}}))
    assert "rules (tsp-burst).channel: no device it applies to has a channel 'tsp' (dust-1, stack-1, fog-plc); the " \
           "rule would never fire" in problems
    assert "rules (dust-shanghai.particulate-15m).channel: no device it applies to has a channel 'tsp' (dust-1); " \
           "the rule would never fire" in problems
    assert "rules (gb13271-in-service-coal.so2-1h).channel: no device it applies to has a channel 'so2_zs' " \
           "(stack-1); the rule would never fire" in problems


def test_a_bad_rule_is_reported_at_its_path(monkeypatch):
    assert broken(monkeypatch, (["rules", 0, "clear"], 200), (["rules", 1, "for"], 5)) == [
        "rules[0]: clear 200 must not be above limit 150 (hysteresis)",
        "rules[1].for: unknown key (typo? did you mean for_s?)"]


def test_the_pure_core_from_one_site_file(site):
    """Two hours of a dust monitor and a stack, a dust burst in the middle: one PM10 alarm, raised within its
    15-minute window and cleared after the burst, the fog cannon on and off, CEMS values converted and judged."""
    cfg = site.config
    rules, _ = check_alarms(site)
    tz = cfg.site.timezone
    quality = QualityProcessor(cfg.maintenance, cfg.stuck, tz)
    cems = StackDeriver(cfg.stacks)
    windows = WindowEngine(cfg.windows, site.id, tz, history_from=ms("2026-03-03T00:00:00"))
    alarms = AlarmEngine(rules, site.id, tz, devices=[d.name for d in site.devices])
    fog = ActuationPolicy(cfg.actuators, rules, tz)
    start = ms("2026-03-03T02:00:00")  # 10:00 local
    events, writes, aggs = [], [], []
    burst = (start + 40 * 60_000, start + 55 * 60_000)
    for i in range(0, 2 * 3600, 10):
        ts = start + i * 1000
        in_burst = burst[0] <= ts < burst[1]
        pm10 = 400.0 + (i % 11) if in_burst else 40.0 + (i % 7)
        tsp = pm10 * 3 if in_burst else pm10 * 1.6
        dust = DeviceReading(site.id, "dust-1", "dust", ts, {
            "pm10": ChannelValue(pm10, "ug/m3"), "tsp": ChannelValue(tsp, "ug/m3"),
            "noise": ChannelValue(58.0 + (i % 5), "dB(A)")})
        stack = DeviceReading(site.id, "stack-1", "cems", ts, {
            "so2": ChannelValue(100.0 + (i % 3), "mg/m3"), "no": ChannelValue(80.0, "mg/m3"),
            "no2": ChannelValue(10.0, "mg/m3"), "o2": ChannelValue(12.0 + (i % 4) * 0.05, "%"),
            "particulate": ChannelValue(20.0, "mg/m3"), "flue_humidity": ChannelValue(8.0, "%"),
            "flue_temperature": ChannelValue(120.0, "C"), "flue_pressure": ChannelValue(0.2, "kPa"),
            "flue_velocity": ChannelValue(12.0, "m/s")})
        for r in (dust, stack):
            quality.apply(r)
            cems.apply(r)
            new = windows.feed(r)
            aggs += new
            for ev in alarms.on_reading(r) + [e for a in new for e in alarms.on_aggregate(a)]:
                events.append(ev)
                writes += fog.on_event(ev)
        writes += fog.tick(ts)
    pm10_events = [e for e in events if e.rule == "pm10-15m"]
    assert [(e.type.value, e.window) for e in pm10_events] == [("raised", "15m"), ("cleared", "15m")]
    raised, cleared = pm10_events
    # the burst starts at 10:40 local: the 10:30-10:45 window holds 5 minutes of it (avg ~159), and is judged
    # when it closes at 10:45; the first window after the burst (11:00-11:15) clears it
    assert (raised.start, raised.ts) == (start + 30 * 60_000, start + 45 * 60_000)
    assert raised.ts - burst[0] <= 15 * 60_000
    assert cleared.ts == start + 75 * 60_000
    # the TSP burst rule (raw, 2 minutes over 1000 ug/m3) is quicker: it switches the fog cannon on; the cannon
    # stays on while either alarm is raised and goes off 5 minutes after the PM10 alarm cleared
    tsp_events = [e for e in events if e.rule == "tsp-burst"]
    assert [(e.type.value, e.start, e.ts) for e in tsp_events] == [("raised", burst[0], burst[0] + 120_000),
                                                           ("cleared", burst[0], burst[1])]
    assert [(w.on, w.function, w.address, w.wire_value, w.ts) for w in writes] == [
        (True, 5, 16, 0xFF00, burst[0] + 120_000), (False, 5, 16, 0x0000, cleared.ts + 300_000)]
    # the Shanghai pack (limit 0.5 mg/m3 in this site) judges the TSP 15-minute average: ~1.2 mg/m3 in the burst
    sh = [e for e in events if e.rule == "dust-shanghai.particulate-15m"]
    assert [(e.type.value, e.unit, e.limit) for e in sh] == [("raised", "mg/m3", 0.5), ("cleared", "mg/m3", 0.5)]
    # no other alarm: noise (day limit 70), SO2 converted (~136 mg/m3 < 400), devices answer, no bad data
    assert {e.rule for e in events} == {"pm10-15m", "tsp-burst", "dust-shanghai.particulate-15m"}
    hour = next(a for a in aggs if a.device == "stack-1" and a.window == "1h")
    so2 = hour.channels["so2_zs"]
    # SO2 100/101/102 mg/m3 (dry, standard: the analyzer's), O2 alternating 12.0/12.1 %, every combination equally
    # often: mean of (100 + a) * (21 - 9) / (21 - o2) = 101 * 12 * (1/9 + 1/8.9) / 2 = 135.4232
    assert so2.flag is Flag.N and so2.avg == pytest.approx(101 * 12 * (1 / 9 + 1 / 8.9) / 2, rel=1e-6)
    assert hour.channels["particulate_rate"].cou_unit == "kg"
