"""Alarm rules as data: in the site file (`rules`) or in rule packs (`rule_packs`, YAML files shipped in
gateway/alarms/packs or given by path).

Rule types (`type` picks one):
- threshold: a raw channel or a window statistic (avg/min/max of 1m, 5m, 15m, 1h, 1d...) against a limit, with a
  separate clear level (hysteresis), a minimum duration before raising, an optional minimum duration before
  clearing, a daily schedule of limits (noise day/night), a baseline subtracted first (site minus county value),
  and an optional number of exceedances a day that a local standard tolerates (raised on the one after);
- offline: no successful reading from a device for `after_s`;
- quality: a channel flagged D or B (configurable) for `for_s`;
- log_drops: the durable log dropped undelivered data for its disk cap; disk_usage: the log near its cap.
- sink_problem: a sink reports a standing problem (e.g. every point refused: the endpoint is wrong).

A rule pack is a YAML document: a name, the standard it implements, parameters with defaults (`${name}` in a rule
is replaced by the site's value), and rules. The site file picks packs, restricts them to devices, sets parameters,
overrides single fields of single rules, or disables rules. Pack rules get ids `<pack>.<rule>`.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from gateway.core.localtime import in_daily, minute_of_day, parse_daily, parse_period
from gateway.core.model import Flag
from gateway.core.strict import NAME, Strict
from gateway.yamlio import load_yaml

CHANNEL = r"^[a-z][a-z0-9_]*$"
Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class RuleBase(Strict):
    id: str = Field(pattern=NAME, description="Unique rule id: in events, topics and webhook payloads.")
    title: str = Field("", description="What an officer reads first, e.g. 'PM10 15-minute average over 150'.")
    standard: str = Field("", description="The regulation the limit comes from.")
    severity: Severity = "warning"
    enabled: bool = True
    renotify_s: float | None = Field(None, gt=0, description="Notify again this often while the alarm lasts.")
    renotify_when_acked: bool = Field(False, description="Keep re-notifying after an acknowledgement.")
    escalate_after_s: float | None = Field(
        None, gt=0, description="Not acknowledged (nor cleared) this long after the raise: one `escalated` event, "
        "which routes send to their second recipient list (escalate_to).")
    actuate: list[str] = Field(default_factory=list, description="Actuators switched on while the alarm is raised.")


class ScheduleEntry(Strict):
    during: str = Field(description="Local time span, e.g. 06:00-22:00 or 22:00-06:00.")
    limit: float
    clear: float | None = None

    @field_validator("during")
    @classmethod
    def _span(cls, v: str) -> str:
        parse_daily(v)
        return v


class ThresholdRule(RuleBase):
    type: Literal["threshold"]
    channel: str = Field(pattern=CHANNEL)
    devices: list[str] = Field(default_factory=lambda: ["*"], description="Device name patterns.")
    kind: str | None = Field(None, description="Only devices of this kind (dust, cems, ...).")
    window: str = Field("raw", description="raw (each reading) or a window: 1m, 5m, 15m, 20m, 1h, 1d...")
    stat: Literal["avg", "min", "max"] = Field("avg", description="Which statistic of the window is judged.")
    unit: str | None = Field(None, description="Unit of limit/clear; values are converted (ug/m3 <-> mg/m3).")
    limit: float | None = Field(None, description="Raised above this (below, with direction: below).")
    clear: float | None = Field(None, description="Cleared at or below this (default: the limit).")
    direction: Literal["above", "below"] = "above"
    schedule: list[ScheduleEntry] = Field(default_factory=list, description="Limits by local time of day.")
    baseline: float = Field(0.0, description="Subtracted from the value first (e.g. the county's PM10).")
    for_s: float = Field(0.0, ge=0, description="The limit must be exceeded this long before raising.")
    clear_for_s: float = Field(0.0, ge=0, description="Below the clear level this long before clearing.")
    max_per_day: int | None = Field(None, ge=0, description="Exceeding windows a local day tolerates; the alarm "
                                    "is raised from the next one on (window rules only).")
    accept_flags: list[Flag] = Field(default_factory=lambda: [Flag.N, Flag.T],
                                     description="Values with other flags are not judged.")
    judge_partial: bool = Field(False, description="Also judge windows the gateway saw only part of.")

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        return v if v == "raw" else parse_period(v).name

    @model_validator(mode="after")
    def _levels(self) -> ThresholdRule:
        if (self.limit is None) == (not self.schedule):
            raise ValueError("give limit, or a schedule of limits")
        if self.limit is None and self.clear is not None:
            raise ValueError("clear goes with limit (a schedule entry has its own clear)")
        pairs = [(self.limit, self.clear)] if self.limit is not None else [(e.limit, e.clear) for e in self.schedule]
        for limit, clear in pairs:
            if clear is not None and limit is not None:
                if self.direction == "above" and clear > limit:
                    raise ValueError(f"clear {clear:g} must not be above limit {limit:g} (hysteresis)")
                if self.direction == "below" and clear < limit:
                    raise ValueError(f"clear {clear:g} must not be below limit {limit:g} (direction below)")
        if self.max_per_day is not None and self.window == "raw":
            raise ValueError("max_per_day counts exceeding windows: give a window (e.g. 1h)")
        if self.window == "raw" and self.stat != "avg":
            raise ValueError("stat is for window rules; a raw rule judges each reading")
        return self

    def levels(self, start_ms: int, tz: ZoneInfo) -> tuple[float, float] | None:
        """(limit, clear) at a sample starting at `start_ms` (local time of day for schedules); None: no limit."""
        if self.limit is not None:
            return self.limit, self.clear if self.clear is not None else self.limit
        minute = minute_of_day(start_ms, tz)
        for e in self.schedule:
            if in_daily(minute, parse_daily(e.during)):
                return e.limit, e.clear if e.clear is not None else e.limit
        return None


class OfflineRule(RuleBase):
    type: Literal["offline"]
    devices: list[str] = Field(default_factory=lambda: ["*"])
    after_s: float = Field(300.0, gt=0, description="No successful reading for this long: offline.")


class QualityRule(RuleBase):
    type: Literal["quality"]
    devices: list[str] = Field(default_factory=lambda: ["*"])
    channels: list[str] = Field(default_factory=lambda: ["*"], description="Channel name patterns.")
    flags: list[Flag] = Field(default_factory=lambda: [Flag.D, Flag.B], description="Flags that are bad data.")
    for_s: float = Field(600.0, gt=0, description="Bad this long before raising.")
    clear_for_s: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _flags(self) -> QualityRule:
        if not self.flags or Flag.N in self.flags:
            raise ValueError("flags: the bad ones (D, B, C, M, ...), not N")
        return self


class LogDropsRule(RuleBase):
    type: Literal["log_drops"]
    quiet_s: float = Field(3600.0, gt=0, description="Cleared after this long without new drops.")


class DiskUsageRule(RuleBase):
    type: Literal["disk_usage"]
    limit: float = Field(90.0, gt=0, le=100, description="% of the log's disk cap.")
    clear: float = Field(80.0, ge=0, le=100)

    @model_validator(mode="after")
    def _hyst(self) -> DiskUsageRule:
        if self.clear > self.limit:
            raise ValueError("clear must not be above limit")
        return self


class SinkProblemRule(RuleBase):
    """A sink reports a standing problem the user must fix (e.g. its endpoint refuses every point)."""

    type: Literal["sink_problem"]
    sinks: list[str] = Field(default_factory=lambda: ["*"], description="Sink name patterns.")


RULE_TYPES = ("threshold", "offline", "quality", "log_drops", "disk_usage", "sink_problem")


def _untagged_errors(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Error paths without pydantic's union tag: `rules[0].clear`, not `rules[0].threshold.clear`."""
    try:
        return handler(value)
    except ValidationError as exc:
        errors: list[Any] = []
        for e in exc.errors():
            loc = tuple(e["loc"])
            if loc and loc[0] in RULE_TYPES:
                loc = loc[1:]
            errors.append({**e, "loc": loc})
        raise ValidationError.from_exception_data(exc.title, errors) from None


