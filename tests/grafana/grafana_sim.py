"""What Grafana 11 does to a raw InfluxQL panel query before InfluxDB sees it — reproduced, since no Grafana server
can run on these machines (not in Debian; the PyPI and npm "grafana" packages are placeholders).

Two stages, as in Grafana's code:

1. Front end (public/app/plugins/datasource/influxdb/datasource.ts, `applyTemplateVariables` with the backend
   migration on, the default): `templateSrv.replace(query, scopedVars minus __interval/__interval_ms, 'regex')`.
   Every dashboard variable — `$var`, `${var}`, `${var:fmt}`, `[[var]]` — is formatted with the *regex* format
   whatever its context: a value is regex-escaped, several values become `(a|b)`, "All" without a custom all
   value is every option, a custom all value (`allValue`) is inserted as it is. Names that are not variables
   (`$timeFilter`, `$__interval`, `$interval`) are left for the back end.
   Regex escaping exists twice in Grafana: `kbn.regexEscape` of the classic template service (also escapes `-`)
   and `escapeRegex` of @grafana/data used by dashboard scenes (does not); the tests run both.
2. Back end (pkg/tsdb/influxdb/models/query.go, `Build`): `$timeFilter` -> `time >= <from>ms and time <= <to>ms`,
   then `$interval`, `$__interval_ms`, `$__interval` (gtime.FormatInterval of the request's interval: 10s, 1m,
   ...). `$__timeFilter` is NOT an InfluxQL macro (it belongs to the SQL data sources): left as it is, InfluxDB
   rejects it.

The request's interval is the front end's `rangeutil.calculateInterval`: roundInterval(range / maxDataPoints),
at least the panel's min interval or the data source's `timeInterval`; maxDataPoints is the panel's width in
pixels unless the panel sets it (approximated from gridPos here).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

KBN_ESCAPE = re.compile(r"[-/\\^$*+?.()|\[\]{}]")  # app/core/utils/kbn.ts regexEscape
DATA_ESCAPE = re.compile(r"[\\^$*+?.()|\[\]{}/]")  # @grafana/data escapeRegex
ESCAPERS: dict[str, Callable[[str], str]] = {
    "kbn": lambda v: KBN_ESCAPE.sub(lambda m: "\\" + m.group(0), v),
    "scenes": lambda v: DATA_ESCAPE.sub(lambda m: "\\" + m.group(0), v),
}
# TemplateSrv's variable regex: $var | [[var:fmt]] | ${var.field:fmt}
VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")

# rangeutil.roundInterval (front end): below the first bound -> the rounded interval, in ms
_ROUND = [(10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
          (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
          (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
          (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
          (32400000, 21600000), (86400000, 43200000), (172800000, 86400000), (604800000, 86400000),
          (1814400000, 604800000), (3628800000, 2592000000)]
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
            "M": 2_592_000_000, "y": 31_536_000_000}


@dataclass(frozen=True)
class Value:
    """The current value of one dashboard variable."""

    value: str | tuple[str, ...]
    all_value: str | None = None  # set when "All" is selected and the variable has a custom all value


def format_regex(value: str | Sequence[str], escape: Callable[[str], str]) -> str:
    if isinstance(value, str):
        return escape(value)
    escaped = [escape(v) for v in value]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def replace(text: str, values: dict[str, Value], escaper: str = "kbn", fmt: str = "regex") -> str:
    """templateSrv.replace(text, vars, fmt): the front end's variable interpolation."""
    escape = ESCAPERS[escaper]

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        var = values.get(name)
        if var is None:
            return m.group(0)
        if var.all_value is not None:
            return var.all_value  # a custom all value is not formatted
        use = m.group(3) or m.group(6) or fmt
        if use == "regex":
            return format_regex(var.value, escape)
        if use == "raw":
            return var.value if isinstance(var.value, str) else ",".join(var.value)
        raise NotImplementedError(f"variable format {use!r}: the Plume boards use the default (regex) only")

    return VARIABLE.sub(sub, text)


def round_interval(ms: float) -> int:
    for bound, rounded in _ROUND:
        if ms < bound:
            return rounded
    return 31_536_000_000


def interval_ms(text: str) -> int:
    m = re.fullmatch(r"<?(\d+)(ms|s|m|h|d|w|M|y)>?", text.strip())
    if not m:
        raise ValueError(f"not an interval: {text!r}")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def calculate_interval(from_ms: int, to_ms: int, max_data_points: int, low_limit: str | None) -> int:
    """rangeutil.calculateInterval: the request's intervalMs."""
    ms = round_interval((to_ms - from_ms) / max_data_points)
    low = interval_ms(low_limit) if low_limit else 1
    return max(ms, low)


def format_interval(ms: int) -> str:
    """gtime.FormatInterval (Go back end)."""
    for unit, size in (("y", 31_536_000_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
                       ("ms", 1)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return "1ms"


def build(query: str, from_ms: int, to_ms: int, interval: int) -> str:
    """models.Query.Build for a raw query: the back end's macros, in Grafana's order."""
    text = format_interval(interval)
    res = query.replace("$timeFilter", f"time >= {from_ms}ms and time <= {to_ms}ms")
    res = res.replace("$interval", text)
    res = res.replace("$__interval_ms", str(interval))
    return res.replace("$__interval", text)


@dataclass(frozen=True)
class PanelRequest:
    from_ms: int
    to_ms: int
    interval: int


def panel_request(panel: dict[str, Any], dashboard_from: str, now_ms: int, ds_time_interval: str) -> PanelRequest:
    """Time range and interval of a panel's request: the dashboard's range (relative, `now-24h`), or the panel's
    own (`timeFrom: 30d`); maxDataPoints = the panel's pixel width (1920-pixel screen) unless it sets one."""
    rel = panel.get("timeFrom") or dashboard_from.removeprefix("now-")
    from_ms = now_ms - interval_ms(rel)
    width_px = max(100, round(panel["gridPos"]["w"] / 24 * 1860))
    max_points = int(panel.get("maxDataPoints") or width_px)
    low = panel.get("interval") or ds_time_interval
    return PanelRequest(from_ms, now_ms, calculate_interval(from_ms, now_ms, max_points, low))


def interpolate(query: str, values: dict[str, Value], req: PanelRequest, escaper: str = "kbn") -> str:
    return build(replace(query, values, escaper), req.from_ms, req.to_ms, req.interval)


def leftover_variables(query: str) -> list[str]:
    """`$name` still in a query (outside string literals): something neither stage replaced."""
    no_strings = re.sub(r"'(?:[^'\\]|\\.)*'", "''", query)
    return re.findall(r"\$\w+|\[\[\w+\]\]|\$\{[^}]*\}", no_strings)
