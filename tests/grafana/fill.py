"""A real InfluxDB 1.6 filled by the real pipeline, shared by every query test of a module.

Two sites write into it:

- `riverside-tower` (a dust monitor and a stack CEMS analyzer) — first ~1-2 days of history, then live:
  - history: the simulator's signal models (plume_sim.model.DeviceModel, the values plume-sim serves) evaluated
    once a minute (a stack's 5-s samples hold their minute's value) from the start of the previous local day to a
    few minutes ago, fed to the real gateway (gateway.pipeline.gateway.Gateway: durable log -> processing and
    alarms -> InfluxDB sink) in place of the Modbus acquisition: hours and days cannot be waited for in a test,
    and only closed windows are written;
  - live: `plume-sim SITE` and `plume run SITE` as processes (tests/pipeline/test_run_e2e.py does the same),
    until raw readings and health points (plume_device, plume_sink, plume_log) of the live run are in;
- `north.gate` (a dust monitor), history only: a second site for the multi-site views, and a name with a regex
  metacharacter.

The site files carry what the processing stage will act on once it is wired into `plume run` (a stack, windows,
alarm rules): then the same fill also writes aggregates, derived CEMS channels and alarms, and the query tests
marked as waiting for them can run unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.localservers import loopback_http
from gateway.site.load import assemble, load_site
from gateway.site.model import Site
from gateway.store.records import ReadingRecord
from tests.pipeline.helpers import Proc, gateway_cmd, sim_cmd
from tests.pipeline.servers import InfluxDB, free_port, wait_for

DB = "plume"
TZ = "Asia/Shanghai"
LIVE_SITE = "riverside-tower"
HISTORY_SITE = "north.gate"
SITES = {LIVE_SITE: (31.2304, 121.4737), HISTORY_SITE: (34.2655, 108.9541)}
HISTORY_STEP_MS = 60_000
# the history's poll intervals: a reading a minute, but the stack every 5 s, so its minutes are HJ 212-valid
# (at least 12 values a minute, appendix D2.2); the windows judge each minute against these intervals
HISTORY_POLL_S = {"cems": 5.0}
HISTORY_END_BEFORE_MS = 5 * 60_000

LIVE = """\
site:
  id: {site}
  name: Riverside Tower
  latitude: {lat}
  longitude: {lon}
  timezone: {tz}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - {{name: dust-1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 0.2, timeout_s: 0.5}}
  - {{name: stack-1, bus: lan, address: 3, profile: cems-analyzer, poll_interval_s: 0.2, timeout_s: 0.5}}
store:
  dir: {tmp}/live-log
  commit_interval_ms: 100
sinks:
  - type: influx
    name: tsdb
    url: {influx}
    database: {db}
    linger_ms: 200
    retry_min_s: 0.1
    retry_max_s: 0.5
    health_interval_s: 1
stacks:
  - device: stack-1
    boiler: coal_power
    o2: o2
    moisture: flue_humidity
    temperature: flue_temperature
    static_pressure: flue_pressure
    velocity: flue_velocity
    area_m2: 1.2
    pollutants:
      so2: {{channel: so2}}
      nox: {{channel: nox}}
      particulate: {{channel: particulate, conditions: actual, basis: wet}}
rules:
  - {{id: pm10-raw, type: threshold, title: PM10 reading over 45 ug/m3, channel: pm10, window: raw, limit: 45,
     clear: 40}}
  - {{id: pm10-15m, type: threshold, title: PM10 15-minute average over 40 ug/m3, channel: pm10, window: 15m,
     limit: 40, clear: 35}}
rule_packs:
  - pack: ultra-low-emission
"""

HISTORY_ONLY = """\
site:
  id: {site}
  name: North Gate
  latitude: {lat}
  longitude: {lon}
  timezone: {tz}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - {{name: dust-1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 10}}
store:
  dir: {tmp}/unused-log
sinks:
  - {{type: influx, name: tsdb, url: {influx}, database: {db}, linger_ms: 200, health_interval_s: 1}}
rules:
  - {{id: pm10-15m, type: threshold, title: PM10 15-minute average over 40 ug/m3, channel: pm10, window: 15m,
     limit: 40, clear: 35}}
