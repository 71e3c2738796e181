#!/usr/bin/env python3
"""Writes the Plume dashboards (grafana/dashboards/<folder>/<board>.json) from the definitions below.

    python grafana/build.py           # rewrite the JSON files
    python grafana/build.py --check   # exit 1 if a JSON file differs from what this script writes

The JSON files are the deliverable (provisioned from files, pushed by `plume grafana push`, importable by hand);
this script keeps five boards and ~60 queries consistent: every query is raw InfluxQL in the portable subset that
InfluxDB 1.x, 2.x (v1 API + DBRP) and 3.x all run, every selected column has an alias (the query test checks the
panel gets exactly those columns), every tag filter is a regex on a template variable (`"site" =~ /^$site$/`,
because Grafana regex-escapes every variable it puts into a raw InfluxQL query).

Measurements (the gateway's InfluxDB schema): raw `<kind>` (dust, cems, ...), aggregates `<kind>_<window>`,
alarms `alarms`, health `plume_device` / `plume_sink` / `plume_log`, site location `plume_site`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DASHBOARDS = ROOT / "dashboards"
SCHEMA_VERSION = 39  # Grafana 11.1 (the image of deploy/docker-compose.yml)
DS = {"type": "influxdb", "uid": "${datasource}"}

# Field of an aggregate measurement holding the cumulative mass (kg) of an emission-rate channel over the window
# (the contract of the aggregates; windows.py computes it as `cou`).
MASS = "mass"

SITE = '"site" =~ /^$site$/'
DEVICE = '"device" =~ /^$device$/'
SINK = '"sink" =~ /^$sink$/'

# Limits drawn on the panels (domain.md). Integers on purpose: Grafana regex-escapes variables in raw InfluxQL,
# so a variable holding 0.8 would arrive as 0\.8.
PM10_24H = 150  # ug/m3, GB 3095-2012 grade II, 24 h
PM25_24H = 75
TSP_24H = 300
NOISE_DAY, NOISE_NIGHT = 70, 55  # dB(A), GB 12523-2011
VALID_DAY_HOURS = 20  # a valid day needs >= 20 valid hours (HJ 75)

FLAG_MAPPINGS = [{
    "type": "value",
    "options": {
        "N": {"text": "N normal", "color": "green", "index": 0},
        "T": {"text": "T over range", "color": "orange", "index": 1},
        "S": {"text": "S set manually", "color": "yellow", "index": 2},
        "C": {"text": "C calibration", "color": "blue", "index": 3},
        "M": {"text": "M maintenance", "color": "purple", "index": 4},
        "F": {"text": "F stopped", "color": "text", "index": 5},
        "D": {"text": "D instrument fault", "color": "red", "index": 6},
        "B": {"text": "B communication fault", "color": "dark-red", "index": 7},
    },
}]
STATE_MAPPINGS = [{
    "type": "value",
    "options": {
        "raised": {"text": "raised", "color": "red", "index": 0},
        "renotify": {"text": "raised (reminder)", "color": "red", "index": 1},
        "acknowledged": {"text": "acknowledged", "color": "orange", "index": 2},
        "cleared": {"text": "cleared", "color": "green", "index": 3},
    },
}]
ONLINE_MAPPINGS = [{
    "type": "value",
    "options": {"0": {"text": "offline", "color": "red", "index": 0},
                "1": {"text": "online", "color": "green", "index": 1}},
}]


# --- building blocks ------------------------------------------------------------------------------------------

def where(*conditions: str) -> str:
    return " AND ".join(("$timeFilter", *conditions))


def target(ref: str, query: str, fmt: str = "time_series", alias: str | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"refId": ref, "datasource": DS, "rawQuery": True, "query": query, "resultFormat": fmt}
    if alias is not None:
        t["alias"] = alias
    return t


def steps(*pairs: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}


def limit_steps(limit: float, warn: float | None = None) -> dict[str, Any]:
    if warn is None:
        return steps(("green", None), ("red", limit))
    return steps(("green", None), ("orange", warn), ("red", limit))


NO_THRESHOLDS = steps(("green", None))
LEGEND = {"showLegend": True, "displayMode": "list", "placement": "bottom", "calcs": []}
LEGEND_TABLE = {"showLegend": True, "displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]}
TOOLTIP = {"mode": "multi", "sort": "none"}
REDUCE_LAST = {"values": False, "calcs": ["lastNotNull"], "fields": ""}


def graph_custom(*, draw: str = "line", limit_line: bool = False, fill: int = 0, points: str = "never",
                 placement: str = "auto") -> dict[str, Any]:
    """fieldConfig.defaults.custom of a time series: limits (thresholds) drawn as dashed lines when asked."""
    return {
        "drawStyle": draw,
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "fillOpacity": fill,
        "gradientMode": "none",
        "barAlignment": -1 if draw == "bars" else 0,
        "spanNulls": False,
        "showPoints": points,
        "pointSize": 4,
        "stacking": {"mode": "none", "group": "A"},
        "axisPlacement": placement,
        "axisLabel": "",
        "axisBorderShow": False,
        "axisCenteredZero": False,
        "axisColorMode": "text",
        "scaleDistribution": {"type": "linear"},
        "hideFrom": {"legend": False, "tooltip": False, "viz": False},
        "thresholdsStyle": {"mode": "dashed" if limit_line else "off"},
    }


def limit_series_override(ref: str, name: str) -> dict[str, Any]:
    """The query `ref` draws a limit taken from a dashboard variable: a red dashed line."""
    return {
        "matcher": {"id": "byFrameRefID", "options": ref},
        "properties": [
            {"id": "displayName", "value": name},
            {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
            {"id": "custom.lineWidth", "value": 2},
            {"id": "custom.spanNulls", "value": True},
        ],
    }


def by_name(name: str, *props: tuple[str, Any]) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": name}, "properties": [{"id": k, "value": v} for k, v in props]}


class Board:
    """One dashboard: panels laid out on Grafana's 24-column grid, ids in order."""

    def __init__(self, uid: str, title: str, tags: list[str], description: str, time_from: str,
                 refresh: str = "1m"):
        self.uid, self.title, self.tags, self.description = uid, title, tags, description
        self.time_from, self.refresh = time_from, refresh
        self.panels: list[dict[str, Any]] = []
        self.variables: list[dict[str, Any]] = [datasource_variable()]

    def panel(self, kind: str, title: str, grid: tuple[int, int, int, int], targets: list[dict[str, Any]], *,
              description: str = "", unit: str | None = None, thresholds: dict[str, Any] | None = None,
              custom: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
              overrides: list[dict[str, Any]] | None = None, mappings: list[dict[str, Any]] | None = None,
              transformations: list[dict[str, Any]] | None = None, color: str | None = None,
              minmax: tuple[float | None, float | None] = (None, None), decimals: int | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
        x, y, w, h = grid
        defaults: dict[str, Any] = {
            "color": {"mode": color or ("thresholds" if kind in ("stat", "bargauge", "table", "geomap")
                                         else "palette-classic")},
            "thresholds": thresholds or NO_THRESHOLDS,
            "mappings": mappings or [],
        }
        if unit is not None:
            defaults["unit"] = unit
        if decimals is not None:
            defaults["decimals"] = decimals
        if minmax[0] is not None:
            defaults["min"] = minmax[0]
        if minmax[1] is not None:
            defaults["max"] = minmax[1]
        if custom is not None:
            defaults["custom"] = custom
        p: dict[str, Any] = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "datasource": DS,
            "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options or {},
        }
        if transformations:
            p["transformations"] = transformations
        if extra:
            p.update(extra)
        self.panels.append(p)
        return p

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["plume", *self.tags],
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "weekStart": "",
            "annotations": {"list": [{
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            }]},
            "links": [{
                "title": "Plume boards",
                "type": "dashboards",
                "tags": ["plume"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }],
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


def datasource_variable() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "influxdb",
        "regex": "",
        "current": {"selected": False, "text": "Plume InfluxDB", "value": "plume-influxdb"},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "skipUrlSync": False,
    }


