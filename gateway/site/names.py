"""Unique names within a site-file list (buses, devices, actuators, cameras): one check, one message form, so that
every section says a duplicate the same way and names the entry that has it first."""

from __future__ import annotations

from collections.abc import Iterable


def index_by_name(names: Iterable[str], section: str, what: str, problems: list[str]) -> dict[str, int]:
    """Each name's first position in `section`; a later duplicate is a problem naming the first."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            problems.append(f"{section}[{i}].name: duplicate {what} {name!r} (also {section}[{first[name]}])")
        first.setdefault(name, i)
    return first
