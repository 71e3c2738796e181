"""`plume export` against a log filled by the real pipeline (Gateway: quality, CEMS, windows, the durable log; the
readings come from a hand-built source instead of Modbus polls so that the expected numbers are known):

- a stack polled every 5 s (12 samples a minute), SO2 100 mg/m3, O2 alternating 6 % / 16 % by minute, minutes 10
  and 11 of the first hour with 6 samples only (the link dropped every other poll);
- export 1m as CSV: minute 10 is n 6 of 12 expected, flag B; a whole minute is n 12, N; times in local time with
  the +08:00 offset and the zone named;
- export 1h as JSON: hour 0 holds 58 valid minutes (N), SO2 Zs average 120 (the hour's means converted);
- export 1h as hj212: 2061 packets with DataTime in local time and the ZsAvg, decodable with a valid CRC;
- a bad time or window is one line on stderr and exit 2.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.core.model import ChannelValue, DeviceReading
from gateway.hj212.codec import decode
from gateway.localservers import free_port
from gateway.pipeline.gateway import Gateway
from gateway.site.load import load_site
from gateway.site.model import Site
from tests.plume_cli import plume as run_plume

ROOT = Path(__file__).resolve().parents[2]
TZ = ZoneInfo("Asia/Shanghai")
MIN = 60_000
HOUR = 60 * MIN
# local midnight two days ahead: the wall-clock timer never closes these windows early
MIDNIGHT = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=2)
T0 = int(MIDNIGHT.timestamp() * 1000)
DAY = MIDNIGHT.date().isoformat()

SITE = """\
site: {{id: export-site, timezone: Asia/Shanghai}}
buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: 1}}]
devices: [{{name: stack-1, bus: lan, address: 2, profile: cems-analyzer, poll_interval_s: 5}}]
store: {{dir: "{tmp}/log", commit_interval_ms: 50, durability: normal}}
windows: {{periods: [1m, 1h, 1d], lateness_s: 5}}
stacks:
  - {{device: stack-1, boiler: coal, o2: o2, pollutants: {{so2: {{channel: so2}}}}}}
uplinks:
  - name: city
    host: 127.0.0.1
    port: {port}
    mn: 010000A8900016F000169DC0
    pw: Zq7x2K
    st: "31"
    send: {{realtime: null, minute: null, hour: true, day: true}}
    codes:
      - {{code: a21026, device: stack-1, channel: so2, unit: mg/m3, decimals: 2}}
      - {{code: a19001, device: stack-1, channel: o2, unit: "%", decimals: 2}}
    zs: {{a21026: so2_zs}}
