"""The dashboard files: valid against Grafana's dashboard model, consistent, portable InfluxQL.

No Grafana server can run here (not in Debian; the PyPI and npm "grafana" packages are placeholders): the model
is grafana-foundation-sdk, Grafana's generated types of the dashboard schema and panel plugins (boards.py says
how it is used); what only a running Grafana can tell (rendering, transformations at run time) is not checked.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import pytest

from .boards import (
    DASHBOARDS,
    GRAFANA,
    RESULT_FORMATS,
    TARGET_KEYS,
    Board,
    grafana_units,
    load_boards,
    round_trip_losses,
    sdk_dashboard,
    select_aliases,
    type_problems,
    units_of,
)

BOARDS = load_boards()
IDS = [b.uid for b in BOARDS]
EXPECTED = {  # folder -> board uid: the five boards of the issue, one folder per purpose
    "overview": "plume-city-overview",
    "sites": "plume-site-detail",
    "stacks": "plume-stack-compliance",
    "alarms": "plume-alarms",
    "operations": "plume-gateway-health",
}
# InfluxQL that InfluxDB 3 does not run (docs: InfluxQL feature support), and Grafana macros of other data sources
NOT_PORTABLE = re.compile(r"\b(integral|sample|holt_winters\w*|chande_momentum_oscillator|\w*exponential_moving_"
                          r"average|kaufmans_\w+|relative_strength_index|triple_exponential_derivative)\s*\(|"
                          r"\bslimit\b|\bsoffset\b|\bSHOW\s+(SERIES|DATABASES)\b|\bINTO\b|\$__timeFilter|"
                          r"\$__(from|to|range)\b", re.IGNORECASE)


def test_the_five_boards_in_their_folders() -> None:
    assert {b.folder: b.uid for b in BOARDS} == EXPECTED
    assert len(set(IDS)) == len(IDS)
    for b in BOARDS:
        assert re.fullmatch(r"[a-z0-9-]{8,40}", b.uid), b.uid  # Grafana: 8-40 characters, stable across pushes
        assert b.data["title"].startswith("Plume") and "plume" in b.data["tags"]
        assert "id" not in b.data or b.data["id"] is None, "no instance-specific id in a file"


def test_files_are_what_build_py_writes() -> None:
    spec = importlib.util.spec_from_file_location("plume_grafana_build", GRAFANA / "build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    written = build.files()
    assert set(written) == set(DASHBOARDS.glob("*/*.json"))
    for path, text in written.items():
        assert path.read_text(encoding="utf-8") == text, f"{path}: run python grafana/build.py"


@pytest.mark.parametrize("board", BOARDS, ids=IDS)
def test_valid_against_grafanas_dashboard_model(board: Board) -> None:
    """Every key is known to the schema of Grafana 11.1 (dashboard, panels, each panel type's options and field
    config, variables, transformations) and every value has the schema's type (enums, literals, numbers)."""
    losses = round_trip_losses(board.data)
    assert not losses, "keys Grafana's schema does not know:\n" + "\n".join(losses)
    problems = type_problems(sdk_dashboard(board.data))
    assert not problems, "values of the wrong type:\n" + "\n".join(problems)
    assert board.data["schemaVersion"] == 39  # Grafana 11.1