"""


@dataclass
class Filled:
    influx: InfluxDB
    site_files: dict[str, Path]
    live_started_ms: int
    history: dict[str, tuple[int, int]]  # site -> (first, last) history timestamp, ms
    answers: dict[str, str] = field(default_factory=dict)

    def query(self, q: str) -> dict[str, Any]:
        """One InfluxQL statement through /query as Grafana's back end sends it; the raw result object. The
        database no longer changes once filled, so the same statement (a board's variable queries, asked again for
        every panel) is answered from the first answer."""
        if q not in self.answers:
            self.answers[q] = self._ask(q)
        return dict(json.loads(self.answers[q]))

    def _ask(self, q: str) -> str:
        r = loopback_http().post(f"{self.influx.url}/query", params={"db": DB, "epoch": "ms"}, data={"q": q},
                                 timeout=30)
        assert r.status_code == 200 or "error" in r.text, f"HTTP {r.status_code}: {r.text[:500]}"
        results = r.json().get("results") or [{"error": r.json().get("error", r.text)}]
        assert len(results) == 1, f"one statement expected, got {len(results)}"
        return json.dumps(results[0])


class HistorySource:
    """Stands in for the Modbus acquisition: the simulator's values of every device at its poll interval (see
    `history_site`; each minute's value held for that minute's samples), in time order. The stack analyzer
    calibrates for one hour (flag C), as real analyzers do now and then."""

    def __init__(self, site: Site, emit: Callable[[DeviceReading], None], start_ms: int, end_ms: int,
                 room: Callable[[], bool] = lambda: True):
        self.site, self.emit, self.start_ms, self.end_ms = site, emit, start_ms, end_ms
        self.room = room  # False while the log holds enough uncommitted readings: wait for its commits
        self.emitted = 0
        self.units = {d.name: {r.channel: r.unit for r in d.profile.registers} for d in site.devices}

    async def run(self) -> None:
        from plume_sim.model import DeviceModel, quantize

        tz = ZoneInfo(self.site.config.site.timezone)
        models = [(d, DeviceModel(d, seed=1, site=self.site.id, tz=tz)) for d in self.site.devices]
        calibration = _local_midnight(self.start_ms, tz) + 2 * 3_600_000  # 02:00-03:00 of the first day
        steps = {d.name: int(d.config.poll_interval_s * 1000) for d in self.site.devices}
        grid = min(steps.values(), default=HISTORY_STEP_MS)
        # the models are evaluated once a minute and held for the samples inside it (a stack polled every 5 s):
        # the gateway still gets every sample, and the fill spends its time in the gateway, not in the models
        held: dict[str, tuple[int, dict[str, float | str | None]]] = {}
        for ts in range(self.start_ms, self.end_ms, grid):
            for dev, model in models:
                if (ts - self.start_ms) % steps[dev.name]:
                    continue
                minute = ts - (ts - self.start_ms) % HISTORY_STEP_MS
                if dev.name not in held or held[dev.name][0] != minute:
                    served = model.evaluate(minute / 1000)
                    held[dev.name] = (minute, {r.channel: quantize(r, served[r.channel])
                                               for r in dev.profile.registers})
                flag = Flag.C if dev.profile.kind == "cems" and calibration <= ts < calibration + 3_600_000 \
                    else Flag.N
                values = {ch: ChannelValue(v, self.units[dev.name][ch], flag) for ch, v in held[dev.name][1].items()}
                self.emit(DeviceReading(self.site.id, dev.name, dev.profile.kind, ts, values))
                self.emitted += 1
            if self.emitted % 512 < len(models):
                await asyncio.sleep(0)
                # days of history arrive far faster than polls: on a loaded machine they filled the log's memory
                # buffer (store.max_buffered) before a commit ended, and the log refused the rest (counted as
                # lost), so the history never arrived whole
                while not self.room():
                    await asyncio.sleep(0.005)

    def health(self) -> dict[str, Any]:
        return {}


def _local_midnight(ts_ms: int, tz: ZoneInfo) -> int:
    local = datetime.fromtimestamp(ts_ms / 1000, tz)
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def history_span(now_ms: int, tz: ZoneInfo) -> tuple[int, int]:
    """From the start of the previous local day to a few minutes ago: at least one whole local day is closed."""
    end = now_ms - HISTORY_END_BEFORE_MS
    today = datetime.fromtimestamp((end - 10 * 60_000) / 1000, tz).replace(hour=0, minute=0, second=0,
                                                                           microsecond=0)
    return int((today - timedelta(days=1)).timestamp() * 1000), end


def history_site(site: Site) -> Site:
    """The site as the history polls it: every device once a minute, a stack analyzer every 5 s."""
    kinds = {r.name: r.profile.kind for r in site.devices}
    devices = [d.model_copy(update={"poll_interval_s": HISTORY_POLL_S.get(kinds.get(d.name, ""),
                                                                           HISTORY_STEP_MS / 1000)})
               for d in site.config.devices]
    return assemble(site.config.model_copy(update={"devices": devices}), site.path)


async def _run_history(site: Site, log_path: Path, start_ms: int, end_ms: int) -> int:
    """The history through the gateway. Its clock is the history's: the newest committed reading (time-driven
    parts, e.g. closing the windows of silent devices, must not run ahead of readings still on their way)."""
    import inspect

    from gateway.pipeline.gateway import Gateway

    site = history_site(site)
    sources: list[HistorySource] = []
    clock = [start_ms]

    def committed(records: list[Any]) -> None:
        for rec in records:
            if isinstance(rec, ReadingRecord):
                clock[0] = max(clock[0], rec.reading.ts)

    def now() -> int:
        return clock[0]

    def factory(s: Site, emit: Callable[[DeviceReading], None]) -> HistorySource:
        stage = getattr(gw, "stage", None)
        if stage is not None and not takes_clock and hasattr(stage, "_clock"):
            stage._clock = now  # stand-in until Gateway takes a clock (the stage has one)
        sources.append(HistorySource(s, emit, start_ms, end_ms, room=lambda: gw.log is None
                                     or gw.log.stats().buffered < gw.log.config.max_buffered // 4))
        return sources[-1]

    takes_clock = "clock" in inspect.signature(Gateway).parameters
    extra: dict[str, Any] = {"clock": now} if takes_clock else {}
    gw = Gateway(site, log_path=log_path, source=factory, grace_s=10, **extra)
    gw.on_commit(committed)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    await asyncio.wait_for(gw.started.wait(), 120)  # an upper bound: a loaded machine starts slowly
    steps = [int(d.config.poll_interval_s * 1000) for d in site.devices]
    expected = sum((end_ms - start_ms + step - 1) // step for step in steps)
    deadline = time.monotonic() + 180
    while True:  # every reading committed, and every consumer of the log (sinks, stages) has had all of it
        lg = gw.log
        assert lg is not None
        if (lg.committed_records >= expected and lg.stats().buffered == 0
                and all(lg.depth(c) == 0 for c in lg.consumers.values())):
            break
        if task.done():
            task.result()
        assert time.monotonic() < deadline, f"history of {site.id} not delivered within 180 s"
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 30)
    return sources[0].emitted


def _write_site(path: Path, template: str, **fmt: object) -> Site:
    path.write_text(textwrap.dedent(template).format(**fmt), encoding="utf-8")
    return load_site(path)


@contextlib.contextmanager
def fill(tmp: Path) -> Iterator[Filled]:
    """Start InfluxDB in `tmp`, fill it (history, then live), yield it; everything started is stopped by pid."""
    influx = InfluxDB(tmp / "influxdb")
    influx.start()
    procs: list[Proc] = []
    try:
        sim_port = free_port()
        files = {LIVE_SITE: tmp / "riverside.yaml", HISTORY_SITE: tmp / "north-gate.yaml"}
        common = {"tz": TZ, "influx": influx.url, "db": DB, "tmp": tmp, "sim_port": sim_port}
        live = _write_site(files[LIVE_SITE], LIVE, site=LIVE_SITE, lat=SITES[LIVE_SITE][0],
                           lon=SITES[LIVE_SITE][1], **common)
        other = _write_site(files[HISTORY_SITE], HISTORY_ONLY, site=HISTORY_SITE, lat=SITES[HISTORY_SITE][0],
                            lon=SITES[HISTORY_SITE][1], **common)

        # 1. history through the gateway (both sites at once)
        now = int(time.time() * 1000)
        spans = {s.id: history_span(now, ZoneInfo(TZ)) for s in (live, other)}

        async def histories() -> None:
            await asyncio.gather(*(_run_history(s, tmp / f"history-{s.id}" / "log.sqlite", *spans[s.id])
                                   for s in (live, other)))

        asyncio.run(histories())

        # 2. live: plume-sim + plume run, until readings and health points of this run are in
        started = int(time.time() * 1000)
        sim = Proc(sim_cmd(files[LIVE_SITE], tmp / "truth.jsonl"), tmp / "sim.out").start()
        procs.append(sim)
        sim.wait_output("ready:")
        gw = Proc(gateway_cmd(files[LIVE_SITE]), tmp / "gateway.out").start()
        procs.append(gw)
        gw.wait_output("running:")

        def live_data_in() -> bool:
            since = f"time >= {started}ms"
            try:
                return (all(influx.count(m, f, where=f"{since} AND \"site\" = '{LIVE_SITE}'") >= 10
                            for m, f in (("dust", "pm10"), ("cems", "so2")))
                        and influx.count("plume_device", "polls", where=since) >= 6
                        and influx.count("plume_sink", "depth", where=since) >= 3
                        and influx.count("plume_log", "readings", where=since) >= 3)
            except RuntimeError:
                return False

        wait_for(live_data_in, 30, "live readings and health points in InfluxDB", interval=0.2)
        assert gw.terminate() == 0, gw.output()[-2000:]
        sim.terminate()

        # 3. Stand-in for the gateway's site location (`plume_site`, proposed in grafana/README.md): written here
        #    only while the gateway does not write it itself.
        if influx.count("plume_site", "lat") == 0:
            lines = "\n".join(f'plume_site,site={sid} lat={lat},lon={lon},name="{sid}" {int(time.time() * 1000)}'
                              for sid, (lat, lon) in SITES.items())
            r = loopback_http().post(f"{influx.url}/write", params={"db": DB, "precision": "ms"}, content=lines,
                                     timeout=10)
            assert r.status_code == 204, r.text
        yield Filled(influx, files, started, spans)
    finally:
        for p in procs:
            if p.running() and p.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.proc.pid, signal.SIGKILL)
                p.proc.wait()
        influx.stop()