"""


class Stack:
    """Two hours and a minute of a stack analyzer polled every 5 s; minutes 10 and 11 lose every other poll."""

    def __init__(self, site: Site, emit: Callable[[DeviceReading], None]):
        self.emit = emit

    async def run(self) -> None:
        for minute in range(2 * 60 + 1):
            for s in range(0, 60, 5):
                if minute in (10, 11) and s % 10:
                    continue
                o2 = 6.0 if minute % 2 == 0 else 16.0
                self.emit(DeviceReading("export-site", "stack-1", "cems", T0 + minute * MIN + s * 1000, {
                    "so2": ChannelValue(100.0, "mg/m3"), "o2": ChannelValue(o2, "%")}))
            if minute % 10 == 9:
                await asyncio.sleep(0.01)

    def health(self) -> Mapping[str, Any]:
        return {}


def plume(*args: str) -> subprocess.CompletedProcess[str]:
    return run_plume(*args, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    path = tmp / "site.yaml"
    path.write_text(SITE.format(tmp=tmp, port=free_port()), encoding="utf-8")
    site = load_site(path)

    async def fill() -> None:
        gw = Gateway(site, source=Stack)
        hours: list[int] = []
        gw.on_commit(lambda recs: hours.extend(
            1 for r in recs if getattr(getattr(r, "payload", None), "window", "") == "1h"))
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        try:
            for _ in range(600):
                if len(hours) >= 2:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        assert len(hours) >= 2, "the pipeline did not close both hours"

    asyncio.run(fill())
    return path


def test_minute_data_as_csv_in_local_time_with_validity_counts(filled: Path) -> None:
    r = plume("export", str(filled), "--from", DAY, "--to", f"{DAY}T01:00", "--window", "1m", "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    so2 = [row for row in rows if row["channel"] == "so2"]
    assert len(so2) == 60
    first, short = so2[0], so2[10]
    assert (first["start"], first["end"], first["timezone"]) == (
        f"{DAY}T00:00:00+08:00", f"{DAY}T00:01:00+08:00", "Asia/Shanghai")
    assert (first["n"], first["valid"], first["expected"], first["flag"], float(first["avg"])) == (
        "12", "12", "12", "N", 100.0)
    assert (short["start"], short["n"], short["valid"], short["expected"], short["flag"]) == (
        f"{DAY}T00:10:00+08:00", "6", "6", "12", "B")
    zs = {row["start"]: float(row["avg"]) for row in rows if row["channel"] == "so2_zs"}
    # a minute at 6 % O2: 100 x 12 / 15 = 80; at 16 %: 100 x 12 / 5 = 240
    assert (zs[f"{DAY}T00:00:00+08:00"], zs[f"{DAY}T00:01:00+08:00"]) == (pytest.approx(80.0), pytest.approx(240.0))


def test_hour_data_as_json_says_what_counts(filled: Path, tmp_path: Path) -> None:
    out = tmp_path / "hours.json"
    r = plume("export", str(filled), "--from", DAY, "--to", f"{DAY}T02:00", "--window", "1h", "--format", "json",
              "--device", "stack-1", "--output", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert (doc["site"], doc["timezone"], doc["window"], doc["from"]) == (
        "export-site", "Asia/Shanghai", "1h", f"{DAY}T00:00:00+08:00")
    h0, h1 = doc["windows"]
    assert (h0["start"], h0["end"], h0["expected"], h0["partial"]) == (
        f"{DAY}T00:00:00+08:00", f"{DAY}T01:00:00+08:00", 60, False)
    so2, zs = h0["channels"]["so2"], h0["channels"]["so2_zs"]
    assert (so2["n"], so2["valid"], so2["flag"], so2["avg"]) == (60, 58, "N", 100.0)
    # 29 valid minutes at 6 % and 29 at 16 %: mean O2 11 % -> 100 x 12 / 10 = 120 (not the mean of 80 and 240)
    assert zs["avg"] == pytest.approx(120.0) and zs["flag"] == "N"
    assert h1["channels"]["so2"]["valid"] == 60


def test_hour_data_as_hj212_packets(filled: Path) -> None:
    r = plume("export", str(filled), "--from", DAY, "--to", f"{DAY}T02:00", "--window", "1h", "--format", "hj212")
    assert r.returncode == 0, r.stderr
    packets = [decode((line + "\r\n").encode()) for line in r.stdout.splitlines()]
    assert [p.cn for p in packets] == ["2061", "2061"]
    p0 = packets[0]
    assert (p0.cp.get("DataTime"), p0.pw, p0.st) == (MIDNIGHT.strftime("%Y%m%d%H%M%S"), "XXXXXX", "31")
    assert (p0.cp.get("a21026-Avg"), p0.cp.get("a21026-ZsAvg"), p0.cp.get("a21026-Flag")) == ("100.0", "120.0", "N")
    assert "Zq7x2K" not in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("--from", "yesterday", "--to", "2026-01-02"), "--from: 'yesterday' is not a date or time"),
    (("--from", "2026-01-02", "--to", "2026-01-01"), "--to (2026-01-01) must be after --from (2026-01-02)"),
    (("--from", "2026-01-01", "--to", "2026-01-02", "--window", "5m"), "--window: '5m': give one of 1m, 1h, 1d"),
    (("--from", "2026-01-01", "--to", "2026-01-02", "--device", "nope"), "--device: no device named 'nope'"),
])
def test_mistakes_are_one_line_and_exit_2(filled: Path, args: tuple[str, ...], message: str) -> None:
    r = plume("export", str(filled), *args)
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"plume export: {message}")