def query_variable(name: str, label: str, query: str, *, multi: bool, include_all: bool,
                   all_value: str | None = None) -> dict[str, Any]:
    current: dict[str, Any] = ({"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {})
    v: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "regex": "",
        "current": current,
        "hide": 0,
        "includeAll": include_all,
        "multi": multi,
        "options": [],
        "refresh": 1,  # on dashboard load
        "sort": 1,  # alphabetical
        "skipUrlSync": False,
    }
    if all_value is not None:
        v["allValue"] = all_value
    return v


def custom_variable(name: str, label: str, choices: list[tuple[str, int]], description: str) -> dict[str, Any]:
    """A limit that differs per site or stack: `text : value` choices, the first is the default."""
    query = ", ".join(f"{text} : {value}" for text, value in choices)
    options = [{"selected": i == 0, "text": text, "value": str(value)} for i, (text, value) in enumerate(choices)]
    first_text, first_value = choices[0]
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "custom",
        "query": query,
        "current": {"selected": True, "text": first_text, "value": str(first_value)},
        "options": options,
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "skipUrlSync": False,
    }


# --- (1) City overview ----------------------------------------------------------------------------------------

def city_overview() -> Board:
    b = Board("plume-city-overview", "Plume · City overview", ["overview", "dust"],
              "Every site's latest dust levels against the ambient limits, where the sites are, and what is "
              "alarming now.", "now-24h")
    b.variables.append(query_variable("site", "Site", 'SHOW TAG VALUES FROM "dust" WITH KEY = "site"',
                                      multi=True, include_all=True))
    for i, (ch, name, limit, warn) in enumerate((("pm10", "PM10", PM10_24H, 100), ("tsp", "TSP", TSP_24H, 200))):
        b.panel(
            "bargauge", f"Latest {name} by site", (12 * i, 0, 12, 8),
            [target("A", f'SELECT last("{ch}") AS "{name}" FROM "dust" WHERE {where(SITE)} GROUP BY "site"',
                    alias="$tag_site")],
            description=f"The newest raw {name} reading of each site. Red from {limit} ug/m3, the 24-hour "
                        "grade II limit of GB 3095-2012 (a reading above it is a warning sign, not yet an "
                        "exceedance of the daily average).",
            unit="conμgm3", thresholds=limit_steps(limit, warn), minmax=(0, 2 * limit), decimals=0,
            options={"reduceOptions": REDUCE_LAST, "orientation": "horizontal", "displayMode": "gradient",
                     "valueMode": "color", "namePlacement": "auto", "showUnfilled": True, "sizing": "auto",
                     "minVizWidth": 8, "minVizHeight": 16, "maxVizHeight": 300},
        )
    b.panel(
        "geomap", "Sites by PM10 status", (0, 8, 12, 12),
        [target("A", f'SELECT last("lat") AS "lat", last("lon") AS "lon" FROM "plume_site" WHERE {where(SITE)} '
                     'GROUP BY "site"', fmt="table"),
         target("B", f'SELECT last("pm10") AS "PM10", last("tsp") AS "TSP" FROM "dust" WHERE {where(SITE)} '
                     'GROUP BY "site"', fmt="table")],
        description="Each site where its gateway says it is (site.latitude / site.longitude of the site file, "
                    "written as `plume_site`), coloured by its newest PM10 against the 24-hour limit.",
        unit="conμgm3", thresholds=limit_steps(PM10_24H, 100), decimals=0,
        transformations=[{"id": "joinByField", "options": {"byField": "site", "mode": "outer"}}],
        options={
            "view": {"id": "fit", "lat": 34, "lon": 109, "zoom": 5, "allLayers": True},
            "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True, "showScale": False,
                         "showMeasure": False, "showDebug": False},
            "basemap": {"type": "default", "name": "Basemap", "config": {}},
            "layers": [{
                "type": "markers",
                "name": "Sites",
                "config": {
                    "showLegend": True,
                    "style": {
                        "size": {"fixed": 10},
                        "color": {"field": "PM10", "fixed": "dark-green"},
                        "opacity": 0.8,
                        "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                        "text": {"field": "site", "mode": "field", "fixed": ""},
                        "textConfig": {"fontSize": 11, "offsetX": 0, "offsetY": -14, "textAlign": "center",
                                       "textBaseline": "middle"},
                    },
                },
                "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                "tooltip": True,
            }],
            "tooltip": {"mode": "details"},
        },
    )
    active_alarms_table(b, (12, 8, 12, 12))
    b.panel(
        "timeseries", "PM10 by site", (0, 20, 24, 8),
        [target("A", f'SELECT mean("pm10") AS "PM10" FROM "dust" WHERE {where(SITE)} '
                     'GROUP BY time($__interval), "site" fill(null)', alias="$tag_site")],
        description=f"Mean of the raw readings per interval; dashed: {PM10_24H} ug/m3 (24-hour grade II).",
        unit="conμgm3", thresholds=limit_steps(PM10_24H), custom=graph_custom(limit_line=True),
        options={"legend": LEGEND_TABLE, "tooltip": TOOLTIP}, extra={"interval": "1m"},
    )
    return b


