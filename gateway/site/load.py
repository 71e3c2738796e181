"""Loading a site file: YAML -> ${VAR} expansion -> the schema -> devices and profiles -> every cross-section
check, once. Every problem is one `path: message` line in a ConfigError; a site that loads is ready to run."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config import ConfigError, SiteConfig, problem_line, pydantic_problems
from gateway.site.checks import (
    check_alarms,
    check_processing,
    check_timezone,
    config_warnings,
    processing_warnings,
    site_warnings,
)
from gateway.site.consumers import register_consumers
from gateway.site.devices import resolve_devices
from gateway.site.model import Site
from gateway.site.partial import cross_check_rest
from gateway.site.uplinks import check_uplinks
from gateway.yamlio import line_index, load_yaml_text

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(data: Any, path: str = "", problems: list[str] | None = None) -> Any:
    """Replace ${VAR} and ${VAR:-default} in string values, so endpoints and secrets come from the environment."""
    problems = problems if problems is not None else []
    if isinstance(data, dict):
        return {k: expand_env(v, f"{path}.{k}" if path else str(k), problems) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, f"{path}[{i}]", problems) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:

        def sub(m: re.Match[str]) -> str:
            val = os.environ.get(m.group(1), m.group(2))
            if val is None:
                problems.append(f"{path}: environment variable {m.group(1)} is not set and has no default")
                return ""
            return val

        # Always text: pydantic turns "1883" into a port number where a number is wanted, and a password or an
        # MN such as 012345 stays exactly as written.
        return _ENV.sub(sub, data)
    return data


def parse_site(data: Any, path: Path) -> Site:
    """A site from parsed YAML (`path` locates relative paths); raises ConfigError with every problem found."""
    problems: list[str] = []
    data = expand_env(data, problems=problems)
    if problems:
        raise ConfigError(problems)
    if not isinstance(data, dict):
        raise ConfigError(["(file): a site file is a YAML mapping with site, buses and devices"])
    try:
        cfg = SiteConfig.model_validate(data)
    except ValidationError as exc:
        # the cross-checks of what the schema accepted too, so that one run shows every problem
        rest = cross_check_rest(data, exc, lambda partial: assemble(partial, path))
        raise ConfigError([*pydantic_problems(exc), *rest]) from None
    return assemble(cfg, path)


def assemble(cfg: SiteConfig, path: Path) -> Site:
    """A validated site file made a Site: profiles resolved, every cross-section check run once and what the checks
    resolve (rules, routes, consumers) kept; raises ConfigError with every problem."""
    problems: list[str] = []
    devices = resolve_devices(cfg, path.parent, problems)
    if problems:
        raise ConfigError(problems)
    site = Site(cfg, path, devices)
    site.consumers, names = register_consumers(cfg)
    site.rules, alarm_problems = check_alarms(site)
    route_problems, site.routes = check_uplinks(site)
    problems = [*check_timezone(site, site.rules), *names["sinks"], *check_processing(site), *alarm_problems,
                *names["notify.webhooks"], *names["notify.email"], *names["notify.sms"], *names["uplinks"],
                *route_problems]
    if problems:
        raise ConfigError(problems)
    site.warnings = [*processing_warnings(site), *site_warnings(site), *config_warnings(site)]
    return site


def load_site(path: Path | str) -> Site:
    """Read, validate and assemble the site file at `path`; raises ConfigError (one line per problem)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = load_yaml_text(text)
    except FileNotFoundError:
        raise ConfigError([f"(file): {path} not found"]) from None
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {path}: {exc.strerror}"]) from None
    except Exception as exc:  # yaml errors carry a line and column
        raise ConfigError([f"(file): {path} is not valid YAML: {' '.join(str(exc).split())}"]) from None
    try:
        return parse_site(data, path)
    except ConfigError as exc:
        index = line_index(text)
        raise ConfigError(exc.problems, [problem_line(p, index) for p in exc.problems]) from None