Rule = Annotated[ThresholdRule | OfflineRule | QualityRule | LogDropsRule | DiskUsageRule | SinkProblemRule,
                 Field(discriminator="type"), WrapValidator(_untagged_errors)]
_RULE = TypeAdapter(Rule)


# --- rule packs --------------------------------------------------------------------------------------------------
class PackParam(Strict):
    default: float | str | None = Field(None, description="None: the site must give it.")
    description: str = ""


class RulePack(Strict):
    """A rule pack file."""

    pack: str = Field(pattern=NAME)
    title: str
    standard: str = ""
    description: str = ""
    params: dict[str, PackParam] = Field(default_factory=dict)
    rules: list[dict[str, Any]]


class RulePackRef(Strict):
    """Site-file section `rule_packs` (a list): which packs apply here, and how."""

    pack: str = Field(description="A shipped pack name (see docs) or a path to a pack YAML file.")
    devices: list[str] | None = Field(None, description="Apply the pack's rules to these devices only.")
    params: dict[str, float | str] = Field(default_factory=dict, description="Values of the pack's parameters.")
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                 description="Rule id -> fields replaced (limit, for_s, ...).")
    disable: list[str] = Field(default_factory=list, description="Rule ids of the pack not to use.")


def builtin_pack_dir() -> Path:
    return Path(str(resources.files("gateway") / "alarms" / "packs"))


def builtin_pack_names() -> list[str]:
    return sorted(p.stem for p in builtin_pack_dir().glob("*.yaml"))


