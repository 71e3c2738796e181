"""The part of Telegraf that deploy/central/telegraf.conf uses, to run real Plume payloads through that file.

Telegraf is not installable on these machines (not in Debian, not on PyPI or npm), so this follows its code and
documentation for exactly the features the config uses, and refuses every option it does not implement (a config
change that needs more fails the test instead of being silently ignored):

- config: TOML after Telegraf's `${VAR}` substitution (an unset variable is left as it is, as Telegraf >= 1.27
  does; so is `$share` and the regex processor's `${1}`);
- agent `omit_hostname` (otherwise a `host` tag is added);
- inputs.mqtt_consumer: `topics` (MQTT wildcards, `$share/<group>/` stripped), `topic_tag` (default "topic"),
  `fieldexclude`/`fieldinclude` (glob modifiers, applied to the input's metrics; a metric left without fields is
  dropped), data_format json_v2;
- parsers/json_v2 (plugins/parsers/json_v2/parser.go): measurement_name(_path), timestamp_path with
  timestamp_format unix/unix_ms/unix_us/unix_ns, `tag`/`field` with plain GJSON key paths, `object` with plain
  paths whose nested objects are flattened to `parent_child` keys (combineObject), `excluded_keys`,
  `included_keys`, `tags`, `renames`, `disable_prepend_keys`; JSON numbers become float64 fields, strings string
  fields, booleans bool fields, JSON null makes no field (testdata/null); the metrics of tags/fields and of
  objects are combined by cartesian product;
- processors.regex `field_rename` (Go regexp ReplaceAllString; `${1}`), with `tagpass`/`namepass` selectors and
  `order`.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Value = float | str | bool


@dataclass
class Metric:
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Value] = field(default_factory=dict)
    ts_ns: int | None = None

    def copy(self) -> Metric:
        return Metric(self.name, dict(self.tags), dict(self.fields), self.ts_ns)

    def merge_from(self, other: Metric) -> None:
        self.fields.update(other.fields)
        self.tags.update(other.tags)


class Unsupported(Exception):
    """The config uses something this emulator does not implement."""


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute_env(text: str, env: Mapping[str, str]) -> str:
    """Telegraf's ${VAR} replacement before parsing; unset variables stay as they are."""
    return _ENV.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def glob_match(patterns: list[str], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def topic_matches(filter_: str, topic: str) -> bool:
    if filter_.startswith("$share/"):
        filter_ = filter_.split("/", 2)[2]
    f, t = filter_.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_MISSING = object()


def gjson_get(doc: Any, path: str) -> Any:
    """GJSON for plain `a.b.c` key paths only (no wildcards, modifiers, arrays or escapes)."""
    if not _PLAIN_PATH.match(path):
        raise Unsupported(f"GJSON path {path!r}: only plain key paths are emulated")
    cur = doc
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return _MISSING
        cur = cur[key]
    return cur


def _go_string(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    return repr(v)


def _scalar(v: Any) -> Value:
    if isinstance(v, bool | str):
        return v
    if isinstance(v, int | float):
        return float(v)  # gjson: every JSON number is a float64
    raise Unsupported(f"value {v!r}")


_TS_SCALE = {"unix": 1_000_000_000, "unix_ms": 1_000_000, "unix_us": 1_000, "unix_ns": 1}
_JSON_V2_KEYS = {"measurement_name", "measurement_name_path", "timestamp_path", "timestamp_format", "tag", "field",
                 "object"}
_DATASET_KEYS = {"path", "rename", "type"}
_OBJECT_KEYS = {"path", "excluded_keys", "included_keys", "tags", "renames", "disable_prepend_keys", "fields"}


def _cartesian(a: list[Metric], b: list[Metric]) -> list[Metric]:
    if not a:
        return b
    if not b:
        return a
    out = []
    for x in a:
        for y in b:
            m = x.copy()
            m.merge_from(y)
            out.append(m)
    return out


def _convert(v: Any, typ: str) -> Value:
    if typ in ("", None):
        return _scalar(v)
    if typ == "string":
        return _go_string(v)
    if typ == "float":
        return float(v)
    raise Unsupported(f"type {typ!r}")


def json_v2(configs: list[dict[str, Any]], payload: bytes) -> list[Metric]:
    doc = json.loads(payload)
    metrics: list[Metric] = []
    for c in configs:
        unknown = set(c) - _JSON_V2_KEYS
        if unknown:
            raise Unsupported(f"json_v2 options {sorted(unknown)}")
        name = c.get("measurement_name", "")
        if "measurement_name_path" in c:
            r = gjson_get(doc, c["measurement_name_path"])
            if r is not _MISSING and not isinstance(r, dict | list):
                name = _go_string(r) if r is not None else ""
        ts_ns: int | None = None
        if "timestamp_path" in c:
            r = gjson_get(doc, c["timestamp_path"])
            if r is _MISSING or r is None:
                raise ValueError(f"the timestamp path {c['timestamp_path']} returned NULL")
            fmt = c.get("timestamp_format", "")
            if fmt not in _TS_SCALE:
                raise Unsupported(f"timestamp_format {fmt!r}")
            ts_ns = int(r) * _TS_SCALE[fmt]

        def datasets(key: str, tag: bool, c: dict[str, Any] = c, name: str = name,
                     ts_ns: int | None = ts_ns) -> list[Metric]:
            out: list[Metric] = []
            for ds in c.get(key, []):
                unknown = set(ds) - _DATASET_KEYS
                if unknown:
                    raise Unsupported(f"json_v2.{key} options {sorted(unknown)}")
                r = gjson_get(doc, ds["path"])
                if r is _MISSING:
                    raise ValueError(f"the path {ds['path']} doesn't exist")
                if isinstance(r, dict):
                    continue  # objects are ignored by field/tag
                if isinstance(r, list):
                    raise Unsupported("arrays in field/tag paths")
                set_name = (ds.get("rename") or ds["path"].split(".")[-1]).replace(" ", "_")
                m = Metric(name, ts_ns=ts_ns)
                if r is not None:
                    if tag:
                        m.tags[set_name] = _go_string(r)
                    else:
                        m.fields[set_name] = _convert(r, ds.get("type", ""))
                out = _cartesian(out, [m])
            return out

        fields = datasets("field", tag=False)
        tags = datasets("tag", tag=True)
        objects: list[Metric] = []
        for obj in c.get("object", []):
            unknown = set(obj) - _OBJECT_KEYS
            if unknown:
                raise Unsupported(f"json_v2.object options {sorted(unknown)}")
            r = gjson_get(doc, obj["path"])
            if r is _MISSING:
                raise ValueError(f"the path {obj['path']} doesn't exist")
            m = Metric(name, ts_ns=ts_ns)
            _combine_object(obj, r, "", m)
            objects.append(m)
        metrics += _cartesian(tags, fields)
        metrics = _cartesian(objects, metrics) if objects and metrics else metrics + objects
    return metrics


def _combine_object(obj: dict[str, Any], value: Any, parent: str, m: Metric) -> None:
    """combineObject: every key of a (nested) object becomes one field or tag of the same metric."""
    if not isinstance(value, dict):
        raise Unsupported("object paths must select a JSON object")
    for key, val in value.items():
        key_ = key.replace(" ", "_")
        set_name = f"{parent}_{key_}" if parent else key_
        if set_name in obj.get("excluded_keys", []):
            continue
        included = obj.get("included_keys", [])
        if included and not (set_name in included or set_name in obj.get("tags", [])
                             or (isinstance(val, dict) and any(i.startswith(set_name) for i in included))):
            continue
        if isinstance(val, list):
            raise Unsupported("arrays inside objects")
        if isinstance(val, dict):
            _combine_object(obj, val, set_name, m)
            continue
        if val is None:
            continue  # JSON null: no field
        out = key_ if obj.get("disable_prepend_keys") else set_name
        out = obj.get("renames", {}).get(set_name, out)
        if set_name in obj.get("tags", []):
            m.tags[out] = _go_string(val)
        else:
            m.fields[out] = _convert(val, obj.get("fields", {}).get(set_name, ""))


_GO_GROUP = re.compile(r"\$\{(\d+)\}|\$(\d+)")


def go_replace_all(pattern: str, replacement: str, s: str) -> str:
    py_repl = _GO_GROUP.sub(lambda m: f"\\g<{m.group(1) or m.group(2)}>", replacement)
    return re.sub(pattern, py_repl, s)


class Telegraf:
    INPUT_KEYS = frozenset({
        "servers", "topics", "topic_tag", "qos", "persistent_session", "client_id", "max_undelivered_messages",
        "username", "password", "tls_ca", "tls_cert", "tls_key", "connection_timeout", "data_format", "json_v2",
        "fieldexclude", "fieldinclude"})
    AGENT_KEYS = frozenset({"omit_hostname", "metric_batch_size", "metric_buffer_limit", "flush_interval",
                            "flush_jitter", "interval", "precision", "hostname"})
    REGEX_KEYS = frozenset({"order", "tagpass", "namepass", "field_rename"})

    def __init__(self, text: str, env: Mapping[str, str] | None = None, hostname: str = "ingest-1"):
        self.conf = tomllib.loads(substitute_env(text, env or {}))
        agent = self.conf.get("agent", {})
        self._check("agent", agent, self.AGENT_KEYS)
        self.host_tag = None if agent.get("omit_hostname") else agent.get("hostname") or hostname
        self.inputs = self.conf.get("inputs", {}).get("mqtt_consumer", [])
        for i in self.inputs:
            self._check("inputs.mqtt_consumer", i, self.INPUT_KEYS)
            if i.get("data_format") != "json_v2":
                raise Unsupported(f"data_format {i.get('data_format')!r}")
        other_inputs = set(self.conf.get("inputs", {})) - {"mqtt_consumer"}
        processors = self.conf.get("processors", {})
        if other_inputs or set(processors) - {"regex"}:
            raise Unsupported(f"plugins {sorted(other_inputs | (set(processors) - {'regex'}))}")
        self.processors = sorted(processors.get("regex", []), key=lambda p: p.get("order", 0))
        for p in self.processors:
            self._check("processors.regex", p, self.REGEX_KEYS)

    @staticmethod
    def _check(where: str, table: dict[str, Any], known: frozenset[str]) -> None:
        unknown = set(table) - known
        if unknown:
            raise Unsupported(f"{where} options {sorted(unknown)}")

    def consume(self, topic: str, payload: bytes) -> list[Metric]:
        """What Telegraf would send to its outputs for one MQTT message."""
        out: list[Metric] = []
        for inp in self.inputs:
            if not any(topic_matches(f, topic) for f in inp["topics"]):
                continue
            metrics = json_v2(inp["json_v2"], payload)
            for m in metrics:
                topic_tag = inp.get("topic_tag", "topic")
                if topic_tag:
                    m.tags[topic_tag] = topic
                if self.host_tag is not None:
                    m.tags.setdefault("host", self.host_tag)
                if "fieldinclude" in inp:
                    m.fields = {k: v for k, v in m.fields.items() if glob_match(inp["fieldinclude"], k)}
                if "fieldexclude" in inp:
                    m.fields = {k: v for k, v in m.fields.items() if not glob_match(inp["fieldexclude"], k)}
            out += [m for m in metrics if m.fields]
        for p in self.processors:
            for m in out:
                if "namepass" in p and not glob_match(p["namepass"], m.name):
                    continue
                tagpass = p.get("tagpass", {})
                if tagpass and not any(k in m.tags and glob_match(v, m.tags[k]) for k, v in tagpass.items()):
                    continue
                for rule in p.get("field_rename", []):
                    if set(rule) - {"pattern", "replacement", "result_key"} or rule.get("result_key", "keep") != "keep":
                        raise Unsupported(f"field_rename options {rule}")
                    renamed: dict[str, Value] = {}
                    for k, v in m.fields.items():
                        if re.search(rule["pattern"], k):
                            new = go_replace_all(rule["pattern"], rule["replacement"], k)
                            if new not in m.fields:  # "keep": a colliding field stays under its old name
                                renamed[new] = v
                                continue
                        renamed[k] = v
                    m.fields = renamed
        return out
