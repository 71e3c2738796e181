"""The dashboards as the tests see them, checked against Grafana's dashboard model.

The model is grafana-foundation-sdk (Grafana's own generated Python types of the dashboard schema and of every
core panel plugin's options and field config), pinned to the Grafana version of deploy/docker-compose.yml.
It decodes but does not validate, so two checks are built on it here:

- round trip: decode with the SDK (default plugins registered, so each panel's `options` and
  `fieldConfig.defaults.custom` go through that panel type's model), encode again, and report every key of the
  file that did not survive: a key the schema does not know (a typo, a key of another Grafana version);
- types: walk the decoded objects and check each attribute against the SDK's type annotations (enums and
  literals by value, lists, nested models, optional fields).

InfluxDB targets have no model in the SDK (they decode as an opaque bag); they are checked against the fields of
Grafana's InfluxQuery type instead (TARGET_KEYS).
"""

from __future__ import annotations

import enum
import json
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DASHBOARDS = GRAFANA / "dashboards"

# DataQuery (refId, hide, key, queryType, datasource) + InfluxQuery
# (public/app/plugins/datasource/influxdb/types.ts of Grafana 11)
TARGET_KEYS = {"refId", "hide", "key", "queryType", "datasource", "policy", "measurement", "resultFormat",
               "orderByTime", "tags", "groupBy", "select", "limit", "slimit", "tz", "fill", "rawQuery", "query",
               "alias", "adhocFilters"}
RESULT_FORMATS = {"time_series", "table", "logs"}


@dataclass(frozen=True)
class Board:
    path: Path
    data: dict[str, Any]

    @property
    def uid(self) -> str:
        return str(self.data["uid"])

    @property
    def folder(self) -> str:
        return self.path.parent.name

    def panels(self) -> Iterator[dict[str, Any]]:
        for p in self.data.get("panels", []):
            yield p
            yield from p.get("panels", [])  # collapsed rows

    def variables(self) -> list[dict[str, Any]]:
        return list(self.data.get("templating", {}).get("list", []))


def load_boards() -> list[Board]:
    return [Board(p, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(DASHBOARDS.glob("*/*.json"))]


def panel_targets() -> Iterator[tuple[Board, dict[str, Any], dict[str, Any]]]:
    for board in load_boards():
        for panel in board.panels():
            for t in panel.get("targets", []):
                yield board, panel, t


# --- grafana-foundation-sdk ------------------------------------------------------------------------------------

def sdk_dashboard(data: dict[str, Any]) -> Any:
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    return Dashboard.from_json(data)


def round_trip_losses(data: dict[str, Any]) -> list[str]:
    """Keys of `data` that the SDK's models drop (unknown to Grafana's schema)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    back = json.loads(json.dumps(sdk_dashboard(data), cls=JSONEncoder))
    return _losses(data, back, "")


def _losses(a: Any, b: Any, path: str) -> list[str]:
    if isinstance(a, dict):
        if not isinstance(b, dict):
            return [f"{path}: became {type(b).__name__}"]
        out = []
        for k, v in a.items():
            if k not in b:
                out.append(f"{path}.{k}: not in the schema")
            else:
                out += _losses(v, b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return [f"{path}: list changed"]
        return [x for i, (u, v) in enumerate(zip(a, b, strict=True)) for x in _losses(u, v, f"{path}[{i}]")]
    if a != b and not (isinstance(a, int | float) and isinstance(b, int | float) and float(a) == float(b)):
        return [f"{path}: {a!r} became {b!r}"]
    return []


def type_problems(obj: Any, path: str = "dashboard") -> list[str]:
    """Every attribute of the decoded SDK objects checked against the SDK's annotations."""
    problems: list[str] = []
    _check_model(obj, path, problems)
    return problems


def _is_model(x: Any) -> bool:
    return type(x).__module__.startswith("grafana_foundation_sdk.models") and hasattr(x, "to_json")


def _check_model(obj: Any, path: str, problems: list[str]) -> None:
    try:
        hints = typing.get_type_hints(type(obj))
    except Exception as exc:  # an annotation the SDK cannot resolve itself: say so, do not guess
        problems.append(f"{path}: cannot read the SDK's annotations of {type(obj).__name__}: {exc}")
        return
    for name, hint in hints.items():
        if name.startswith("_") or not hasattr(obj, name):
            continue
        _check(getattr(obj, name), hint, f"{path}.{name}", problems)


def _check(value: Any, hint: Any, path: str, problems: list[str]) -> None:
    if not _matches(value, hint, path, problems):
        problems.append(f"{path}: {value!r} is not {_name(hint)}")


def _matches(value: Any, hint: Any, path: str, problems: list[str]) -> bool:
    if hint is Any or hint is object:
        if _is_model(value):
            _check_model(value, path, problems)
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            trial: list[str] = []
            if _matches(value, arg, path, trial):
                problems += trial
                return True
        return False
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is list:
        if not isinstance(value, list):
            return False
        for i, item in enumerate(value):
            _check(item, args[0] if args else Any, f"{path}[{i}]", problems)
        return True
    if origin is dict:
        if not isinstance(value, dict):
            return False
        for k, v in value.items():
            _check(v, args[1] if len(args) == 2 else Any, f"{path}[{k!r}]", problems)
        return True
    if hint is type(None):
        return value is None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = {m.value for m in hint}
        return (value.value if isinstance(value, enum.Enum) else value) in values
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type):
        if isinstance(value, dict) and hint.__module__.startswith("grafana_foundation_sdk.models") \
                and hasattr(hint, "from_json"):
            # the SDK left a nested model undecoded (e.g. Panel.transformations): decode it here
            decoded = hint.from_json(value)
            problems += [f"{path}{loss}" for loss in _losses(value, decoded.to_json(), "")]
            _check_model(decoded, path, problems)
            return True
        if not isinstance(value, hint):
            return False
        if _is_model(value):
            _check_model(value, path, problems)
        return True
    return True  # a construct this walker does not know: the round trip still covers the keys


