"""Option values shared by the commands that sweep a line (`plume scan`, `plume discover`): id ranges and lists."""

from __future__ import annotations

import typer


def parse_ids(text: str) -> list[int]:
    ids: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise typer.BadParameter(f"{part!r}: use ids like 1-247 or 1,2,10-20") from None
        if not (0 <= a <= b <= 247):
            raise typer.BadParameter(f"{part!r}: slave ids are 0..247")
        ids.update(range(a, b + 1))
    return sorted(ids)


def csv_list(text: str, what: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [t.strip().upper() for t in text.split(",") if t.strip()]
    if not items or (allowed is not None and any(t not in allowed for t in items)):
        raise typer.BadParameter(f"{what}: {', '.join(allowed or ())} or a comma-separated list of them")
    return list(dict.fromkeys(items))
