"""`plume demo`'s live view fits a terminal and holds still (issue 14, finding 1).

It used to print ~60 lines of readings (one per channel) that a 24-line terminal cut off with `...`, so the devices
table and the scripted alarm showed only in the final print, and column widths changed with every refresh.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from gateway.acquisition.poller import DeviceHealth
from gateway.alarms.events import AlarmEvent, EventType
from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.demo import LiveView
from gateway.site.load import load_site

ROOT = Path(__file__).resolve().parents[2]
TS = 1_772_409_600_000


def example_site():
    return load_site(ROOT / "deploy" / "examples" / "sim-site.yaml")


def readings(site, scale: float) -> dict[str, DeviceReading]:
    out = {}
    for d in site.devices:
        channels = [r.channel for r in d.profile.registers] or ["pm10", "pm25"]
        values = {ch: ChannelValue(scale * (i + 1) / 7, "u", Flag.N if i % 5 else Flag.T) for i, ch in
                  enumerate(channels)}
        out[d.name] = DeviceReading(site.id, d.name, d.profile.kind, TS, values)
    return out


def health(site, polls: int, error: str = "") -> list[DeviceHealth]:
    return [DeviceHealth(d.name, d.config.bus, polls=polls, ok=polls - 1, online=not error,
                         last_latency_ms=1000.0 / polls, last_error=error) for d in site.devices]


def offline_event(ts: int) -> AlarmEvent:
    return AlarmEvent(type=EventType.RAISED, site="demo-site", rule="offline", device="so2-1", channel="",
                      window="", start=ts, ts=ts, value=None, limit=None, unit="s",
                      message="offline: so2-1 (no successful reading) since 2026-03-02 08:00 UTC+08:00")


def render(view: LiveView, width: int, height: int, **kw) -> list[str]:
    console = Console(width=width, height=height, record=True, color_system=None)
    console.print(view.render(width=width, height=height, **kw))
    return console.export_text().rstrip("\n").splitlines()


def header_columns(lines: list[str], header_start: str) -> list[int]:
    line = next(ln for ln in lines if ln.lstrip().startswith(header_start))
    return [i for i in range(len(line)) if line[i] != " " and (i == 0 or line[i - 1] == " ")]


def test_the_live_view_fits_an_80x24_terminal_with_devices_and_alarms_visible():
    site = example_site()
    view = LiveView(site)
    lines = render(view, 80, 24, latest=readings(site, 1.0), health=health(site, 9), sinks=None,
                   events=[offline_event(TS)])
    assert len(lines) < 24, "\n".join(lines)
    assert all(len(ln) <= 80 for ln in lines)
    text = "\n".join(lines)
    for device in ("dust-1", "stack-1", "dust-2", "so2-1", "pm-1"):
        assert sum(device in ln for ln in lines) >= 2, f"{device} in the readings and in the devices table"
    assert "devices" in text and "alarm events" in text
    assert "offline: so2-1" in text, "the scripted alarm is visible while the demo runs"
    assert "..." not in text


def test_column_widths_do_not_change_between_refreshes():
    site = example_site()
    view = LiveView(site)
    first = render(view, 100, 30, latest=readings(site, 1.0), health=health(site, 9), sinks=None, events=[])
    later = render(view, 100, 30, latest=readings(site, 123456.789), health=health(site, 12345, "no answer "
                   "within 1 s, and a long explanation of it"), sinks=None,
                   events=[offline_event(TS), offline_event(TS + 1000)])
    for header in ("device", "time"):
        assert header_columns(first, header) == header_columns(later, header)


def test_a_short_terminal_shows_fewer_readings_and_says_so_rather_than_cutting_the_bottom():
    site = example_site()
    lines = render(LiveView(site), 80, 16, latest=readings(site, 1.0), health=health(site, 9), sinks=None,
                   events=[offline_event(TS)])
    assert len(lines) < 16 + 5, "\n".join(lines)
    text = "\n".join(lines)
    assert "more devices not shown" in text and "alarm events" in text and "offline: so2-1" in text
