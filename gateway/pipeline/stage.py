"""The regulatory stage inside `plume run`: quality flags and CEMS channels before the log, windows and alarms after.

    acquisition --reading--> prepare() [quality: M / stuck flags; CEMS: derived channels] --> DurableLog.append
    DurableLog --commit--> on_commit(): windows.feed -> aggregate records; alarms.on_reading / on_aggregate ->
                                        alarm records; actuation -> Modbus writes -> actuation records
    timer (1 s): windows.advance(now - lateness), alarms.tick, actuation.tick, alarms.on_log_stats, checkpoints
    commands (MQTT: acknowledge, maintenance switch, actuator override) -> command records -> applied on commit

Everything the stage decides is written back to the same log (one id sequence), and the stage only ever consumes
committed records, so a restart rebuilds it from the log (`restore`):
1. alarm events (all the log holds; active alarms are checkpointed so that retention keeps them) -> alarms.restore;
   maintenance commands -> the runtime switch; actuation records -> the actuators' state (after the replay);
2. windows: the aggregates since the local midnight of the newest closed minute -> windows.restore (the windows
   they complete that never reached the log are written now);
3. one pass over the raw records from the earliest instant any part needs: quality/CEMS state (copies of the
   readings, nothing appended), each device's readings after its last closed minute (windows), readings and
   aggregates since `alarms.replay_from` (alarms) and acknowledgements; what this decides that the log already has
   carries the same ids and is dropped, what it decides that the log lacks (the gateway died in between) is written;
4. actuation.restore with every alarm event, then the current state of each actuator is written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gateway.alarms.actuation import ActuationPolicy, WriteCommand
from gateway.alarms.engine import AlarmEngine
from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.records import AlarmEntry, AlarmRecord
from gateway.audit import Actor, audit
from gateway.core.clock import now_ms
from gateway.core.model import ChannelValue, DeviceReading
from gateway.processing.cems import StackDeriver
from gateway.processing.quality import QualityProcessor
from gateway.processing.records import AggregateRecord, aggregate_ts_range, select_aggregates
from gateway.processing.windows import WindowAggregate, WindowEngine
from gateway.processing.zs_windows import ZsFromMeans
from gateway.store.records import (
    ACTUATION,
    AGGREGATE,
    ALARM,
    COMMAND,
    ActuationRecord,
    CommandRecord,
    LogRecord,
    ReadingRecord,
)

if TYPE_CHECKING:
    from gateway.site.model import Site
    from gateway.store.log import DurableLog

log = logging.getLogger("plume.stage")

Writer = Callable[[str, int, int, int], Awaitable[str | None]]  # (device, function, address, value) -> problem
TICK_S = 1.0
LOG_STATS_EVERY_MS = 10_000
CHECKPOINT_CHECK_MS = 3_600_000
MODES = ("on", "off", "auto")



def copy_reading(r: DeviceReading) -> DeviceReading:
    return DeviceReading(r.site, r.device, r.kind, r.ts,
                         {ch: ChannelValue(cv.value, cv.unit, cv.flag, cv.note) for ch, cv in r.values.items()},
                         r.ok, r.error)


class RegulatoryStage:
    """Quality, CEMS, windows, alarms and actuation of one site, fed by the durable log."""

    def __init__(self, site: Site, *, writer: Writer | None = None, clock: Callable[[], int] = now_ms):
        cfg = site.config
        self.site = site
        self.site_id = site.id
        self.tz = ZoneInfo(cfg.site.timezone)
        self.quality = QualityProcessor(cfg.maintenance, cfg.stuck, self.tz)
        self._quality_on = bool(cfg.stuck or cfg.maintenance.active or cfg.maintenance.windows)
        self.cems = StackDeriver(cfg.stacks)
        self._cems_on = bool(cfg.stacks)
        self.rules = site.rules
        self.windows = WindowEngine(cfg.windows, site.id, self.tz, sampling={
            d.name: d.config.poll_interval_s for d in site.devices if d.config.enabled},
            finish=ZsFromMeans(cfg.stacks) if cfg.stacks else None)
        self.devices = [d.name for d in site.devices if d.config.enabled]
        self.alarms = AlarmEngine(self.rules, site.id, self.tz, devices=self.devices)
        self.actuation = ActuationPolicy(cfg.actuators, self.rules, self.tz)
        self.actuators = {a.name for a in cfg.actuators}
        self.lateness_ms = int(cfg.windows.lateness_s * 1000)
        self.max_disk_bytes = cfg.store.max_disk_mb * 1e6
        self.checkpoint_after_ms = int(cfg.store.retention_days * 86_400_000 / 2)
        self._writer = writer
        self._clock = clock
        self.log: DurableLog | None = None
        # each sink's standing problem ("" when none), for the sink_problem rules; set by the gateway
        self.sink_problems: Callable[[], dict[str, str]] | None = None
        self._live = False
        self._replaying = False
        self._replay_events: list[AlarmEvent] = []
        self._writes: asyncio.Queue[WriteCommand] = asyncio.Queue()
        self._logged: dict[str, list[AlarmEvent]] = {}  # events of each active alarm (for checkpoints)
        self._logged_at: dict[str, int] = {}  # when the oldest of them that retention must keep was written
        self._alarm_listeners: list[Callable[[AlarmRecord], None]] = []
        self._last_stats = 0
        self._last_checkpoint = 0
        self.counters = {"aggregates": 0, "alarm_events": 0, "writes": 0, "write_failures": 0, "commands": 0}

    # --- before the log ------------------------------------------------------------------------------------------
    def prepare(self, reading: DeviceReading) -> None:
        """Quality flags and CEMS channels, in place, before the reading is appended (the hot path)."""
        if self._quality_on:
            self.quality.apply(reading)
        if self._cems_on:
            self.cems.apply(reading)

    # --- outputs -------------------------------------------------------------------------------------------------
    def on_alarm(self, callback: Callable[[AlarmRecord], None]) -> None:
        """`callback(record)` for every committed AlarmRecord, checkpoints left out."""
        self._alarm_listeners.append(callback)

    def _append(self, kind: str, payload: Any, ts: int) -> None:
        assert self.log is not None
        self.log.append_record(kind, payload, ts, self.site_id)

    def _aggregates(self, aggs: list[WindowAggregate]) -> None:
        for a in aggs:
            self._append(AGGREGATE, a, a.end)
            self.counters["aggregates"] += 1
            self._events(self.alarms.on_aggregate(a))

    def _state_of(self, alarm_id: str) -> dict[str, Any] | None:
        for a in self.alarms.active():
            if a.alarm_id == alarm_id:
                return a.to_json()
        return None

    def _events(self, events: list[AlarmEvent]) -> None:
        for ev in events:
            self._append(ALARM, AlarmEntry(ev, self._state_of(ev.alarm_id)), ev.ts)
            self.counters["alarm_events"] += 1
            self._track(ev, self._clock())
            level = logging.INFO if ev.type is not EventType.RENOTIFY else logging.DEBUG
            log.log(level, "alarm %s: %s", ev.type.value, ev.message)
            if self._replaying:
                self._replay_events.append(ev)
            else:
                self._execute(self.actuation.on_event(ev))

    def _track(self, ev: AlarmEvent, written_at: int) -> None:
        if ev.type is EventType.CLEARED:
            self._logged.pop(ev.alarm_id, None)
            self._logged_at.pop(ev.alarm_id, None)
            return
        events = self._logged.setdefault(ev.alarm_id, [])
        if all(e.event_id != ev.event_id for e in events):
            events.append(ev)
        self._logged_at.setdefault(ev.alarm_id, written_at)

    def _execute(self, writes: list[WriteCommand]) -> None:
        for w in writes:
            self._writes.put_nowait(w)

    async def _writer_loop(self) -> None:
        while True:
            w = await self._writes.get()
            if self._writer is None:
                problem: str | None = "no Modbus writer (acquisition does not run)"
            else:
                try:
                    problem = await self._writer(w.device, w.function, w.address, w.value)
                except Exception as exc:  # a bug must not stop actuation
                    log.exception("actuator %s: write failed", w.actuator)
                    problem = str(exc) or type(exc).__name__
            self.counters["writes"] += 1
            if problem is None:
                log.info("actuator %s %s (%s: fc%d @%d = %d): %s", w.actuator, "on" if w.on else "off", w.device,
                         w.function, w.address, w.wire_value, w.reason)
            else:
                self.counters["write_failures"] += 1
                log.warning("actuator %s: writing %s to %s failed: %s (%s)", w.actuator, "on" if w.on else "off",
                            w.device, problem, w.reason)
            self._append(ACTUATION, {"site": self.site_id, "command": w.to_json(), "ok": problem is None,
                                     "error": problem or ""}, w.ts)

    # --- commands ------------------------------------------------------------------------------------------------
    def command(self, cmd: dict[str, Any]) -> str | None:
        """An operator's command (from MQTT): checked, then written to the log; applied once committed. Returns
        what is wrong with it, or None. Accepted or refused, it goes into the audit trail."""
        problem = self._command(cmd)
        if self.log is not None:
            source = str(cmd.get("source") or "local")
            kind, _, where = source.partition(":")
            params = {k: v for k, v in cmd.items() if k not in ("type", "source", "by")}
            audit(self.log, Actor(kind, str(cmd.get("by") or ""), where), f"command {cmd.get('type')}", params,
                  f"refused: {problem}" if problem else "accepted", site=self.site_id)
        return problem

    def _command(self, cmd: dict[str, Any]) -> str | None:
        kind = cmd.get("type")
        if kind == "ack":
            if not isinstance(cmd.get("alarm_id"), str) or not cmd["alarm_id"]:
                return self._refuse(cmd, "acknowledge needs alarm_id (a string)")
        elif kind == "maintenance":
            if cmd.get("on") not in (True, False, None):
                return self._refuse(cmd, "maintenance needs on: true, false or null")
            device = cmd.get("device")
            if device is not None and device not in self.devices:
                return self._refuse(cmd, f"maintenance: no device {device!r}")
        elif kind == "override":
            if cmd.get("actuator") not in self.actuators:
                return self._refuse(cmd, f"override: no actuator {cmd.get('actuator')!r} "
                                        f"(actuators: {', '.join(sorted(self.actuators))})")
            if cmd.get("mode") not in MODES:
                return self._refuse(cmd, "override needs mode: on, off or auto")
        elif kind == "write":
            problem = self._check_write(cmd)
            if problem is not None:
                return self._refuse(cmd, problem)
        else:
            return self._refuse(cmd, f"unknown command {kind!r}")
        for key in ("by", "note"):
            if key in cmd and not isinstance(cmd[key], str):
                cmd[key] = str(cmd[key])
        ts = self._clock()
        self._append(COMMAND, {**cmd, "site": self.site_id, "ts": ts}, ts)
        self.counters["commands"] += 1
        return None

    def _check_write(self, cmd: dict[str, Any]) -> str | None:
        """A remote register/coil write: only to a channel the device's profile marks writable. Sets `function`,
        `address` and the raw `raw` value on the command."""
        device = next((d for d in self.site.devices if d.name == cmd.get("device") and d.config.enabled), None)
        if device is None:
            return f"write: no device {cmd.get('device')!r}"
        spec = next((r for r in device.profile.registers if r.channel == cmd.get("channel")), None)
        if spec is None:
            return f"write: device {device.name} has no channel {cmd.get('channel')!r}"
        if not spec.writable:
            return (f"write: {device.name}.{spec.channel} is not marked writable in profile {device.profile.name} "
                    "(only registers the profile marks writable may be written)")
        value = cmd.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "write needs a numeric value"
        if spec.function == 1:
            cmd.update(function=5, address=spec.address, raw=1 if value else 0)
            return None
        raw = round((float(value) - spec.offset) / spec.scale)
        low, high = (0, 0xFFFF) if spec.type.value == "u16" else (-0x8000, 0x7FFF)
        if not low <= raw <= high:
            return f"write: {value} is out of the range of {device.name}.{spec.channel}"
        cmd.update(function=6, address=spec.address, raw=raw & 0xFFFF)
        return None

    def _refuse(self, cmd: dict[str, Any], problem: str) -> str:
        """A refused command is recorded too (the audit trail), with its reason; it is never applied."""
        if self.log is not None:
            ts = self._clock()
            self._append(COMMAND, {**{k: v for k, v in cmd.items() if isinstance(k, str)}, "site": self.site_id,
                                   "ts": ts, "refused": problem}, ts)
        return problem

    def _apply_command(self, cmd: dict[str, Any], ts: int, replay: bool = False) -> None:
        kind = cmd.get("type")
        by = str(cmd.get("by") or "")
        if cmd.get("refused"):
            return
        if kind == "write" and not replay:
            raw = int(cmd["raw"])
            self._execute([WriteCommand(f"remote:{cmd['device']}.{cmd['channel']}", str(cmd["device"]),
                                        int(cmd["function"]), int(cmd["address"]), raw, bool(raw), ts,
                                        f"remote write by {by or cmd.get('source', '?')}")])
            return
        if kind == "ack":
            events = self.alarms.acknowledge(str(cmd.get("alarm_id")), ts, by, str(cmd.get("note") or ""))
            if not events and not replay and not any(a.alarm_id == cmd.get("alarm_id") for a in self.alarms.active()):
                log.warning("acknowledge %s: no such active alarm (cleared already?)", cmd.get("alarm_id"))
            self._events(events)
        elif kind == "maintenance":
            self.quality.set_maintenance(cmd.get("on"), cmd.get("device"))
            self._quality_on = True
            if not replay:
                log.info("maintenance switch %s: %s%s", cmd.get("device") or "site",
                         {True: "on", False: "off", None: "as the site file says"}[cmd.get("on")],
                         f" by {by}" if by else "")
        elif kind == "override" and not replay:  # its effect is in the actuation records
            self._execute(self.actuation.override(str(cmd["actuator"]), cmd["mode"], ts, by))

    # --- live ----------------------------------------------------------------------------------------------------
    def on_commit(self, records: list[LogRecord]) -> None:
        """The log committed `records`: feed the readings and commands; tell listeners about alarm records."""
        if not self._live:
            return
        for rec in records:
            if isinstance(rec, ReadingRecord):
                r = rec.reading
                aggs = self.windows.feed(r)
                if aggs:
                    self._aggregates(aggs)
                events = self.alarms.on_reading(r)
                if events:
                    self._events(events)
            elif isinstance(rec, CommandRecord):
                self._apply_command(rec.payload, rec.ts)
            elif isinstance(rec, AlarmRecord) and not rec.payload.checkpoint:
                for cb in self._alarm_listeners:
                    try:
                        cb(rec)
                    except Exception:
                        log.exception("alarm listener failed")

    def tick(self, now: int) -> None:
        """Time passing: windows of silent devices close, offline devices, renotify, actuators' delays."""
        self._aggregates(self.windows.advance(now - self.lateness_ms))
        self._events(self.alarms.tick(now))
        self._execute(self.actuation.tick(now))
        if self.log is not None and now - self._last_stats >= LOG_STATS_EVERY_MS:
            self._last_stats = now
            st = self.log.stats()
            self._events(self.alarms.on_log_stats(now, st.dropped_total + st.lost, st.used_bytes, self.max_disk_bytes))
            if self.sink_problems is not None:
                self._events(self.alarms.on_sink_status(now, self.sink_problems()))
        if now - self._last_checkpoint >= CHECKPOINT_CHECK_MS:
            self._last_checkpoint = now
            self.checkpoint(now)

    def checkpoint(self, now: int) -> int:
        """Write the events of alarms active for long again, so that retention (which deletes old records) never
        takes away what a restart needs to know an alarm is still active. Returns how many were written."""
        n = 0
        for alarm_id, events in self._logged.items():
            if now - self._logged_at.get(alarm_id, now) < self.checkpoint_after_ms:
                continue
            for ev in events:
                self._append(ALARM, AlarmEntry(ev, self._state_of(alarm_id), checkpoint=True), now)
                n += 1
            self._logged_at[alarm_id] = now
        return n

    async def run(self) -> None:
        """Timers and the actuator writer, until cancelled."""
        writer = asyncio.create_task(self._writer_loop(), name="stage.writer")
        try:
            while True:
                await asyncio.sleep(TICK_S)
                try:
                    self.tick(self._clock())
                except Exception:
                    log.exception("regulatory stage: timer failed")
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    # --- restart -------------------------------------------------------------------------------------------------
    def go_live(self) -> None:
        """Start live without (the rest of) a restore."""
        self._replaying = False
        self._live = True

    async def restore(self, lg: DurableLog) -> None:
        """Rebuild every state from the log (see the module docstring); call once after the log is opened and
        before acquisition starts. Then the stage is live."""
        self.log = lg
        started = time.monotonic()
        now = self._clock()
        alarm_recs = [r for r in await lg.records_of_kind(ALARM, 0) if isinstance(r, AlarmRecord)]
        events = [r.payload.event for r in alarm_recs]
        self.alarms.restore(events)
        for r in alarm_recs:
            if r.payload.checkpoint:
                self._logged_at[r.payload.event.alarm_id] = r.ts
            self._track(r.payload.event, r.ts)
        for c in await lg.records_of_kind(COMMAND, 0):
            if isinstance(c, CommandRecord) and c.payload.get("type") == "maintenance":
                self._apply_command(c.payload, c.ts, replay=True)
        commands = [WriteCommand.from_json(r.payload["command"]) for r in await lg.records_of_kind(ACTUATION, 0)
                    if isinstance(r, ActuationRecord)]
        first_ts, last_ts = await lg.reading_span()
        self._replaying = True
        try:
            if last_ts is not None:
                assert first_ts is not None
                await self._replay(lg, first_ts, last_ts)
            self._aggregates(self.windows.advance(now - self.lateness_ms))
        finally:
            self._replaying = False
        replayed = self._replay_events
        self._replay_events = []
        self._execute(self.actuation.restore(commands, events + replayed, now))
        self._live = True
        active = self.alarms.active()
        if alarm_recs or last_ts is not None:
            log.info("regulatory stage restored in %.1f s: %d alarm events in the log, %d active alarm(s)%s; "
                     "%d new alarm event(s) from the replay", time.monotonic() - started, len(alarm_recs),
                     len(active), f" ({', '.join(a.alarm_id for a in active)})" if active else "", len(replayed))

    async def _replay(self, lg: DurableLog, first_ts: int, last_ts: int) -> None:
        windows = self.windows
        latest = await lg.latest_of_kind(AGGREGATE)
        if isinstance(latest, AggregateRecord):
            since = windows.restore_since(latest.payload.end)
            restored = select_aggregates(await lg.records_of_kind(AGGREGATE, *aggregate_ts_range(since)), None, since)
            self._aggregates(windows.restore(restored, history_from=first_ts))
        else:  # nothing aggregated yet (a new log, or one from before the windows): today's readings
            since = max(first_ts, windows.restore_since(last_ts))
            windows.history_from = first_ts
        win_from: dict[str, int] = {}
        for d in self.devices:
            resume = windows.resume_from(d)
            win_from[d] = since if resume is None else resume
        readings_from, aggs_from = self.alarms.replay_from(last_ts)
        q_span_s = 0.0
        intervals = [d.config.poll_interval_s for d in self.site.devices if d.config.enabled] or [1.0]
        for rule in self.site.config.stuck:
            q_span_s = max(q_span_s, rule.duration_s or 0.0, (rule.count or 0) * max(intervals))
        for st in self.site.config.stacks:
            q_span_s = max(q_span_s, st.max_input_age_s)
        q_from = last_ts - int(q_span_s * 1000) - 60_000
        raw_from = min([*win_from.values(), readings_from, q_from]) if win_from else min(readings_from, q_from)
        raw_from = max(raw_from, first_ts)
        logged_aggs = [r for r in await lg.records_of_kind(AGGREGATE, aggs_from)
                       if isinstance(r, AggregateRecord) and r.payload.start >= aggs_from]
        logged_aggs.reverse()  # pop() from the end = the oldest first

        def judge_logged_until(rid: int) -> None:
            while logged_aggs and logged_aggs[-1].id < rid:
                self._events(self.alarms.on_aggregate(logged_aggs.pop().payload))

        prepare = self._quality_on or self._cems_on
        fed = 0
        async for batch in lg.readings_since(raw_from - 120_000):  # reading times may trail log order a little
            for rec in batch:
                judge_logged_until(rec.id)
                if isinstance(rec, ReadingRecord):
                    r = rec.reading
                    if prepare and r.ts >= q_from:
                        self.prepare(copy_reading(r))
                    if r.ts >= win_from.get(r.device, since):
                        self._aggregates(windows.feed(r))
                        fed += 1
                    if r.ts >= readings_from:
                        self._events(self.alarms.on_reading(r))
                elif isinstance(rec, CommandRecord) and rec.ts >= readings_from:
                    self._apply_command(rec.payload, rec.ts, replay=True)
        judge_logged_until(1 << 62)
        log.debug("replay: %d readings fed to the windows from %d", fed, raw_from)
