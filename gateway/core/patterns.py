"""Shell-style name patterns, as rules, maintenance windows and notifications name devices and channels."""

from __future__ import annotations

from fnmatch import fnmatchcase


def matches(name: str, patterns: list[str]) -> bool:
    """Shell-style patterns (`dust-*`, `so2`, `*`), case-sensitive like the names themselves."""
    return any(fnmatchcase(name, p) for p in patterns)