@pytest.mark.parametrize("board", BOARDS, ids=IDS)
def test_layout_ids_and_datasource(board: Board) -> None:
    panels = list(board.panels())
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: dict[tuple[int, int], int] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, f"{p['title']}: outside the 24-column grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = p["id"]
        assert p["title"] and p["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
    ds = [v for v in board.variables() if v["type"] == "datasource"]
    assert len(ds) == 1 and ds[0]["name"] == "datasource" and ds[0]["query"] == "influxdb"
    assert ds[0]["current"]["value"] == "plume-influxdb"  # the provisioned data source


@pytest.mark.parametrize("board", BOARDS, ids=IDS)
def test_site_and_device_variables(board: Board) -> None:
    variables = {v["name"]: v for v in board.variables()}
    assert "site" in variables, "every board filters by site"
    for name, v in variables.items():
        if v["type"] == "query":
            assert v["query"].startswith("SHOW TAG VALUES FROM "), name
            assert f'WITH KEY = "{name}"' in v["query"], name
            assert v["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
            assert v["refresh"] in (1, 2), f"${name}: values are read from InfluxDB when the board opens"
    if board.uid != "plume-city-overview":  # the overview is per site; every other board per device too
        assert "device" in variables and variables["device"]["query"].endswith('WHERE "site" =~ /^$site$/')


@pytest.mark.parametrize("board", BOARDS, ids=IDS)
def test_targets_are_portable_raw_influxql(board: Board) -> None:
    variables = {v["name"] for v in board.variables()}
    for p in board.panels():
        assert p.get("targets"), f"{p['title']}: no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            where = f"{p['title']} {t['refId']}"
            assert set(t) <= TARGET_KEYS, f"{where}: keys Grafana's InfluxQuery does not have: {set(t) - TARGET_KEYS}"
            assert t["rawQuery"] is True and t["resultFormat"] in RESULT_FORMATS, where
            q = t["query"]
            assert ";" not in q, f"{where}: one statement per target"
            assert not NOT_PORTABLE.search(q), f"{where}: not in the InfluxQL that 1.x, 2.x and 3.x all run: {q}"
            assert "$timeFilter" in q, f"{where}: every query is bounded by the dashboard's time range"
            used = set(re.findall(r"\$(\w+)", q)) - {"timeFilter", "__interval", "interval", "__interval_ms"}
            assert used <= variables, f"{where}: undefined variables {used - variables}"
            for tag in ("site", "device", "sink"):
                if tag in used:
                    assert f'"{tag}" =~ /^${tag}$/' in q, f"{where}: ${tag} is matched as a regex (Grafana escapes)"
            assert select_aliases(q), f"{where}: every selected column has an alias"


@pytest.mark.parametrize("board", BOARDS, ids=IDS)
def test_units_are_grafana_unit_ids(board: Board) -> None:
    known = grafana_units()
    for path, unit in units_of(board.data):
        assert unit in known or re.fullmatch(r"suffix:\s?\S.*", unit), f"{path}: {unit!r} is not a Grafana unit"


def _defaults(board: Board, title: str) -> dict[str, Any]:
    p = next(p for p in board.panels() if p["title"] == title)
    return dict(p["fieldConfig"]["defaults"])


def _limits(defaults: dict[str, Any]) -> list[float]:
    return [s["value"] for s in defaults["thresholds"]["steps"] if s["value"] is not None]


def test_limits_and_units_on_the_panels() -> None:
    by = {b.uid: b for b in BOARDS}
    city, site, stack, health = (by["plume-city-overview"], by["plume-site-detail"], by["plume-stack-compliance"],
                                 by["plume-gateway-health"])
    pm10 = _defaults(city, "Latest PM10 by site")
    assert pm10["unit"] == "conμgm3" and 150 in _limits(pm10)  # GB 3095 grade II, 24 h
    assert 300 in _limits(_defaults(city, "Latest TSP by site"))
    assert _defaults(site, "PM10 and PM2.5")["custom"]["thresholdsStyle"]["mode"] == "dashed"  # drawn as a line
    noise = _defaults(site, "Noise")
    assert noise["unit"] == "dB" and {55, 70} <= set(_limits(noise))  # GB 12523 night / day
    wind = _defaults(site, "Wind now")
    assert wind["unit"] == "velocityms"
    assert _defaults(stack, "SO2, converted hourly average")["unit"] == "conmgm3"
    assert _defaults(stack, "Latest hour, % of the limit")["unit"] == "percent"
    assert _defaults(stack, "Daily emitted mass")["unit"] == "masskg"
    assert _defaults(health, "Poll success rate")["unit"] == "percent"
    assert _defaults(health, "Poll latency")["unit"] == "ms"
    # Limits that differ per site or stack are variables, drawn by a query: defaults from domain.md
    variables = {v["name"]: v for b in BOARDS for v in b.variables()}
    assert variables["tsp_limit"]["current"]["value"] == "800"  # Shaanxi DB61/1078, 0.8 mg/m3 hourly
    assert {o["value"] for o in variables["tsp_limit"]["options"]} >= {"800", "700", "1000"}
    assert [variables[v]["current"]["value"] for v in ("so2_limit", "nox_limit", "pm_limit")] == ["35", "50", "10"]
    for v in ("so2_limit", "nox_limit", "pm_limit", "tsp_limit"):
        assert all(re.fullmatch(r"\d+", o["value"]) for o in variables[v]["options"]), \
            f"${v}: integers only (Grafana regex-escapes variables in raw InfluxQL: 0.8 would become 0\\.8)"
    stack_queries = [t["query"] for p in stack.panels() for t in p["targets"]]
    for var in ("$so2_limit", "$nox_limit", "$pm_limit"):
        assert any(var in q for q in stack_queries), var


def test_flags_are_visible() -> None:
    by = {b.uid: b for b in BOARDS}
    for uid, title in (("plume-site-detail", "Data flags of the readings"),
                       ("plume-site-detail", "Validity of the 15-minute averages"),
                       ("plume-stack-compliance", "Hourly validity (N = valid hour)"),
                       ("plume-stack-compliance", "Analyzer flags")):
        p = next(p for p in by[uid].panels() if p["title"] == title)
        assert p["type"] == "state-timeline"
        mapped = p["fieldConfig"]["defaults"]["mappings"][0]["options"]
        assert set("NBDCMTFS") <= set(mapped), title
        assert all("_flag" in t["query"] for t in p["targets"])
