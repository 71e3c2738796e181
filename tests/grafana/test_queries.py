"""Every query of every board, as Grafana would send it, against a real InfluxDB filled by the real pipeline.

No Grafana server can run here (not in Debian; the PyPI and npm packages named grafana are placeholders), so
Grafana's part is reproduced (grafana_sim.py: the front end's variable interpolation with the regex format, the
back end's $timeFilter/$__interval macros, the request interval) and InfluxDB's part is real (InfluxDB 1.6,
/query, the gateway's own writes; see conftest.py for the fill).

For each panel target: the template variables are resolved the way Grafana resolves them on dashboard load (their
queries run against the same InfluxDB; "All" where the variable defaults to it, else the first value, and every
site one after the other), the query is interpolated with both of Grafana's regex escapers, and InfluxDB must
answer without an error, with at least one series, with every column the query's SELECT names (at least one
value each) and the GROUP BY tags. Per panel: every field the panel refers to by name (transformations, geomap
layers, XY dimensions, overrides) is among what its queries return.

Targets that read what the processing stage writes (aggregates, derived CEMS channels, alarms) run like the rest;
PENDING can skip a kind of target, with its reason, while the pipeline does not write it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from .boards import (
    GRAFANA,
    Board,
    group_by_tags,
    load_boards,
    measurement_of,
    select_aliases,
)
from .fill import Filled
from .grafana_sim import ESCAPERS, Value, interpolate, leftover_variables, panel_request, replace

AGGREGATE = re.compile(r"^\w+_(1m|5m|10m|15m|20m|30m|1h|1d)$")
DERIVED = re.compile(r'"\w+_(zs|std|rate)(_\w+)?"|"flow_std"')
# What the pipeline did not write yet (reason per kind); empty since aggregates, alarms and derived CEMS channels
# are written by `plume run`.
PENDING: dict[str, str] = {}


def needs(query: str) -> set[str]:
    """What a query reads that the pipeline does not write yet."""
    m = measurement_of(query)
    out = set()
    if AGGREGATE.match(m):
        out.add("aggregates")
    if m == "alarms":
        out.add("alarms")
    if m == "cems" and DERIVED.search(query.split(" FROM ", 1)[0]):  # raw stack readings (not success_rate)
        out.add("cems-derived")
    return out


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _marks(missing: set[str]) -> list[pytest.MarkDecorator]:
    return [pytest.mark.skip(reason=PENDING[k]) for k in sorted(missing) if k in PENDING]


def target_params() -> Iterator[Any]:
    for board in load_boards():
        for panel in board.panels():
            for t in panel.get("targets", []):
                if t.get("hide"):
                    continue
                yield pytest.param(board, panel, t, marks=_marks(needs(t["query"])),
                                   id=f"{board.uid}/{panel['id']}-{slug(panel['title'])}/{t['refId']}")


def panel_params() -> Iterator[Any]:
    for board in load_boards():
        for panel in board.panels():
            targets = [t for t in panel.get("targets", []) if not t.get("hide")]
            if targets:
                missing = set().union(*(needs(t["query"]) for t in targets))
                yield pytest.param(board, panel, marks=_marks(missing),
                                   id=f"{board.uid}/{panel['id']}-{slug(panel['title'])}")


def ds_time_interval() -> str:
    doc = yaml.safe_load((GRAFANA / "provisioning/datasources/plume.yaml").read_text(encoding="utf-8"))
    return str(doc["datasources"][0]["jsonData"]["timeInterval"])


# --- template variables, resolved as on dashboard load ----------------------------------------------------------

def resolve(filled: Filled, board: Board, escaper: str, pin: dict[str, str] | None = None) -> dict[str, Value]:
    """The current value of every variable of a board: query variables from InfluxDB (in order, each seeing the
    ones before), All where it is the default, else the pinned or the first option; custom ones their default."""
    values: dict[str, Value] = {}
    for v in board.variables():
        kind, name = v["type"], v["name"]
        if kind == "datasource":
            continue
        if kind == "custom":
            values[name] = Value(str(v["current"]["value"]))
            continue
        if kind == "constant":
            values[name] = Value(str(v["query"]))
            continue
        assert kind == "query", f"{board.uid}: variable {name} of type {kind}: not handled by the test"
        options = variable_options(filled, replace(v["query"], values, escaper))
        assert options, f"{board.uid}: variable ${name} has no values ({v['query']})"
        current = v.get("current") or {}
        if v.get("includeAll") and current.get("value") in (["$__all"], "$__all"):
            values[name] = Value(tuple(options), v.get("allValue") or None)
        elif pin and name in pin:
            assert pin[name] in options, f"{board.uid}: ${name} has no option {pin[name]!r} ({options})"
            values[name] = Value(pin[name] if not v.get("multi") else (pin[name],))
        else:
            values[name] = Value(options[0] if not v.get("multi") else (options[0],))
    return values


def variable_options(filled: Filled, query: str) -> list[str]:
    res = filled.query(query)
    assert "error" not in res, f"variable query failed: {res['error']}\n{query}"
    found = {str(row[s["columns"].index("value")]) for s in res.get("series", []) for row in s["values"]}
    return sorted(found)


def site_choices(filled: Filled, board: Board) -> list[dict[str, str] | None]:
    """Every value of a single-choice `site` variable (each site's view must work), or just the default."""
    v = next((x for x in board.variables() if x["name"] == "site"), None)
    if v is None or v.get("includeAll"):
        return [None]
    return [{"site": s} for s in variable_options(filled, v["query"])]


# --- the tests ------------------------------------------------------------------------------------------------

def run_target(filled: Filled, board: Board, panel: dict[str, Any], target: dict[str, Any],
               pin: dict[str, str] | None, escaper: str, now_ms: int) -> tuple[str, dict[str, Any]]:
    values = resolve(filled, board, escaper, pin)
    req = panel_request(panel, board.data["time"]["from"], now_ms, ds_time_interval())
    q = interpolate(target["query"], values, req, escaper)
    assert not leftover_variables(q), f"not replaced by Grafana: {leftover_variables(q)}\n{q}"
    res = filled.query(q)
    assert "error" not in res, f"InfluxDB: {res['error']}\n{q}"
    return q, res


@pytest.mark.parametrize(("board", "panel", "target"), list(target_params()))
def test_panel_query(filled: Filled, board: Board, panel: dict[str, Any], target: dict[str, Any]) -> None:
    aliases = select_aliases(target["query"])
    assert aliases, "every selected column has an alias (the panel refers to the columns by these names)"
    tags = group_by_tags(target["query"])
    now = int(time.time() * 1000)  # one dashboard refresh: the same time range for every variant
    for pin in site_choices(filled, board):
        results = {}
        for escaper in ESCAPERS:
            q, res = run_target(filled, board, panel, target, pin, escaper, now)
            where = f"(site {pin['site'] if pin else 'default'}, {escaper} escaping)\n{q}"
            series = res.get("series") or []
            assert series, f"no series: the panel would be empty {where}"
            for alias in aliases:
                values = [row[s["columns"].index(alias)] for s in series if alias in s["columns"]
                          for row in s["values"]]
                assert values, f"no column {alias!r} {where}"
                assert any(v is not None for v in values), f"column {alias!r} has no value {where}"
            for tag in tags:
                assert all(tag in (s.get("tags") or {}) for s in series), f"series without the tag {tag} {where}"
            results[escaper] = series
        assert results["kbn"] == results["scenes"], "both regex escapers of Grafana must select the same data"


@pytest.mark.parametrize(("board", "panel"), list(panel_params()))
def test_panel_gets_every_field_it_names(filled: Filled, board: Board, panel: dict[str, Any]) -> None:
    """Fields a panel refers to by name exist in what its queries return."""
    names: set[str] = set()
    display: set[str] = set()
    for t in panel["targets"]:
        _, res = run_target(filled, board, panel, t, None, "kbn", int(time.time() * 1000))
        for s in res.get("series") or []:
            cols = [c for c in s["columns"] if c != "time"]
            if t.get("resultFormat") == "table":
                names |= set(cols) | set(s.get("tags") or {}) | {"Time"}
                display |= set(cols) | set(s.get("tags") or {})
            else:
                names |= set(cols)
                display |= {display_name(t, s, c) for c in cols}
    refs = referenced_fields(panel)
    missing = sorted(r for r in refs["names"] if r not in names)
    assert not missing, f"the panel refers to {missing}; its queries return {sorted(names)}"
    for name in refs["display"]:
        assert name in display, f"override byName {name!r} matches none of {sorted(display)}"
    for pattern in refs["regexp"]:
        assert any(re.fullmatch(pattern, d) for d in display), f"override byRegexp {pattern!r}: {sorted(display)}"
    for ref in refs["frames"]:
        assert ref in {t["refId"] for t in panel["targets"]}, f"override byFrameRefID {ref}: no such query"


def display_name(target: dict[str, Any], series: dict[str, Any], column: str) -> str:
    """The display name Grafana's InfluxQL back end gives a time-series column (alias patterns, or
    measurement.column with the tags)."""
    tags = series.get("tags") or {}
    alias = target.get("alias")
    if not alias:
        suffix = " {" + ", ".join(f"{k}: {v}" for k, v in tags.items()) + "}" if tags else ""
        return f"{series['name']}.{column}{suffix}"

    def sub(m: re.Match[str]) -> str:
        key = m.group(1) or m.group(2)
        if key in ("m", "measurement"):
            return str(series["name"])
        if key == "col":
            return column
        if key.startswith("tag_"):
            return str(tags.get(key[4:], m.group(0)))
        return m.group(0)

    return re.sub(r"\$(\w+)|\[\[(\w+)\]\]", sub, alias)


def referenced_fields(panel: dict[str, Any]) -> dict[str, set[str]]:
    names: set[str] = set()
    display: set[str] = set()
    regexp: set[str] = set()
    frames: set[str] = set()
    for tr in panel.get("transformations", []):
        o = tr.get("options", {})
        if tr["id"] == "joinByField":
            names.add(o["byField"])
        elif tr["id"] == "filterByValue":
            names |= {f["fieldName"] for f in o.get("filters", [])}
        elif tr["id"] == "organize":
            names |= set(o.get("excludeByName", {}))
    opts = panel.get("options", {})
    for layer in opts.get("layers", []):
        loc = layer.get("location", {})
        names |= {loc[k] for k in ("latitude", "longitude") if loc.get(k)}
        style = layer.get("config", {}).get("style", {})
        names |= {style[k]["field"] for k in ("color", "size", "text") if style.get(k, {}).get("field")}
    if opts.get("dims", {}).get("x"):
        names.add(opts["dims"]["x"])
    for o in panel["fieldConfig"].get("overrides", []):
        m = o["matcher"]
        if m["id"] == "byName":
            (names if any(t.get("resultFormat") == "table" for t in panel["targets"]) else display).add(m["options"])
        elif m["id"] == "byRegexp":
            regexp.add(m["options"])
        elif m["id"] == "byFrameRefID":
            frames.add(m["options"])
    return {"names": names, "display": display, "regexp": regexp, "frames": frames}


def test_every_variable_query_returns_values(filled: Filled) -> None:
    for board in load_boards():
        for escaper in ESCAPERS:
            values = resolve(filled, board, escaper)
            for v in board.variables():
                if v["type"] == "query":
                    assert values[v["name"]].value, f"{board.uid}: ${v['name']}"


def test_history_and_live_data_are_in(filled: Filled) -> None:
    """The fill itself: both sites' history and the live run's raw and health points."""
    for site, (first, last) in filled.history.items():
        n = filled.influx.count("dust", "pm10", where=f"\"site\" = '{site}' AND time <= {last}ms")
        assert n >= (last - first) // 60_000, site
    live = f"time >= {filled.live_started_ms}ms"
    for m, f in (("dust", "pm10"), ("cems", "so2"), ("plume_device", "success_rate"), ("plume_sink", "depth"),
                 ("plume_log", "readings")):
        assert filled.influx.count(m, f, where=live) > 0, m
