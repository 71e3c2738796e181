"""Rules and rule packs as a site manager writes them: every shipped pack loads, names its standard and window,
and carries the limits of the domain brief; parameters, overrides and mistakes are reported by path."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.alarms.rules import (
    RulePackRef,
    ThresholdRule,
    builtin_pack_names,
    load_pack,
    resolve_rules,
    windows_needed,
)
from tests.alarms.helpers import RULE, rule


def resolve(*refs, rules=()):
    return resolve_rules(list(rules), [RulePackRef.model_validate(r) for r in refs])


@pytest.mark.parametrize("name", [n for n in builtin_pack_names() if n != "dust-shanghai"])
def test_every_shipped_pack_resolves_with_its_defaults(name):
    rules, problems = resolve({"pack": name})
    assert problems == []
    assert rules and all(r.id.startswith(f"{name}.") for r in rules)
    pack = load_pack(name)
    assert pack.title and (pack.standard or name == "gateway-health")


def limits(name, **ref):
    rules, problems = resolve({"pack": name, **ref})
    assert problems == []
    return {r.id.split(".", 1)[1]: (r.channel, r.window, r.limit, r.unit) for r in rules
            if isinstance(r, ThresholdRule)}


def test_construction_dust_packs_name_their_window_and_limit():
    assert limits("dust-shaanxi-earthworks") == {"tsp-1h": ("tsp", "1h", 0.8, "mg/m3")}
    assert limits("dust-shaanxi-structure") == {"tsp-1h": ("tsp", "1h", 0.7, "mg/m3")}
    assert limits("dust-liaoning-urban") == {"tsp-5m": ("tsp", "5m", 0.8, "mg/m3")}
    assert limits("dust-liaoning-rural") == {"tsp-5m": ("tsp", "5m", 1.0, "mg/m3")}
    assert limits("dust-hebei") == {"pm10-1h": ("pm10", "1h", 80, "ug/m3")}
    assert limits("dust-shanghai", params={"limit_mg_m3": 0.5}) == {
        "particulate-15m": ("tsp", "15m", 0.5, "mg/m3")}


def test_hebei_counts_two_exceedances_a_day_over_the_county_value():
    (r,), _ = resolve({"pack": "dust-hebei", "params": {"county_pm10": 55}})
    assert isinstance(r, ThresholdRule) and (r.max_per_day, r.baseline) == (2, 55)


def test_shanghai_limit_must_be_given():
    rules, problems = resolve({"pack": "dust-shanghai"})
    assert rules == []
    assert problems == ["rule_packs[0].params: pack dust-shanghai needs limit_mg_m3 (the DB31/964-2016 15-minute "
                        "limit in mg/m3 (required; not shipped))"]


@pytest.mark.parametrize(
    ("pack", "expected"),
    [
        ("gb13271-in-service-coal", (80, 400, 400)),
        ("gb13271-in-service-coal-southwest", (80, 550, 400)),  # table 1: Guangxi, Chongqing, Sichuan, Guizhou
        ("gb13271-new-coal", (50, 300, 300)),
        ("gb13271-special-coal", (30, 200, 200)),
        ("gb13271-special-gas", (20, 50, 150)),
        ("gb13271-in-service-oil", (60, 300, 400)),
        ("gb13271-in-service-gas", (30, 100, 400)),
        ("gb13271-new-oil", (30, 200, 250)),
        ("gb13271-new-gas", (20, 50, 200)),
        ("gb13271-special-oil", (30, 100, 200)),
        ("ultra-low-emission", (10, 35, 50)),
    ],
)
def test_stack_packs_judge_hourly_converted_averages(pack, expected):
    got = limits(pack)
    assert got == {
        "particulate-1h": ("particulate_zs", "1h", expected[0], "mg/m3"),
        "so2-1h": ("so2_zs", "1h", expected[1], "mg/m3"),
        "nox-1h": ("nox_zs", "1h", expected[2], "mg/m3"),
    }


def test_the_southwest_coal_pack_allows_550_so2_where_the_general_one_raises():
    from gateway.alarms.engine import AlarmEngine
    from tests.alarms.helpers import T, agg

    hour = agg(T, "1h", device="stack-1", kind="cems", so2_zs=(500.0, "mg/m3"))
    general, problems = resolve({"pack": "gb13271-in-service-coal"})
    southwest, problems2 = resolve({"pack": "gb13271-in-service-coal-southwest"})
    assert problems == problems2 == []
    (raised,) = AlarmEngine(general, "site").on_aggregate(hour)
    assert (raised.rule, raised.limit) == ("gb13271-in-service-coal.so2-1h", 400)
    assert AlarmEngine(southwest, "site").on_aggregate(hour) == []
    over = agg(T, "1h", device="stack-1", kind="cems", so2_zs=(560.0, "mg/m3"))
    (raised,) = AlarmEngine(southwest, "site").on_aggregate(over)
    assert (raised.rule, raised.limit) == ("gb13271-in-service-coal-southwest.so2-1h", 550)


def test_noise_pack_day_and_night():
    rules, _ = resolve({"pack": "noise-gb12523"})
    leq = next(r for r in rules if r.id == "noise-gb12523.leq-20m")
    assert isinstance(leq, ThresholdRule) and leq.window == "20m"
    assert [(e.during, e.limit) for e in leq.schedule] == [("06:00-22:00", 70), ("22:00-06:00", 55)]
    assert windows_needed(rules) == {"20m"}


def test_site_restricts_overrides_and_disables_pack_rules():
    rules, problems = resolve({"pack": "noise-gb12523", "devices": ["dust-2"], "disable": ["lmax-night"],
                               "overrides": {"leq-20m": {"renotify_s": 1800, "severity": "critical"}}})
    assert problems == []
    (r,) = rules
    assert isinstance(r, ThresholdRule)
    assert (r.devices, r.renotify_s, r.severity, r.standard) == (["dust-2"], 1800, "critical", "GB 12523-2011")


def test_pack_mistakes_are_reported_by_path():
    _, problems = resolve({"pack": "dust-hebei", "params": {"county": 1}, "overrides": {"pm10": {"limit": 1}},
                           "disable": ["x"]})
    assert problems == [
        "rule_packs[0].params.county: pack dust-hebei has no parameter 'county' (it has: county_pm10)",
        "rule_packs[0].overrides.pm10: pack dust-hebei has no rule 'pm10' (rules: pm10-1h)",
        "rule_packs[0].disable.x: pack dust-hebei has no rule 'x' (rules: pm10-1h)",
    ]
    _, problems = resolve({"pack": "dust-hebei", "overrides": {"pm10-1h": {"clear": 100}}})
    assert problems == ["rule_packs[0] (dust-hebei rules[0] pm10-1h): clear 100 must not be above limit 80 "
                        "(hysteresis)"]
    _, problems = resolve({"pack": "dust-beijing"})
    assert problems[0].startswith("rule_packs[0].pack: no rule pack 'dust-beijing' (shipped: ambient-gb3095-grade2,")


def test_duplicate_rule_ids():
    _, problems = resolve(rules=[rule(id="a", channel="x", limit=1), rule(id="a", channel="y", limit=1)])
    assert problems == ["rules: duplicate rule id 'a'"]


def test_a_pack_file_given_by_path(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "pack: mine\ntitle: Our own\nrules:\n  - {id: pm25, type: threshold, channel: pm25, limit: 75}\n")
    rules, problems = resolve_rules([], [RulePackRef(pack="mine.yaml")], tmp_path)
    assert problems == [] and [r.id for r in rules] == ["mine.pm25"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"channel": "x", "limit": 10, "clear": 12}, "clear 12 must not be above limit 10"),
        ({"channel": "x", "limit": 10, "clear": 8, "direction": "below"}, "must not be below limit"),
        ({"channel": "x"}, "give limit, or a schedule"),
        ({"channel": "x", "limit": 1, "max_per_day": 2}, "max_per_day counts exceeding windows"),
        ({"channel": "x", "limit": 1, "stat": "max"}, "stat is for window rules"),
        ({"channel": "x", "limit": 1, "window": "7m"}, "divide an hour"),
        ({"channel": "PM10", "limit": 1}, "String should match pattern"),
        ({"channel": "x", "schedule": [{"during": "6-22", "limit": 1}]}, "HH:MM-HH:MM"),
    ],
)
def test_rule_errors_say_what_to_fix(data, message):
    with pytest.raises(ValidationError, match=message):
        rule(**data)


def test_quality_rule_needs_bad_flags():
    with pytest.raises(ValidationError, match="not N"):
        RULE.validate_python({"id": "q", "type": "quality", "flags": ["N"]})
