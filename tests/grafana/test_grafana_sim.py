"""The reproduction of Grafana's InfluxQL interpolation (grafana_sim.py) against cases from Grafana's code and
documentation, and the test's classification of what a query needs from the pipeline."""

from __future__ import annotations

import pytest

from .grafana_sim import (
    PanelRequest,
    Value,
    build,
    calculate_interval,
    format_interval,
    interpolate,
    leftover_variables,
    panel_request,
    replace,
    round_interval,
)
from .test_queries import needs


def test_regex_format_of_single_multi_and_all_values() -> None:
    q = '"site" =~ /^$site$/'
    assert replace(q, {"site": Value("north.gate")}) == r'"site" =~ /^north\.gate$/'
    assert replace(q, {"site": Value(("a.b", "c-d"))}, "kbn") == r'"site" =~ /^(a\.b|c\-d)$/'
    assert replace(q, {"site": Value(("a.b", "c-d"))}, "scenes") == r'"site" =~ /^(a\.b|c-d)$/'
    assert replace(q, {"site": Value(("only",))}) == '"site" =~ /^only$/'  # one value: no group
    assert replace(q, {"site": Value(("a", "b"), all_value=".*")}) == '"site" =~ /^.*$/'  # custom all: as is
    assert replace("x/y", {}) == "x/y"


def test_variable_syntaxes_and_what_the_front_end_leaves_alone() -> None:
    values = {"site": Value("s1"), "tsp_limit": Value("800")}
    assert replace("${site} [[site]] ${site:raw} $tsp_limit", values) == "s1 s1 s1 800"
    kept = "$timeFilter $__interval $interval $__interval_ms $unknown"
    assert replace(kept, values) == kept


def test_back_end_macros_in_grafanas_order() -> None:
    q = "SELECT mean(x) FROM m WHERE $timeFilter GROUP BY time($__interval), time($interval) LIMIT $__interval_ms"
    assert build(q, 1000, 61000, 60000) == ("SELECT mean(x) FROM m WHERE time >= 1000ms and time <= 61000ms "
                                            "GROUP BY time(1m), time(1m) LIMIT 60000")
    assert "$__timeFilter" in build("WHERE $__timeFilter", 0, 1, 1), "not an InfluxQL macro: left for InfluxDB"


@pytest.mark.parametrize(("ms", "rounded"), [(9, 1), (14, 10), (1499, 1000), (3499, 2000), (86_400, 60_000),
                                             (300_000, 300_000), (3_600_000, 3_600_000), (10**12, 31_536_000_000)])
def test_round_interval(ms: int, rounded: int) -> None:
    assert round_interval(ms) == rounded


def test_request_interval_and_its_text() -> None:
    day = 86_400_000
    assert calculate_interval(0, day, 1000, "10s") == 60_000  # 86.4 s rounds to 1m
    assert calculate_interval(0, 3_600_000, 1000, "10s") == 10_000  # 3.6 s rounds to 2s, the min is 10s
    assert [format_interval(ms) for ms in (500, 10_000, 60_000, 7_200_000, day, 400 * day)] == \
        ["500ms", "10s", "1m", "2h", "1d", "1y"]
    panel = {"gridPos": {"w": 24}, "timeFrom": "30d"}
    # 30 days over 1860 pixels: 1393 s, rounded to 20m
    assert panel_request(panel, "now-24h", 40 * day, "10s") == PanelRequest(10 * day, 40 * day, 20 * 60_000)


def test_interpolate_a_board_query() -> None:
    q = 'SELECT mean("pm10") AS "PM10" FROM "dust" WHERE $timeFilter AND "site" =~ /^$site$/ ' \
        'GROUP BY time($__interval), "device" fill(null)'
    out = interpolate(q, {"site": Value(("riverside-tower",))}, PanelRequest(0, 60_000, 10_000))
    assert out == ('SELECT mean("pm10") AS "PM10" FROM "dust" WHERE time >= 0ms and time <= 60000ms AND '
                   '"site" =~ /^riverside\\-tower$/ GROUP BY time(10s), "device" fill(null)')
    assert not leftover_variables(out)
    assert leftover_variables("WHERE $__timeFilter AND x = '$not_a_var'") == ["$__timeFilter"]


def test_what_a_query_needs_from_the_pipeline() -> None:
    assert needs('SELECT last("pm10") AS "p" FROM "dust" WHERE $timeFilter') == set()
    assert needs('SELECT "pm10_avg" AS "p" FROM "dust_15m" WHERE $timeFilter') == {"aggregates"}
    assert needs('SELECT "so2_rate_mass" AS "m" FROM "cems_1d" WHERE $timeFilter') == {"aggregates"}
    assert needs('SELECT mean("so2_zs") AS "z" FROM "cems" WHERE $timeFilter') == {"cems-derived"}
    assert needs('SELECT mean("so2") AS "s" FROM "cems" WHERE $timeFilter') == set()
    assert needs('SELECT last("success_rate") AS "s" FROM "plume_device" WHERE $timeFilter') == set()
    assert needs('SELECT last("state") AS "s" FROM "alarms" WHERE $timeFilter') == {"alarms"}
