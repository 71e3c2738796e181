"""Terminal rendering of readings (plume read, plume demo)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from rich.table import Table

from gateway.core.model import DeviceReading, Flag

FLAG_STYLE = {Flag.N: "green", Flag.B: "bold red", Flag.D: "red", Flag.T: "yellow", Flag.C: "cyan", Flag.M: "cyan"}


def fmt_value(v: float | str | None) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def readings_table(readings: Iterable[DeviceReading], title: str | None = None) -> Table:
    table = Table("device", "channel", "value", "unit", "flag", "note", title=title, box=None, padding=(0, 1))
    for r in readings:
        first = True
        stamp = datetime.fromtimestamp(r.ts / 1000, UTC).strftime("%H:%M:%S")
        for ch, cv in r.values.items():
            style = FLAG_STYLE.get(cv.flag, "white")
            table.add_row(f"{r.device} {stamp}" if first else "", ch, fmt_value(cv.value), cv.unit,
                          f"[{style}]{cv.flag.value}[/]", cv.note)
            first = False
        if not r.values:
            table.add_row(r.device, "", "", "", "", r.error)
    return table
