"""The cross-section checks of a site file that still has schema errors, so one `plume config check` run shows
every problem: the entries the schema refused are set aside (a list item dropped, a section reset to its default)
and the rest is assembled; what the checks say about it is reported with the original list positions, leaving
out lines that only repeat a set-aside entry's absence (a device on a bus that was refused)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from gateway.config import ConfigError, SiteConfig

MAX_ROUNDS = 5


def cross_check_rest(data: dict[str, Any], exc: ValidationError,
                     assemble: Callable[[SiteConfig], object]) -> list[str]:
    """The cross-check problems of `data` without the entries `exc` refused ([] when nothing is left to check)."""
    rest = dict(data)
    kept: dict[str, list[int]] = {k: list(range(len(v))) for k, v in rest.items() if isinstance(v, list)}
    dropped_names: set[str] = set()
    errors = exc.errors()
    for _ in range(MAX_ROUNDS):
        drop: dict[str, set[int]] = {}
        for e in errors:
            loc = e["loc"]
            if not loc:
                return []
            section = str(loc[0])
            if len(loc) > 1 and isinstance(loc[1], int) and isinstance(rest.get(section), list):
                drop.setdefault(section, set()).add(loc[1])
            elif section == "site":
                site = rest.get("site")
                rest["site"] = {"id": "site"} | ({"timezone": "UTC"} if isinstance(site, dict) else {})
            else:
                rest.pop(section, None)
        for section, idx in drop.items():
            items = rest[section]
            for i in idx:
                item = items[i]
                if isinstance(item, dict):
                    dropped_names.update(str(item[k]) for k in ("name", "id") if isinstance(item.get(k), str))
            rest[section] = [it for i, it in enumerate(items) if i not in idx]
            kept[section] = [orig for i, orig in enumerate(kept[section]) if i not in idx]
        try:
            cfg = SiteConfig.model_validate(rest)
            break
        except ValidationError as again:
            errors = again.errors()
    else:
        return []
    try:
        assemble(cfg)
    except ConfigError as found:
        return [renumber(p, kept) for p in found.problems if not _mentions(p, dropped_names)]
    return []


def renumber(problem: str, kept: dict[str, list[int]]) -> str:
    """`devices[1]` of the partial file back to its position in the file as written."""
    def sub(m: re.Match[str]) -> str:
        section, i = m.group(1), int(m.group(2))
        positions = kept.get(section)
        return f"{section}[{positions[i]}]" if positions is not None and i < len(positions) else m.group(0)

    return re.sub(r"(?<![\w.])([a-z_]+)\[(\d+)\]", sub, problem)


def _mentions(problem: str, names: set[str]) -> bool:
    return any(re.search(rf"(?<![\w.-]){re.escape(n)}(?![\w-])", problem) for n in names)