def active_alarms_table(b: Board, grid: tuple[int, int, int, int], device: bool = False) -> None:
    cond = (SITE, DEVICE) if device else (SITE,)
    b.panel(
        "table", "Active alarms", grid,
        [target("A", 'SELECT last("active") AS "active", last("state") AS "state", last("value") AS "value", '
                     'last("limit") AS "limit", last("window") AS "window", last("started") AS "started", '
                     f'last("message") AS "message" FROM "alarms" WHERE {where(*cond)} '
                     'GROUP BY "site", "device", "channel", "rule"', fmt="table")],
        description="The last event of every alarm (rule, device, channel) of the last 30 days; kept when it is "
                    "still raised or acknowledged (active = 1).",
        thresholds=NO_THRESHOLDS,
        custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False, "filterable": True},
        overrides=[
            by_name("state", ("mappings", STATE_MAPPINGS), ("custom.cellOptions", {"type": "color-background"})),
            by_name("started", ("unit", "dateTimeAsIso")),
            by_name("message", ("custom.width", 420)),
        ],
        transformations=[
            {"id": "filterByValue", "options": {
                "type": "include", "match": "all",
                "filters": [{"fieldName": "active", "config": {"id": "equal", "options": {"value": 1}}}]}},
            {"id": "organize", "options": {"excludeByName": {"Time": True, "active": True}, "indexByName": {},
                                           "renameByName": {}}},
        ],
        options={"showHeader": True, "cellHeight": "sm", "sortBy": [{"displayName": "started", "desc": True}],
                 "footer": {"show": False, "reducer": ["sum"], "countRows": False}},
        extra={"timeFrom": "30d", "hideTimeOverride": False},
    )


# --- (2) Site detail ------------------------------------------------------------------------------------------

