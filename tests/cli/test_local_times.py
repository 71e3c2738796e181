"""Every time a person reads is in the site's local time, marked with its zone (issue 14, finding 2).

The tables of `plume read` and `plume demo` used to print UTC, unmarked, while alarm messages used the site's zone,
also unmarked: a manager in China saw table times 8 h behind the clock. Asia/Kathmandu (UTC+05:45) is used where
the zone must differ from UTC and from whole-hour offsets.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from rich.console import Console

from gateway.alarms.events import AlarmEvent, EventType
from gateway.core.localtime import local_stamp, utc_offset_label
from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.demo import alarms_table
from gateway.display import readings_table
from gateway.localservers import free_port

from .helpers import plume, start_sim, write

KATHMANDU = ZoneInfo("Asia/Kathmandu")
TS = 1_772_409_600_000  # 2026-03-02 00:00:00 UTC = 05:45 in Kathmandu


def render(renderable: object, width: int = 120) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_zone_labels_mark_the_offset_of_the_instant():
    assert utc_offset_label(TS, KATHMANDU) == "UTC+05:45"
    assert utc_offset_label(TS, ZoneInfo("UTC")) == "UTC"
    assert utc_offset_label(TS, ZoneInfo("America/New_York")) == "UTC-05:00"
    assert local_stamp(TS, ZoneInfo("Asia/Shanghai")) == "2026-03-02 08:00 UTC+08:00"


def test_readings_table_shows_the_sites_wall_clock_and_its_zone():
    r = DeviceReading("s", "dust-1", "dust", TS, {"pm10": ChannelValue(42.0, "ug/m3", Flag.N)})
    text = render(readings_table([r], tz=KATHMANDU))
    assert "05:45:00" in text and "00:00:00" not in text
    assert "UTC+05:45" in text


def test_demo_alarm_table_shows_the_sites_wall_clock_and_its_zone():
    ev = AlarmEvent(type=EventType.RAISED, site="s", rule="offline", device="so2-1", channel="", window="",
                    start=TS, ts=TS, value=None, limit=None, unit="s", severity="warning", title="offline",
                    message="offline: so2-1")
    text = render(alarms_table([ev], KATHMANDU, width=120))
    assert "05:45:00" in text and "UTC+05:45" in text


SITE = """\
site: {{id: ktm, timezone: Asia/Kathmandu}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {port}}}
devices:
  - {{name: dust-1, bus: lan, address: 1, profile: dust-monitor, timeout_s: 0.5}}
"""


def test_plume_read_prints_the_sites_local_time_with_its_zone(tmp_path, procs):
    site = write(tmp_path / "site.yaml", SITE, port=free_port())
    start_sim(procs, site, tmp_path)
    before = datetime.now(KATHMANDU).replace(microsecond=0)
    r = plume("read", str(site))
    after = datetime.now(KATHMANDU)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "UTC+05:45" in r.stdout, r.stdout
    shown = re.search(r"dust-1\s+(\d\d:\d\d:\d\d)", r.stdout)
    assert shown, r.stdout
    t = datetime.combine(before.date(), datetime.strptime(shown.group(1), "%H:%M:%S").time(), KATHMANDU)
    assert before <= t <= after or before.date() != after.date(), (shown.group(1), before, after)