def _name(hint: Any) -> str:
    if typing.get_origin(hint) is None and isinstance(hint, type):
        return hint.__name__
    return re.sub(r"[\w.]+\.(\w+)", r"\1", str(hint))


# --- the SDK's list of unit ids -------------------------------------------------------------------------------

def grafana_units() -> set[str]:
    from grafana_foundation_sdk.models import units

    return {v for k, v in vars(units).items() if not k.startswith("_") and isinstance(v, str)}


def units_of(data: Any) -> Iterator[tuple[str, str]]:
    """(path, unit) of every unit set in a dashboard (field defaults and override properties)."""
    def walk(x: Any, path: str) -> Iterator[tuple[str, str]]:
        if isinstance(x, dict):
            if isinstance(x.get("unit"), str):
                yield path + ".unit", x["unit"]
            if x.get("id") == "unit" and isinstance(x.get("value"), str):
                yield path, x["value"]
            for k, v in x.items():
                yield from walk(v, f"{path}.{k}")
        elif isinstance(x, list):
            for i, v in enumerate(x):
                yield from walk(v, f"{path}[{i}]")

    yield from walk(data, "")


SELECT_ALIAS = re.compile(r'\bAS\s+"([^"]+)"', re.IGNORECASE)


def select_aliases(query: str) -> list[str]:
    """The column names a query's SELECT clause gives (every selected expression has an alias here)."""
    head = re.split(r"\bFROM\b", query, maxsplit=1, flags=re.IGNORECASE)[0]
    return SELECT_ALIAS.findall(head)


def group_by_tags(query: str) -> list[str]:
    m = re.search(r"\bGROUP BY\b(.*?)(?:\bfill\(|\bORDER BY\b|\bLIMIT\b|$)", query, re.IGNORECASE | re.DOTALL)
    if not m:
        return []
    return [t for t in re.findall(r'"([^"]+)"', m.group(1))]


def measurement_of(query: str) -> str:
    m = re.search(r'\bFROM\s+"([^"]+)"', query, re.IGNORECASE)
    assert m, f"no FROM \"measurement\" in {query}"
    return m.group(1)