def site_detail() -> Board:
    b = Board("plume-site-detail", "Plume · Site detail", ["site", "dust"],
              "One construction site: dust, noise, wind, where the dust comes from, the 15-minute and hourly "
              "averages against the limits, and the data flags.", "now-24h")
    b.variables += [
        query_variable("site", "Site", 'SHOW TAG VALUES FROM "dust" WITH KEY = "site"',
                       multi=False, include_all=False),
        query_variable("device", "Device",
                       f'SHOW TAG VALUES FROM "dust" WITH KEY = "device" WHERE {SITE}', multi=True,
                       include_all=True),
        custom_variable("tsp_limit", "TSP limit (ug/m3)", [
            ("Shaanxi DB61/1078 earthworks, 1 h: 800", 800),
            ("Shaanxi DB61/1078 structure, 1 h: 700", 700),
            ("Liaoning DB21/2642 urban, 5 min: 800", 800),
            ("Liaoning DB21/2642 rural, 5 min: 1000", 1000),
            ("GB 3095 grade II, 24 h: 300", 300),
        ], "The TSP limit of the local standard that applies to this site, drawn on the TSP panels."),
    ]
    dust = where(SITE, DEVICE)
    b.panel(
        "stat", "Dust now", (0, 0, 12, 4),
        [target("A", f'SELECT last("pm10") AS "PM10", last("pm25") AS "PM2.5", last("tsp") AS "TSP" '
                     f'FROM "dust" WHERE {dust}', alias="$col")],
        description="Newest raw readings; colours against the 24-hour grade II limits (PM10 150, PM2.5 75, "
                    "TSP 300 ug/m3).",
        unit="conμgm3", thresholds=limit_steps(PM10_24H, 100), decimals=0,
        overrides=[by_name("PM2.5", ("thresholds", limit_steps(PM25_24H, 50))),
                   by_name("TSP", ("thresholds", limit_steps(TSP_24H, 200)))],
        options={"reduceOptions": REDUCE_LAST, "colorMode": "background", "graphMode": "area",
                 "justifyMode": "auto", "orientation": "auto", "textMode": "auto", "wideLayout": True,
                 "showPercentChange": False},
    )
    b.panel(
        "stat", "Noise now", (12, 0, 6, 4),
        [target("A", f'SELECT last("noise") AS "Noise" FROM "dust" WHERE {dust}', alias="$col")],
        description=f"GB 12523-2011: {NOISE_DAY} dB(A) by day (06-22), {NOISE_NIGHT} dB(A) at night.",
        unit="dB", thresholds=limit_steps(NOISE_DAY, NOISE_NIGHT), decimals=1,
        options={"reduceOptions": REDUCE_LAST, "colorMode": "background", "graphMode": "area",
                 "justifyMode": "auto", "orientation": "auto", "textMode": "auto", "wideLayout": True,
                 "showPercentChange": False},
    )
    b.panel(
        "stat", "Wind now", (18, 0, 6, 4),
        [target("A", f'SELECT last("wind_speed") AS "Wind speed", last("wind_dir") AS "Wind direction" '
                     f'FROM "dust" WHERE {dust}', alias="$col")],
        unit="velocityms", decimals=1,
        overrides=[by_name("Wind direction", ("unit", "degree"), ("decimals", 0))],
        options={"reduceOptions": REDUCE_LAST, "colorMode": "none", "graphMode": "none", "justifyMode": "auto",
                 "orientation": "auto", "textMode": "auto", "wideLayout": True, "showPercentChange": False},
    )
    b.panel(
        "timeseries", "PM10 and PM2.5", (0, 4, 12, 8),
        [target("A", f'SELECT mean("pm10") AS "PM10", mean("pm25") AS "PM2.5" FROM "dust" WHERE {dust} '
                     'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device $col")],
        description=f"Mean of the raw readings per interval. Dashed: PM10 {PM10_24H} ug/m3 (24-hour grade II; "
                    "the daily average is what it limits).",
        unit="conμgm3", thresholds=limit_steps(PM10_24H), custom=graph_custom(limit_line=True),
        options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "TSP against the local limit", (12, 4, 12, 8),
        [target("A", f'SELECT mean("tsp") AS "TSP" FROM "dust" WHERE {dust} '
                     'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device $col"),
         target("B", f'SELECT mean("tsp") * 0 + $tsp_limit AS "limit" FROM "dust" WHERE {dust} '
                     'GROUP BY time($__interval) fill(null)')],
        description="Mean of the raw readings per interval; red dashed: the TSP limit chosen above (the local "
                    "standard's, which judges 1-hour or 5-minute averages).",
        unit="conμgm3", custom=graph_custom(),
        overrides=[limit_series_override("B", "TSP limit")],
        options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "Noise", (0, 12, 12, 8),
        [target("A", f'SELECT max("noise") AS "Noise" FROM "dust" WHERE {dust} '
                     'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device $col")],
        description=f"Loudest reading per interval. Dashed: {NOISE_NIGHT} dB(A) (night) and {NOISE_DAY} dB(A) "
                    "(day), GB 12523-2011.",
        unit="dB", thresholds=limit_steps(NOISE_DAY, NOISE_NIGHT), custom=graph_custom(limit_line=True),
        options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "Wind", (12, 12, 12, 8),
        [target("A", f'SELECT mean("wind_speed") AS "Wind speed", last("wind_dir") AS "Wind direction" '
                     f'FROM "dust" WHERE {dust} GROUP BY time($__interval), "device" fill(null)',
                alias="$tag_device $col")],
        unit="velocityms", custom=graph_custom(),
        overrides=[{"matcher": {"id": "byRegexp", "options": ".*Wind direction"}, "properties": [
            {"id": "unit", "value": "degree"}, {"id": "min", "value": 0}, {"id": "max", "value": 360},
            {"id": "custom.axisPlacement", "value": "right"}, {"id": "custom.drawStyle", "value": "points"}]}],
        options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "histogram", "Wind rose: where the wind blows from", (0, 20, 8, 9),
        [target("A", f'SELECT last("wind_dir") AS "wind_dir" FROM "dust" WHERE {dust} '
                     'GROUP BY time($__interval), "device" fill(none)', alias="$tag_device")],
        description="How often the wind came from each 45-degree sector (0 = north, 90 = east), one sample per "
                    "interval. A polar wind rose needs a panel plugin (see grafana/README.md).",
        unit="degree", custom={"lineWidth": 1, "fillOpacity": 80, "gradientMode": "none",
                               "hideFrom": {"legend": False, "tooltip": False, "viz": False}},
        options={"bucketSize": 45, "bucketOffset": 22.5, "combine": True, "legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "xychart", "Pollution rose: dust by wind direction", (8, 20, 16, 9),
        [target("A", f'SELECT mean("pm10") AS "PM10", mean("tsp") AS "TSP", last("wind_dir") AS "wind_dir" '
                     f'FROM "dust" WHERE {dust} GROUP BY time($__interval) fill(none)', fmt="table")],
        description="Dust against the direction the wind came from: a cluster at one direction points at the "
                    "source (a haul road, a neighbouring site).",
        unit="conμgm3",
        custom={"show": "points", "pointSize": {"fixed": 5}, "axisPlacement": "auto", "axisLabel": "",
                "axisBorderShow": False, "axisCenteredZero": False, "axisColorMode": "text",
                "scaleDistribution": {"type": "linear"},
                "hideFrom": {"legend": False, "tooltip": False, "viz": False}},
        overrides=[by_name("wind_dir", ("unit", "degree"), ("min", 0), ("max", 360),
                           ("displayName", "Wind direction"))],
        options={"seriesMapping": "auto", "dims": {"frame": 0, "x": "wind_dir", "exclude": []}, "series": [],
                 "legend": LEGEND, "tooltip": {"mode": "single", "sort": "none"}},
    )
    b.panel(
        "timeseries", "15-minute averages", (0, 29, 12, 8),
        [target("A", f'SELECT "pm10_avg" AS "PM10", "tsp_avg" AS "TSP" FROM "dust_15m" WHERE {dust} '
                     'GROUP BY "device"', alias="$tag_device $col"),
         target("B", f'SELECT max("tsp_avg") * 0 + $tsp_limit AS "limit" FROM "dust_15m" WHERE {dust} '
                     'GROUP BY time(15m) fill(none)')],
        description=f"The gateway's 15-minute averages (point = window start). Dashed: PM10 {PM10_24H} ug/m3; "
                    "red dashed: the TSP limit chosen above.",
        unit="conμgm3", thresholds=limit_steps(PM10_24H), custom=graph_custom(limit_line=True, points="always"),
        overrides=[limit_series_override("B", "TSP limit")],
        options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "Hourly averages", (12, 29, 12, 8),
        [target("A", f'SELECT "pm10_avg" AS "PM10", "tsp_avg" AS "TSP" FROM "dust_1h" WHERE {dust} '
                     'GROUP BY "device"', alias="$tag_device $col"),
         target("B", f'SELECT max("tsp_avg") * 0 + $tsp_limit AS "limit" FROM "dust_1h" WHERE {dust} '
                     'GROUP BY time(1h) fill(none)')],
        description=f"The gateway's hourly averages (valid with >= 45 valid minutes). Dashed: PM10 {PM10_24H} "
                    "ug/m3; red dashed: the TSP limit chosen above.",
        unit="conμgm3", thresholds=limit_steps(PM10_24H), custom=graph_custom(draw="bars", limit_line=True,
                                                                              fill=60),
        overrides=[limit_series_override("B", "TSP limit"),
                   {"matcher": {"id": "byFrameRefID", "options": "B"},
                    "properties": [{"id": "custom.drawStyle", "value": "line"}]}],
        options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "state-timeline", "Data flags of the readings", (0, 37, 24, 7),
        [target("A", 'SELECT last("pm10_flag") AS "PM10", last("tsp_flag") AS "TSP", last("noise_flag") AS '
                     f'"Noise", last("wind_speed_flag") AS "Wind" FROM "dust" WHERE {dust} '
                     'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device $col")],
        description="HJ 212 flag of each channel (N normal; B no answer; D instrument fault; C calibration; "
                    "M maintenance; T over range). Only N values count towards valid averages.",
        mappings=FLAG_MAPPINGS, custom={"lineWidth": 0, "fillOpacity": 80,
                                        "hideFrom": {"legend": False, "tooltip": False, "viz": False}},
        options={"mergeValues": True, "showValue": "auto", "alignValue": "left", "rowHeight": 0.9,
                 "legend": LEGEND, "tooltip": {"mode": "single", "sort": "none"}},
    )
    b.panel(
        "state-timeline", "Validity of the 15-minute averages", (0, 44, 24, 6),
        [target("A", f'SELECT "pm10_flag" AS "PM10", "tsp_flag" AS "TSP" FROM "dust_15m" WHERE {dust} '
                     'GROUP BY "device"', alias="$tag_device $col")],
        description="N: valid (>= 75 % of its minutes valid); otherwise the dominant flag underneath.",
        mappings=FLAG_MAPPINGS, custom={"lineWidth": 0, "fillOpacity": 80,
                                        "hideFrom": {"legend": False, "tooltip": False, "viz": False}},
        options={"mergeValues": True, "showValue": "auto", "alignValue": "left", "rowHeight": 0.9,
                 "legend": LEGEND, "tooltip": {"mode": "single", "sort": "none"}},
    )
    return b


# --- (3) Stack compliance -------------------------------------------------------------------------------------

POLLUTANTS = (("so2", "SO2", "so2_limit"), ("nox", "NOx", "nox_limit"), ("particulate", "Particulate", "pm_limit"))


def stack_compliance() -> Board:
    b = Board("plume-stack-compliance", "Plume · Stack compliance", ["stack", "cems"],
              "Converted (reference-O2) hourly concentrations against the emission limits, valid hours, emission "
              "rate and daily mass.", "now-7d")
    b.variables += [
        query_variable("site", "Site", 'SHOW TAG VALUES FROM "cems" WITH KEY = "site"',
                       multi=False, include_all=False),
        query_variable("device", "Stack", f'SHOW TAG VALUES FROM "cems" WITH KEY = "device" WHERE {SITE}',
                       multi=True, include_all=True),
        custom_variable("so2_limit", "SO2 limit (mg/m3)", [
            ("Ultra-low emission: 35", 35), ("GB 13271 special, gas: 50", 50), ("GB 13271 special, coal: 200", 200),
            ("GB 13271 new, coal: 300", 300), ("GB 13271 in service, coal: 400", 400)],
            "Hourly converted SO2 limit of the stack's standard."),
        custom_variable("nox_limit", "NOx limit (mg/m3)", [
            ("Ultra-low emission: 50", 50), ("GB 13271 special, gas: 150", 150),
            ("GB 13271 special, coal: 200", 200), ("GB 13271 new, coal: 300", 300),
            ("GB 13271 in service, coal: 400", 400)],
            "Hourly converted NOx (as NO2) limit of the stack's standard."),
        custom_variable("pm_limit", "Particulate limit (mg/m3)", [
            ("Ultra-low emission: 10", 10), ("GB 13271 special, gas: 20", 20), ("GB 13271 special, coal: 30", 30),
            ("GB 13271 new, coal: 50", 50), ("GB 13271 in service, coal: 80", 80)],
            "Hourly converted particulate limit of the stack's standard."),
    ]
    stack = where(SITE, DEVICE)
    b.panel(
        "stat", "Latest hour, % of the limit", (0, 0, 12, 5),
        [target("A", "SELECT " + ", ".join(f'last("{p}_zs_avg") / ${var} * 100 AS "{name}"'
                                           for p, name, var in POLLUTANTS) + f' FROM "cems_1h" WHERE {stack}')],
        description="Converted hourly average of the newest hour divided by the limit chosen above. Compliance "
                    "is judged on valid hours (flag N) of the converted (Zs) concentration.",
        unit="percent", thresholds=limit_steps(100, 80), decimals=0,
        options={"reduceOptions": REDUCE_LAST, "colorMode": "background", "graphMode": "none",
                 "justifyMode": "auto", "orientation": "auto", "textMode": "auto", "wideLayout": True,
                 "showPercentChange": False},
    )
    b.panel(
        "stat", "Valid hours in the range", (12, 0, 12, 5),
        [target(ref, f'SELECT count("{p}_zs_avg") AS "{name}" FROM "cems_1h" WHERE {stack} '
                     f"AND \"{p}_zs_flag\" = 'N'")
         for ref, (p, name, _) in zip("ABC", POLLUTANTS, strict=True)],
        description="Hours whose converted average is valid (flag N: at least 45 valid minutes).",
        unit="none", decimals=0,
        options={"reduceOptions": {"values": False, "calcs": ["sum"], "fields": ""}, "colorMode": "none",
                 "graphMode": "none", "justifyMode": "auto", "orientation": "auto", "textMode": "value_and_name",
                 "wideLayout": True, "showPercentChange": False},
    )
    for i, (p, name, var) in enumerate(POLLUTANTS):
        b.panel(
            "timeseries", f"{name}, converted hourly average", (8 * i, 5, 8, 8),
            [target("A", f'SELECT "{p}_zs_avg" AS "{name}" FROM "cems_1h" WHERE {stack} GROUP BY "device"',
                    alias="$tag_device $col"),
             target("B", f'SELECT max("{p}_zs_avg") * 0 + ${var} AS "limit" FROM "cems_1h" WHERE {stack} '
                         'GROUP BY time(1h) fill(none)')],
            description=f"Hourly average of {name} at standard conditions, dry, converted to the reference O2 "
                        "(Zs); red dashed: the limit chosen above.",
            unit="conmgm3", custom=graph_custom(points="always"),
            overrides=[limit_series_override("B", f"{name} limit")],
            options={"legend": LEGEND, "tooltip": TOOLTIP},
        )
    b.panel(
        "timeseries", "Valid hours per day", (0, 13, 12, 8),
        [target("A", f'SELECT "so2_zs_valid" AS "SO2", "nox_zs_valid" AS "NOx", "particulate_zs_valid" AS '
                     f'"Particulate" FROM "cems_1d" WHERE {stack} GROUP BY "device"', alias="$tag_device $col")],
        description=f"Valid hours of each local day; dashed: {VALID_DAY_HOURS} (a day needs at least "
                    f"{VALID_DAY_HOURS} valid hours to count).",
        unit="none", thresholds=steps(("red", None), ("green", VALID_DAY_HOURS)), minmax=(0, 24),
        custom=graph_custom(draw="bars", limit_line=True, fill=60),
        options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "Emission rate", (12, 13, 12, 8),
        [target("A", f'SELECT mean("so2_rate") AS "SO2", mean("nox_rate") AS "NOx", mean("particulate_rate") AS '
                     f'"Particulate" FROM "cems" WHERE {stack} GROUP BY time($__interval), "device" fill(null)',
                alias="$tag_device $col")],
        description="Concentration (standard, dry, not O2-corrected) x standard dry flow.",
        unit="suffix: kg/h", custom=graph_custom(), options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "Daily emitted mass", (0, 21, 12, 8),
        [target("A", f'SELECT "so2_rate_{MASS}" AS "SO2", "nox_rate_{MASS}" AS "NOx", "particulate_rate_{MASS}" '
                     f'AS "Particulate" FROM "cems_1d" WHERE {stack} GROUP BY "device"', alias="$tag_device $col")],
        description="Mass emitted per local day (the emission rate summed over the day's minutes).",
        unit="masskg", custom=graph_custom(draw="bars", fill=60), options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "Converted concentrations, live", (12, 21, 12, 8),
        [target("A", f'SELECT mean("so2_zs") AS "SO2", mean("nox_zs") AS "NOx", mean("particulate_zs") AS '
                     f'"Particulate" FROM "cems" WHERE {stack} GROUP BY time($__interval), "device" fill(null)',
                alias="$tag_device $col")],
        description="The converted (Zs) value of every reading: what the hourly averages are made of.",
        unit="conmgm3", custom=graph_custom(), options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "Measured concentrations, as reported", (0, 29, 12, 8),
        [target("A", f'SELECT mean("so2") AS "SO2", mean("nox") AS "NOx", mean("particulate") AS "Particulate" '
                     f'FROM "cems" WHERE {stack} GROUP BY time($__interval), "device" fill(null)',
                alias="$tag_device $col")],
        description="What the analyzers report, before the standard-conditions, dry-basis and reference-O2 "
                    "conversions (no limit applies to these).",
        unit="conmgm3", custom=graph_custom(), options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "O2 and flue temperature", (12, 29, 12, 8),
        [target("A", f'SELECT mean("o2") AS "O2", mean("flue_temperature") AS "Flue temperature" FROM "cems" '
                     f'WHERE {stack} GROUP BY time($__interval), "device" fill(null)', alias="$tag_device $col")],
        unit="percent", custom=graph_custom(),
        overrides=[{"matcher": {"id": "byRegexp", "options": ".*Flue temperature"}, "properties": [
            {"id": "unit", "value": "celsius"}, {"id": "custom.axisPlacement", "value": "right"}]}],
        options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "state-timeline", "Hourly validity (N = valid hour)", (0, 37, 24, 6),
        [target("A", f'SELECT "so2_zs_flag" AS "SO2", "nox_zs_flag" AS "NOx", "particulate_zs_flag" AS '
                     f'"Particulate" FROM "cems_1h" WHERE {stack} GROUP BY "device"', alias="$tag_device $col")],
        mappings=FLAG_MAPPINGS, custom={"lineWidth": 0, "fillOpacity": 80,
                                        "hideFrom": {"legend": False, "tooltip": False, "viz": False}},
        options={"mergeValues": True, "showValue": "auto", "alignValue": "left", "rowHeight": 0.9,
                 "legend": LEGEND, "tooltip": {"mode": "single", "sort": "none"}},
    )
    b.panel(
        "state-timeline", "Analyzer flags", (0, 43, 24, 6),
        [target("A", 'SELECT last("so2_flag") AS "SO2", last("nox_flag") AS "NOx", last("o2_flag") AS "O2", '
                     f'last("particulate_flag") AS "Particulate" FROM "cems" WHERE {stack} '
                     'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device $col")],
        description="HJ 212 flag of the raw readings (C calibration and M maintenance hours do not count).",
        mappings=FLAG_MAPPINGS, custom={"lineWidth": 0, "fillOpacity": 80,
                                        "hideFrom": {"legend": False, "tooltip": False, "viz": False}},
        options={"mergeValues": True, "showValue": "auto", "alignValue": "left", "rowHeight": 0.9,
                 "legend": LEGEND, "tooltip": {"mode": "single", "sort": "none"}},
    )
    return b


# --- (4) Alarms -----------------------------------------------------------------------------------------------

def alarms() -> Board:
    b = Board("plume-alarms", "Plume · Alarms", ["alarms"],
              "Every alarm event (raised, acknowledged, reminders, cleared) on a timeline and in a table.", "now-7d")
    b.variables += [
        query_variable("site", "Site", 'SHOW TAG VALUES FROM "plume_device" WITH KEY = "site"',
                       multi=True, include_all=True),
        # All = any device, including alarms about the gateway itself (log drops, disk) that name no device
        query_variable("device", "Device",
                       f'SHOW TAG VALUES FROM "plume_device" WITH KEY = "device" WHERE {SITE}',
                       multi=True, include_all=True, all_value=".*"),
    ]
    cond = where(SITE, DEVICE)
    b.panel(
        "stat", "Active alarms", (0, 0, 6, 6),
        [target("A", f'SELECT last("active") AS "active" FROM "alarms" WHERE {cond} '
                     'GROUP BY "site", "device", "channel", "rule"', fmt="table")],
        description="Alarms whose last event (last 30 days) leaves them raised or acknowledged.",
        unit="none", thresholds=steps(("green", None), ("red", 1)), decimals=0,
        options={"reduceOptions": {"values": False, "calcs": ["sum"], "fields": "/^active$/"},
                 "colorMode": "background", "graphMode": "none", "justifyMode": "auto", "orientation": "auto",
                 "textMode": "value", "wideLayout": True, "showPercentChange": False},
        extra={"timeFrom": "30d", "hideTimeOverride": False},
    )
    b.panel(
        "timeseries", "Alarm events", (6, 0, 18, 6),
        [target("A", f'SELECT count("event_id") AS "events" FROM "alarms" WHERE {cond} '
                     'GROUP BY time($__interval), "rule" fill(none)', alias="$tag_rule")],
        description="Events (raised, acknowledged, reminders, cleared) per interval and rule.",
        unit="none", decimals=0, custom=graph_custom(draw="bars", fill=80),
        options={"legend": LEGEND, "tooltip": TOOLTIP}, extra={"interval": "1h"},
    )
    b.panel(
        "state-timeline", "Alarm timeline", (0, 6, 24, 10),
        [target("A", f'SELECT last("state") AS "state" FROM "alarms" WHERE {cond} '
                     'GROUP BY time($__interval), "rule", "device", "channel" fill(previous)',
                alias="$tag_rule $tag_device/$tag_channel")],
        description="State of each alarm (rule, device, channel) over time: red raised, orange acknowledged, "
                    "green cleared.",
        mappings=STATE_MAPPINGS, custom={"lineWidth": 0, "fillOpacity": 80,
                                         "hideFrom": {"legend": False, "tooltip": False, "viz": False}},
        options={"mergeValues": True, "showValue": "never", "alignValue": "left", "rowHeight": 0.8,
                 "legend": LEGEND, "tooltip": {"mode": "single", "sort": "none"}},
    )
    b.panel(
        "table", "Alarm events (newest first)", (0, 16, 24, 10),
        [target("A", 'SELECT "state" AS "state", "value" AS "value", "limit" AS "limit", "window" AS "window", '
                     '"started" AS "started", "message" AS "message", "event_id" AS "event_id" FROM "alarms" '
                     f'WHERE {cond} GROUP BY "site", "device", "channel", "rule"', fmt="table")],
        description="raised / acknowledged / renotify / cleared with the value, the limit, the averaging window "
                    "and since when the exceedance lasts.",
        thresholds=NO_THRESHOLDS,
        custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False, "filterable": True},
        overrides=[
            by_name("state", ("mappings", STATE_MAPPINGS), ("custom.cellOptions", {"type": "color-background"})),
            by_name("started", ("unit", "dateTimeAsIso")),
            by_name("message", ("custom.width", 420)),
            by_name("event_id", ("custom.hidden", True)),
        ],
        options={"showHeader": True, "cellHeight": "sm", "sortBy": [{"displayName": "Time", "desc": True}],
                 "footer": {"show": False, "reducer": ["sum"], "countRows": False}},
    )
    active_alarms_table(b, (0, 26, 24, 8), device=True)
    return b


# --- (5) Gateway health ---------------------------------------------------------------------------------------

def gateway_health() -> Board:
    b = Board("plume-gateway-health", "Plume · Gateway health", ["operations", "health"],
              "Is every gateway polling, delivering and keeping up: poll success and latency, the durable log's "
              "backlog, drops, reconnects.", "now-6h", refresh="30s")
    b.variables += [
        query_variable("site", "Site", 'SHOW TAG VALUES FROM "plume_device" WITH KEY = "site"',
                       multi=True, include_all=True),
        query_variable("device", "Device",
                       f'SHOW TAG VALUES FROM "plume_device" WITH KEY = "device" WHERE {SITE}',
                       multi=True, include_all=True),
        query_variable("sink", "Sink", f'SHOW TAG VALUES FROM "plume_sink" WITH KEY = "sink" WHERE {SITE}',
                       multi=True, include_all=True),
    ]
    dev, sink, site = where(SITE, DEVICE), where(SITE, SINK), where(SITE)
    stat_opts = {"reduceOptions": REDUCE_LAST, "colorMode": "background", "graphMode": "area",
                 "justifyMode": "auto", "orientation": "auto", "textMode": "auto", "wideLayout": True,
                 "showPercentChange": False}
    b.panel(
        "stat", "Devices online", (0, 0, 6, 4),
        [target("A", f'SELECT last("online") AS "online" FROM "plume_device" WHERE {dev} '
                     'GROUP BY "site", "device"', fmt="table")],
        description="Devices whose last poll answered.", unit="none", decimals=0,
        options={**stat_opts, "reduceOptions": {"values": False, "calcs": ["sum"], "fields": "/^online$/"},
                 "colorMode": "value", "graphMode": "none"},
    )
    b.panel(
        "stat", "Poll success since start", (6, 0, 6, 4),
        [target("A", f'SELECT last("success_rate") * 100 AS "success" FROM "plume_device" WHERE {dev} '
                     'GROUP BY "device"', alias="$tag_device")],
        unit="percent", thresholds=steps(("red", None), ("orange", 90), ("green", 99)), decimals=1,
        options=stat_opts,
    )
    b.panel(
        "stat", "Undelivered readings", (12, 0, 6, 4),
        [target("A", f'SELECT last("depth") AS "depth" FROM "plume_sink" WHERE {sink} GROUP BY "sink"',
                alias="$tag_sink")],
        description="Readings committed to the log and not yet confirmed by each sink.",
        unit="none", thresholds=steps(("green", None), ("orange", 1000), ("red", 10000)), decimals=0,
        options=stat_opts,
    )
    b.panel(
        "stat", "Readings dropped by the disk cap", (18, 0, 6, 4),
        [target("A", f'SELECT last("dropped") AS "dropped" FROM "plume_log" WHERE {site} GROUP BY "site"',
                alias="$tag_site")],
        description="Total since the log was created: readings the disk cap removed before every sink had them.",
        unit="none", thresholds=steps(("green", None), ("red", 1)), decimals=0, options=stat_opts,
    )
    b.panel(
        "timeseries", "Poll success rate", (0, 4, 12, 8),
        [target("A", f'SELECT mean("success_rate") * 100 AS "success" FROM "plume_device" WHERE {dev} '
                     'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device")],
        description="Successful polls / polls since the gateway started.",
        unit="percent", minmax=(0, 100), thresholds=steps(("red", None), ("orange", 90), ("green", 99)),
        custom=graph_custom(), options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "Failed polls", (12, 4, 12, 8),
        [target("A", f'SELECT spread("failures") AS "failed polls" FROM "plume_device" WHERE {dev} '
                     'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device")],
        description="Polls without a usable answer per interval.",
        unit="none", custom=graph_custom(draw="bars", fill=60), options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "Poll latency", (0, 12, 12, 8),
        [target("A", f'SELECT mean("latency_ms") AS "latency" FROM "plume_device" WHERE {dev} '
                     'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device")],
        description="Duration of the last poll of each device (all its requests on the bus).",
        unit="ms", custom=graph_custom(), options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "state-timeline", "Devices online", (12, 12, 12, 8),
        [target("A", f'SELECT last("online") AS "online" FROM "plume_device" WHERE {dev} '
                     'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device")],
        mappings=ONLINE_MAPPINGS, custom={"lineWidth": 0, "fillOpacity": 80,
                                          "hideFrom": {"legend": False, "tooltip": False, "viz": False}},
        options={"mergeValues": True, "showValue": "never", "alignValue": "left", "rowHeight": 0.9,
                 "legend": LEGEND, "tooltip": {"mode": "single", "sort": "none"}},
    )
    b.panel(
        "timeseries", "Log backlog per sink", (0, 20, 12, 8),
        [target("A", f'SELECT max("depth") AS "undelivered" FROM "plume_sink" WHERE {sink} '
                     'GROUP BY time($__interval), "sink" fill(null)', alias="$tag_sink $col"),
         target("B", f'SELECT max("age_s") AS "oldest" FROM "plume_sink" WHERE {sink} '
                     'GROUP BY time($__interval), "sink" fill(null)', alias="$tag_sink $col")],
        description="Readings waiting for each sink, and the age of the oldest of them (right axis).",
        unit="none", custom=graph_custom(),
        overrides=[{"matcher": {"id": "byFrameRefID", "options": "B"}, "properties": [
            {"id": "unit", "value": "s"}, {"id": "custom.axisPlacement", "value": "right"}]}],
        options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "Delivery latency", (12, 20, 12, 8),
        [target("A", f'SELECT mean("latency_p50_ms") AS "p50", max("latency_p99_ms") AS "p99" FROM "plume_sink" '
                     f'WHERE {sink} GROUP BY time($__interval), "sink" fill(null)', alias="$tag_sink $col")],
        description="From the poll to the target's confirmation (MQTT PUBACK, InfluxDB 204).",
        unit="ms", custom=graph_custom(), options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "Drops and rejections", (0, 28, 12, 8),
        [target("A", f'SELECT max("dropped") AS "dropped", max("rejected") AS "rejected" FROM "plume_sink" '
                     f'WHERE {sink} GROUP BY time($__interval), "sink" fill(null)', alias="$tag_sink $col")],
        description="Readings lost to the disk cap before this sink had them, and points the target refused "
                    "for good (kept in the log's rejected table). Anything above 0 needs a look.",
        unit="none", thresholds=steps(("green", None), ("red", 1)), custom=graph_custom(limit_line=True),
        options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "timeseries", "Reconnects", (12, 28, 12, 8),
        [target("A", f'SELECT max("reconnects") AS "reconnects" FROM "plume_sink" WHERE {sink} '
                     'GROUP BY time($__interval), "sink" fill(null)', alias="$tag_sink")],
        description="Reconnections of each sink since the gateway started.",
        unit="none", decimals=0, custom=graph_custom(), options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    b.panel(
        "state-timeline", "Sinks connected", (0, 36, 12, 6),
        [target("A", f'SELECT last("connected") AS "connected" FROM "plume_sink" WHERE {sink} '
                     'GROUP BY time($__interval), "sink" fill(null)', alias="$tag_sink")],
        mappings=[{"type": "value", "options": {
            "0": {"text": "disconnected", "color": "red", "index": 0},
            "1": {"text": "connected", "color": "green", "index": 1}}}],
        custom={"lineWidth": 0, "fillOpacity": 80, "hideFrom": {"legend": False, "tooltip": False, "viz": False}},
        options={"mergeValues": True, "showValue": "never", "alignValue": "left", "rowHeight": 0.9,
                 "legend": LEGEND, "tooltip": {"mode": "single", "sort": "none"}},
    )
    b.panel(
        "timeseries", "The durable log", (12, 36, 12, 6),
        [target("A", f'SELECT max("readings") AS "readings held", max("buffered") AS "buffered" FROM "plume_log" '
                     f'WHERE {site} GROUP BY time($__interval), "site" fill(null)', alias="$tag_site $col"),
         target("B", f'SELECT max("bytes") AS "size" FROM "plume_log" WHERE {site} '
                     'GROUP BY time($__interval), "site" fill(null)', alias="$tag_site $col")],
        unit="none", custom=graph_custom(),
        overrides=[{"matcher": {"id": "byFrameRefID", "options": "B"}, "properties": [
            {"id": "unit", "value": "decbytes"}, {"id": "custom.axisPlacement", "value": "right"}]}],
        options={"legend": LEGEND, "tooltip": TOOLTIP},
    )
    return b


# folder (dashboards/<folder>/, one Grafana folder per purpose) -> boards
BOARDS = {
    "overview": [city_overview],
    "sites": [site_detail],
    "stacks": [stack_compliance],
    "alarms": [alarms],
    "operations": [gateway_health],
}


def files() -> dict[Path, str]:
    """Every dashboard file this script writes: path -> JSON text."""
    out: dict[Path, str] = {}
    for folder, makers in BOARDS.items():
        for make in makers:
            board = make()
            name = board.uid.removeprefix("plume-") + ".json"
            out[DASHBOARDS / folder / name] = json.dumps(board.to_json(), indent=2, ensure_ascii=False) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="Exit 1 if a dashboard file is not what this writes.")
    args = ap.parse_args(argv)
    stale = []
    for path, text in files().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT.parent)}")
    for path in stale:
        print(f"{path.relative_to(ROOT.parent)}: differs from grafana/build.py (run it)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
