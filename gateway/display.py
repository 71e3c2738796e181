"""Terminal rendering of readings (plume read, plume demo).

Times are the site's wall clock; the zone is in the time column's header, so every time a person reads is marked.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo

from rich.table import Table
from rich.text import Text

from gateway.core.localtime import clock_time, utc_offset_label
from gateway.core.model import DeviceReading, Flag

FLAG_STYLE = {Flag.N: "green", Flag.B: "bold red", Flag.D: "red", Flag.T: "yellow", Flag.C: "cyan", Flag.M: "cyan"}
CLOCK_WIDTH = 8  # HH:MM:SS


def fmt_value(v: float | str | None) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def time_header(tz: ZoneInfo, ts: int | None = None) -> str:
    """`time UTC+08:00`: the header of a column of local clock times."""
    return f"time {utc_offset_label(int(time.time() * 1000) if ts is None else ts, tz)}"


def readings_table(readings: Iterable[DeviceReading], *, tz: ZoneInfo, title: str | None = None) -> Table:
    """One row per channel (plume read): device, local time, channel, value, unit, flag, note."""
    rows = list(readings)
    table = Table("device", time_header(tz, rows[0].ts if rows else None), "channel", "value", "unit", "flag",
                  "note", title=title, box=None, padding=(0, 1))
    for r in rows:
        first = True
        stamp = clock_time(r.ts, tz)
        if not r.ok:  # no answer: one line, not the same note on every channel
            table.add_row(r.device, stamp, f"({len(r.values)} channels)", "—", "", f"[{FLAG_STYLE[Flag.B]}]B[/]",
                          r.error)
            continue
        for ch, cv in r.values.items():
            style = FLAG_STYLE.get(cv.flag, "white")
            table.add_row(r.device if first else "", stamp if first else "", ch, fmt_value(cv.value), cv.unit,
                          f"[{style}]{cv.flag.value}[/]", cv.note)
            first = False
        if not r.values:
            table.add_row(r.device, stamp, "", "", "", "", r.error)
    return table


def compact_readings_table(readings: Sequence[DeviceReading], *, tz: ZoneInfo, width: int, device_width: int,
                           title: str | None = None) -> Table:
    """One row per device (plume demo's live view): its channels as `name value` pairs on one line, cut to the
    terminal's width. Columns have fixed widths, so the view does not jump between refreshes."""
    table = Table(title=title, box=None, padding=(0, 1), expand=False)
    values_width = max(10, width - device_width - CLOCK_WIDTH - 6 - 6)
    table.add_column("device", width=device_width, no_wrap=True, overflow="ellipsis")
    table.add_column(time_header(tz, readings[0].ts if readings else None), width=max(CLOCK_WIDTH, 14), no_wrap=True)
    table.add_column("values (flag when not N)", width=values_width, no_wrap=True, overflow="ellipsis")
    for r in readings:
        line = Text(no_wrap=True, overflow="ellipsis")
        for ch, cv in r.values.items():
            if line:
                line.append("  ")
            line.append(f"{ch} {fmt_value(cv.value)}")
            if cv.flag is not Flag.N:
                line.append(f" {cv.flag.value}", style=FLAG_STYLE.get(cv.flag, "white"))
        if not r.values:
            line.append(r.error, style="red")
        table.add_row(r.device, clock_time(r.ts, tz), line)
    return table
