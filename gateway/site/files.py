"""`plume config check` on the three kinds of file a site manager writes: a site file, a device profile (a
register map) and a rule pack, each checked on its own - a profile before any site uses it, a pack before a site
picks it. The kind is told by the top-level keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config import ConfigError, problem_line, pydantic_problems
from gateway.yamlio import line_index, load_yaml_text


def file_kind(data: Any) -> str:
    """`site`, `profile` or `rule pack`, from the top-level keys (a site file has `site`)."""
    if isinstance(data, dict) and "site" not in data:
        if "pack" in data and "rules" in data:
            return "rule pack"
        if "registers" in data or "protocol" in data or ("kind" in data and "name" in data):
            return "profile"
    return "site"


def check_profile(data: Any) -> str:
    """A profile file: the schema, then its poll plan. Returns the one-line summary; raises ConfigError."""
    from gateway.acquisition.planner import plan_profile
    from gateway.profile import Profile

    try:
        p = Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(pydantic_problems(exc)) from None
    requests = plan_profile(p) if p.protocol == "modbus" else []
    how = f", {len(requests)} request{'s' if len(requests) != 1 else ''} per poll" if requests else ""
    return f"ok: profile {p.name} ({p.kind}, {p.protocol}), {len(p.registers)} channels{how}"


def check_pack(path: Path) -> str:
    """A rule pack file: the schema, then every rule as a site would use it, parameters without a default given a
    stand-in value. Returns the one-line summary; raises ConfigError."""
    from gateway.alarms.rules import RulePackRef, load_pack, resolve_rules

    try:
        pack = load_pack(str(path.resolve()))
    except ValidationError as exc:
        raise ConfigError(pydantic_problems(exc)) from None
    needed = {name: 1.0 for name, p in pack.params.items() if p.default is None}
    rules, problems = resolve_rules([], [RulePackRef(pack=str(path.resolve()), params=needed)])
    prefix = "rule_packs[0] ("
    cleaned = []
    for line in problems:
        if line.startswith(prefix) and ")" in line:
            line = "rules " + line[len("rule_packs[0] "):]
        cleaned.append(line.replace("rule_packs[0]", "(pack)"))
    if cleaned:
        raise ConfigError(cleaned)
    params = f", parameters: {', '.join(pack.params)}" if pack.params else ""
    return f"ok: rule pack {pack.pack}, {len(rules)} rule{'s' if len(rules) != 1 else ''}{params}"


def check_file(path: Path) -> tuple[str, list[str]]:
    """(`ok ...` summary, warnings) for a site file, a profile or a rule pack; raises ConfigError with the lines
    of the problems."""
    from gateway.site.load import load_site

    try:
        text = path.read_text(encoding="utf-8")
        data = load_yaml_text(text)
    except Exception:  # not found, unreadable, not YAML: load_site says which, in its words
        data = None
    kind = file_kind(data)
    if kind == "site":
        site = load_site(path)
        return "ok", site.warnings
    try:
        return (check_pack(path) if kind == "rule pack" else check_profile(data)), []
    except ConfigError as exc:
        index = line_index(text)
        raise ConfigError(exc.problems, [problem_line(p, index) for p in exc.problems]) from None