def find_pack(ref: str, base: Path | None = None) -> Path | None:
    p = Path(ref)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_absolute() and base is not None:
            p = base / p
        return p if p.is_file() else None
    p = builtin_pack_dir() / f"{ref}.yaml"
    return p if p.is_file() else None


@cache
def _load_pack_file(path: Path) -> RulePack:
    return RulePack.model_validate(load_yaml(path))


def load_pack(ref: str, base: Path | None = None) -> RulePack:
    path = find_pack(ref, base)
    if path is None:
        raise FileNotFoundError(f"no rule pack {ref!r} (shipped: {', '.join(builtin_pack_names())}; or a .yaml path)")
    return _load_pack_file(path.resolve())


_PARAM = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute(data: Any, values: dict[str, float | str]) -> Any:
    if isinstance(data, dict):
        return {k: _substitute(v, values) for k, v in data.items()}
    if isinstance(data, list):
        return [_substitute(v, values) for v in data]
    if isinstance(data, str):
        whole = _PARAM.fullmatch(data)
        if whole:
            return values[whole.group(1)]
        return _PARAM.sub(lambda m: str(values[m.group(1)]), data)
    return data


def _used_params(data: Any) -> set[str]:
    if isinstance(data, dict):
        return set().union(*(_used_params(v) for v in data.values())) if data else set()
    if isinstance(data, list):
        return set().union(*(_used_params(v) for v in data)) if data else set()
    if isinstance(data, str):
        return set(_PARAM.findall(data))
    return set()


def _problems(exc: ValidationError, where: str) -> list[str]:
    out = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"] if p not in RULE_TYPES)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        out.append(f"{where}{'.' + loc if loc else ''}: {msg}")
    return out


def expand_pack(pack: RulePack, ref: RulePackRef, where: str, problems: list[str]) -> list[Rule]:
    """The rules of `pack` as the site uses them (`where` names the site-file entry in problems)."""
    known = {str(r.get("id")) for r in pack.rules}
    for name in ref.params:
        if name not in pack.params:
            problems.append(f"{where}.params.{name}: pack {pack.pack} has no parameter {name!r} "
                            f"(it has: {', '.join(pack.params) or 'none'})")
    for section, ids in (("overrides", list(ref.overrides)), ("disable", ref.disable)):
        for rid in ids:
            if rid not in known:
                problems.append(f"{where}.{section}.{rid}: pack {pack.pack} has no rule {rid!r} "
                                f"(rules: {', '.join(sorted(known))})")
    values: dict[str, float | str] = {}
    for name, p in pack.params.items():
        if name in ref.params:
            values[name] = ref.params[name]
        elif p.default is not None:
            values[name] = p.default
    out: list[Rule] = []
    for i, raw in enumerate(pack.rules):
        rid = str(raw.get("id"))
        if rid in ref.disable:
            continue
        missing = sorted(_used_params(raw) - set(values))
        if missing:
            for name in missing:
                desc = pack.params[name].description if name in pack.params else "not declared by the pack"
                problems.append(f"{where}.params: pack {pack.pack} needs {name} ({desc})")
            continue
        data = _substitute(raw, values)
        data.update(ref.overrides.get(rid, {}))
        data["id"] = f"{pack.pack}.{rid}"
        data.setdefault("standard", pack.standard)
        if ref.devices is not None and data.get("type") in ("threshold", "offline", "quality"):
            data["devices"] = ref.devices
        try:
            out.append(_RULE.validate_python(data))
        except ValidationError as exc:
            problems.extend(_problems(exc, f"{where} ({pack.pack} rules[{i}] {rid})"))
    return out


def resolve_rules(rules: list[Rule], packs: list[RulePackRef], base: Path | None = None,
                  ) -> tuple[list[Rule], list[str]]:
    """The site's own rules plus every pack's, enabled ones only; and the problems found (`path: message`)."""
    problems: list[str] = []
    out: list[Rule] = list(rules)
    for i, ref in enumerate(packs):
        where = f"rule_packs[{i}]"
        try:
            pack = load_pack(ref.pack, base)
        except FileNotFoundError as exc:
            problems.append(f"{where}.pack: {exc}")
            continue
        except ValidationError as exc:
            problems.extend(_problems(exc, f"{where}.pack ({ref.pack})"))
            continue
        except Exception as exc:
            problems.append(f"{where}.pack: cannot read {ref.pack}: {' '.join(str(exc).split())}")
            continue
        out += expand_pack(pack, ref, where, problems)
    seen: dict[str, int] = {}
    for j, r in enumerate(out):
        if r.id in seen:
            problems.append(f"rules: duplicate rule id {r.id!r}")
        seen.setdefault(r.id, j)
    return [r for r in out if r.enabled], problems


def windows_needed(rules: list[Rule]) -> set[str]:
    """The windows rules judge (the processing stage must compute at least these)."""
    return {r.window for r in rules if isinstance(r, ThresholdRule) and r.window != "raw"}
