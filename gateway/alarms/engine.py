"""The alarm engine: one pure state machine per (rule, device, channel), fed in log order.

    idle --exceeds--> pending --for_s elapsed--> ACTIVE (raised) --at/below clear--> clearing --clear_for_s--> idle
                 \\--not any more--> idle              ^--exceeds again (between clear and limit: holds)--/

- Hysteresis: raised above `limit`, cleared only at or below `clear`; in between nothing changes, so a value
  flapping around the limit gives one alarm, not a storm.
- A value the rule must not judge (flag not accepted, a partial window, no number) resets a pending alarm and
  holds an active one: bad data neither raises nor clears.
- Rules with `max_per_day` count exceeding windows per local day and only raise from the (max+1)-th on.
- Renotify: every `renotify_s` after the raise while active (not after an acknowledgement unless configured).
- Acknowledge: `acknowledge(alarm_id, ...)` -> an acknowledged event; clears still come from the data.

Restart: `restore(events)` takes the alarm events already in the log: active alarms come back with their ids,
acknowledgements and renotify counts, and each state machine ignores samples at or before its last logged
raised/cleared event. Then the readings and aggregates since `replay_from(...)` are fed again: what they decide
that is already in the log has the same event id and is not returned again, what they decide that is not (the
gateway stopped between the two) is returned now. So a restart neither loses nor duplicates an alarm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.rules import (
    DiskUsageRule,
    LogDropsRule,
    OfflineRule,
    QualityRule,
    Rule,
    SinkProblemRule,
    ThresholdRule,
)
from gateway.core.localtime import day_start, local_date, local_stamp, parse_period
from gateway.core.model import DeviceReading, Flag
from gateway.core.patterns import matches
from gateway.processing import units
from gateway.processing.windows import WindowAggregate

Key = tuple[str, str, str]
WINDOW_WORDS = {"raw": "", "1m": "1-minute", "1h": "hourly", "1d": "daily"}


@dataclass(slots=True)
class ActiveAlarm:
    """An alarm that is raised now: what the retained MQTT state and a dashboard show."""

    raised: AlarmEvent
    acked: bool = False
    acked_by: str = ""
    last_value: float | None = None
    peak: float | None = None
    renotified: int = 0
    escalated: bool = False

    @property
    def alarm_id(self) -> str:
        return self.raised.alarm_id

    def to_json(self) -> dict[str, Any]:
        r = self.raised
        return {"alarm_id": r.alarm_id, "site": r.site, "rule": r.rule, "title": r.title, "severity": r.severity,
                "device": r.device, "channel": r.channel, "window": r.window, "start": r.start, "raised_at": r.ts,
                "value": r.value, "limit": r.limit, "unit": r.unit, "standard": r.standard, "count": r.count,
                "acked": self.acked, "acked_by": self.acked_by, "escalated": self.escalated,
                "last_value": self.last_value, "peak": self.peak,
                "message": r.message}


@dataclass(slots=True)
class _Track:
    state: str = "idle"  # idle | pending | active | clearing
    since: int = 0  # pending: ts of the first exceeding sample
    start: int = 0  # pending: start of that sample (the alarm's start)
    clear_since: int = 0
    alarm: ActiveAlarm | None = None
    watermark: float = -math.inf  # samples at or before this are reflected in logged events
    day: date | None = None
    count: int = 0
    peak: float | None = None
    last_drop: int = 0


@dataclass(slots=True)
class _Device:
    first_seen: int | None = None
    last_ok: int | None = None


@dataclass(slots=True)
class _Sample:
    value: float | None
    start: int
    ts: int
    limit: float | None = None
    clear: float | None = None
    unit: str = ""
    window: str = ""
    note: str = ""


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.0f}"


class AlarmEngine:
    """All rules of one site. Every input method returns the events it produced, in order."""

    def __init__(self, rules: Iterable[Rule], site: str, tz: ZoneInfo | str = "UTC", devices: Iterable[str] = ()):
        self.rules = [r for r in rules if r.enabled]
        self.site = site
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.known_devices = list(devices)
        self.threshold_raw = [r for r in self.rules if isinstance(r, ThresholdRule) and r.window == "raw"]
        self.threshold_win = [r for r in self.rules if isinstance(r, ThresholdRule) and r.window != "raw"]
        self.offline = [r for r in self.rules if isinstance(r, OfflineRule)]
        self.quality = [r for r in self.rules if isinstance(r, QualityRule)]
        self.log_drops = [r for r in self.rules if isinstance(r, LogDropsRule)]
        self.disk = [r for r in self.rules if isinstance(r, DiskUsageRule)]
        self.sink_problems = [r for r in self.rules if isinstance(r, SinkProblemRule)]
        self._by_id: dict[str, Rule] = {r.id: r for r in self.rules}
        self._tracks: dict[Key, _Track] = {}
        self._active: dict[Key, _Track] = {}
        self._devices: dict[str, _Device] = {}
        self._known_ids: set[str] = set()
        self._dropped_total = 0
        self._clock_start: int | None = None
        self.problems: list[str] = []
        self._problem_keys: set[tuple[str, str]] = set()

    # --- inputs -----------------------------------------------------------------------------------------------
    def on_reading(self, reading: DeviceReading) -> list[AlarmEvent]:
        out: list[AlarmEvent] = []
        dev = self._devices.setdefault(reading.device, _Device())
        if dev.first_seen is None:
            dev.first_seen = reading.ts
        if reading.ok:
            dev.last_ok = reading.ts
        for orule in self.offline:
            if matches(reading.device, orule.devices):
                self._offline(orule, reading.device, reading.ts, reading.ok, out)
        for rule in self.threshold_raw:
            if not self._applies(rule, reading.device, reading.kind):
                continue
            cv = reading.values.get(rule.channel)
            if cv is None:
                continue
            value = cv.value if isinstance(cv.value, (int, float)) and not isinstance(cv.value, bool) else None
            self._threshold(rule, reading.device, float(value) if value is not None else None, cv.flag, cv.unit,
                            reading.ts, reading.ts, False, out)
        for qrule in self.quality:
            if not matches(reading.device, qrule.devices):
                continue
            for ch, cv in reading.values.items():
                if matches(ch, qrule.channels):
                    self._quality(qrule, reading.device, ch, cv.flag, reading.ts, out)
        self._renotify_all(reading.ts, out)
        return out

    def on_aggregate(self, agg: WindowAggregate) -> list[AlarmEvent]:
        out: list[AlarmEvent] = []
        for rule in self.threshold_win:
            if rule.window != agg.window or not self._applies(rule, agg.device, agg.kind):
                continue
            a = agg.channels.get(rule.channel)
            if a is None:
                continue
            value = {"avg": a.avg, "min": a.min, "max": a.max}[rule.stat]
            self._threshold(rule, agg.device, value, a.flag, a.unit, agg.start, agg.end, agg.partial, out)
        self._renotify_all(agg.end, out)
        return out

    def on_log_stats(self, ts: int, dropped_total: int, used_bytes: float, max_bytes: float) -> list[AlarmEvent]:
        """The durable log's counters (health): drops for its disk cap, and how full it is."""
        out: list[AlarmEvent] = []
        new = dropped_total - self._dropped_total
        for rule in self.log_drops:
            t = self._track((rule.id, "", "dropped"))
            if ts <= t.watermark:
                continue
            if new > 0:
                t.last_drop = ts
                if t.state == "idle":
                    t.start = ts
                    self._raise(rule, ("", "dropped"), t, _Sample(float(dropped_total), ts, ts, unit="records",
                                                                  note=f"{new} undelivered records dropped"), out)
                elif t.alarm is not None:
                    t.alarm.last_value = float(dropped_total)
            elif t.state == "active" and ts - t.last_drop >= rule.quiet_s * 1000:
                self._clear(rule, ("", "dropped"), t, _Sample(float(dropped_total), t.start, ts, unit="records"), out)
        self._dropped_total = max(self._dropped_total, dropped_total)
        if max_bytes > 0:
            pct = 100.0 * used_bytes / max_bytes
            for drule in self.disk:
                s = _Sample(pct, ts, ts, drule.limit, drule.clear, "%")
                self._transition(drule, ("", "disk_used_pct"), s, pct > drule.limit, pct <= drule.clear, 0.0, 0.0,
                                 out)
        self._renotify_all(ts, out)
        return out

    def on_sink_status(self, ts: int, problems: Mapping[str, str]) -> list[AlarmEvent]:
        """Each sink's standing problem ("" when none): raised while there is one, cleared when it is gone. The
        alarm's channel is the sink's name, its note the problem."""
        out: list[AlarmEvent] = []
        for rule in self.sink_problems:
            for name, problem in sorted(problems.items()):
                if matches(name, rule.sinks):
                    s = _Sample(1.0 if problem else 0.0, ts, ts, unit="", note=problem)
                    self._transition(rule, ("", name), s, bool(problem), not problem, 0.0, 0.0, out)
        self._renotify_all(ts, out)
        return out

    def tick(self, now: int) -> list[AlarmEvent]:
        """Time passing without data: offline devices, quiet log drops, renotify."""
        out: list[AlarmEvent] = []
        if self._clock_start is None:
            self._clock_start = now
        for orule in self.offline:
            names = set(self._devices) | set(self.known_devices)
            for name in sorted(names):
                if matches(name, orule.devices):
                    self._offline(orule, name, now, None, out)
        for lrule in self.log_drops:
            t = self._track((lrule.id, "", "dropped"))
            if t.state == "active" and now - t.last_drop >= lrule.quiet_s * 1000:
                self._clear(lrule, ("", "dropped"), t,
                            _Sample(float(self._dropped_total), t.start, now, unit="records"), out)
        self._renotify_all(now, out)
        return out

    def acknowledge(self, alarm_id: str, ts: int, by: str = "", note: str = "") -> list[AlarmEvent]:
        """An officer acknowledged `alarm_id` (over MQTT): one acknowledged event, or [] when it is not active or
        was acknowledged already."""
        for key, t in self._active.items():
            a = t.alarm
            if a is not None and a.alarm_id == alarm_id and not a.acked:
                a.acked, a.acked_by = True, by
                r = a.raised
                ev = AlarmEvent(EventType.ACKNOWLEDGED, self.site, key[0], key[1], key[2], r.window, r.start, ts,
                                a.last_value, r.limit, r.unit, r.severity, r.title, r.standard,
                                f"{r.title or r.rule}: acknowledged{' by ' + by if by else ''}", by=by, note=note)
                return self._emit(ev, [])
        return []

    def active(self) -> list[ActiveAlarm]:
        alarms = [t.alarm for t in self._active.values() if t.alarm is not None]
        return sorted(alarms, key=lambda a: (a.raised.ts, a.alarm_id))

    # --- restart ----------------------------------------------------------------------------------------------
    def restore(self, events: Iterable[AlarmEvent]) -> None:
        """Take the alarm events already in the log (oldest first)."""
        for ev in events:
            self._known_ids.add(ev.event_id)
            t = self._track(ev.key)
            if ev.type is EventType.RAISED:
                t.state = "active"
                t.start = ev.start
                t.alarm = ActiveAlarm(ev, last_value=ev.value, peak=ev.peak if ev.peak is not None else ev.value)
                t.watermark = max(t.watermark, ev.ts)
                self._active[ev.key] = t
            elif ev.type is EventType.CLEARED:
                t.state, t.alarm = "idle", None
                t.watermark = max(t.watermark, ev.ts)
                self._active.pop(ev.key, None)
            elif t.alarm is not None and t.alarm.alarm_id == ev.alarm_id:
                if ev.type is EventType.ACKNOWLEDGED:
                    t.alarm.acked, t.alarm.acked_by = True, ev.by
                elif ev.type is EventType.RENOTIFY:
                    t.alarm.renotified = max(t.alarm.renotified, ev.n)
                elif ev.type is EventType.ESCALATED:
                    t.alarm.escalated = True
            rule = self._by_id.get(ev.rule)
            if isinstance(rule, LogDropsRule) and ev.value is not None:
                self._dropped_total = max(self._dropped_total, int(ev.value))
                if ev.type is not EventType.CLEARED:
                    t.last_drop = max(t.last_drop, ev.ts)

    def replay_from(self, last_ts: int) -> tuple[int, int]:
        """(readings_from, aggregates_from): replay raw readings and aggregates from these instants on after
        `restore`, `last_ts` being the newest record in the log. Pending timers need max(for_s, clear_for_s) of
        history; rules counting exceedances a day need the whole local day of aggregates."""
        raw = [r.for_s + r.clear_for_s for r in self.threshold_raw]
        raw += [r.for_s + r.clear_for_s for r in self.quality] + [r.after_s for r in self.offline]
        readings_from = last_ts - int(max(raw, default=0.0) * 1000) - 60_000
        aggs_from = readings_from
        for r in self.threshold_win:
            if r.max_per_day is not None:
                aggs_from = min(aggs_from, day_start(last_ts, self.tz))
            length = parse_period(r.window).ms or 25 * 3_600_000  # a local day is at most 25 h
            aggs_from = min(aggs_from, last_ts - int((r.for_s + r.clear_for_s) * 1000) - 2 * length)
        return readings_from, aggs_from

    # --- the state machines -----------------------------------------------------------------------------------
    def _track(self, key: Key) -> _Track:
        t = self._tracks.get(key)
        if t is None:
            t = self._tracks[key] = _Track()
        return t

    @staticmethod
    def _applies(rule: ThresholdRule, device: str, kind: str) -> bool:
        return matches(device, rule.devices) and (rule.kind is None or rule.kind == kind)

    def _problem(self, rule: str, text: str) -> None:
        if (rule, text) not in self._problem_keys:
            self._problem_keys.add((rule, text))
            self.problems.append(f"rule {rule}: {text}")

    def _threshold(self, rule: ThresholdRule, device: str, value: float | None, flag: Flag, unit: str, start: int,
                   ts: int, partial: bool, out: list[AlarmEvent]) -> None:
        t = self._track((rule.id, device, rule.channel))
        levels = rule.levels(start, self.tz)
        judged = value is not None and flag in rule.accept_flags and (rule.judge_partial or not partial)
        v: float | None = None
        if judged and value is not None:
            v = value if rule.unit is None else units.convert(value, unit, rule.unit)
            if v is None:
                self._problem(rule.id, f"{device}.{rule.channel} is in {unit!r}, the rule in {rule.unit!r}")
                return
            v -= rule.baseline
        if v is None or levels is None:
            if ts > t.watermark:
                self._unjudged(t)
            return
        limit, clear = levels
        above = rule.direction == "above"
        exceeds = v > limit if above else v < limit
        ok = v <= clear if above else v >= clear
        allowed = True
        if exceeds and rule.max_per_day is not None:  # counted even before the watermark: the day's tally
            d = local_date(start, self.tz)
            if t.day != d:
                t.day, t.count = d, 0
            t.count += 1
            allowed = t.count > rule.max_per_day
        if ts <= t.watermark:
            return
        s = _Sample(v, start, ts, limit, clear, rule.unit or unit, rule.window)
        self._transition(rule, (device, rule.channel), s, exceeds and allowed, ok, rule.for_s, rule.clear_for_s,
                         out, count=t.count if rule.max_per_day is not None else None)

    @staticmethod
    def _unjudged(t: _Track) -> None:
        if t.state == "pending":
            t.state = "idle"
        elif t.state == "clearing":
            t.state = "active"

    def _transition(self, rule: Rule, where: tuple[str, str], s: _Sample, exceeds: bool, ok: bool, for_s: float,
                    clear_for_s: float, out: list[AlarmEvent], count: int | None = None) -> None:
        t = self._track((rule.id, *where))
        if s.ts <= t.watermark:
            return
        worse = (lambda a, b: a > b) if not (isinstance(rule, ThresholdRule) and rule.direction == "below") else (
            lambda a, b: a < b)
        if t.state == "idle":
            if exceeds:
                t.state, t.since, t.start, t.peak = "pending", s.ts, s.start, s.value
        elif t.state == "pending":
            if not exceeds:
                t.state = "idle"
                return
            if s.value is not None and (t.peak is None or worse(s.value, t.peak)):
                t.peak = s.value
        if t.state == "pending":
            if s.ts - t.since >= for_s * 1000:
                self._raise(rule, where, t, s, out, count)
            return
        if t.state in ("active", "clearing") and t.alarm is not None:
            a = t.alarm
            a.last_value = s.value
            if s.value is not None and (a.peak is None or worse(s.value, a.peak)):
                a.peak = s.value
            if ok:
                if t.state == "active":
                    t.state, t.clear_since = "clearing", s.ts
                if s.ts - t.clear_since >= clear_for_s * 1000:
                    self._clear(rule, where, t, s, out)
            else:
                t.state = "active"

    def _quality(self, rule: QualityRule, device: str, channel: str, flag: Flag, ts: int,
                 out: list[AlarmEvent]) -> None:
        bad = flag in rule.flags
        s = _Sample(None, ts, ts, unit="", note=f"flag {flag.value}")
        self._transition(rule, (device, channel), s, bad, not bad, rule.for_s, rule.clear_for_s, out)

    def _offline(self, rule: OfflineRule, device: str, now: int, ok: bool | None, out: list[AlarmEvent]) -> None:
        """`ok` True/False: a reading at `now`; None: a timer tick."""
        t = self._track((rule.id, device, ""))
        if now <= t.watermark:
            return
        dev = self._devices.get(device) or _Device()
        if ok:
            if t.state == "active":
                self._clear(rule, (device, ""), t, _Sample(None, t.start, now, note="answers again"), out)
            return
        if t.state != "idle":
            return
        seen = dev.last_ok if dev.last_ok is not None else dev.first_seen
        base = seen if seen is not None else self._clock_start
        if base is None:
            return
        if ok is None and self._clock_start is not None:
            base = max(base, self._clock_start)  # a tick does not count time the gateway was not running
        if now - base >= rule.after_s * 1000:
            t.start = seen if seen is not None else base
            since = "never answered" if dev.last_ok is None else "no successful reading"
            self._raise(rule, (device, ""), t, _Sample(None, t.start, now, rule.after_s, None, "s",
                                                       note=since), out)

    # --- events -----------------------------------------------------------------------------------------------
    def _emit(self, ev: AlarmEvent, out: list[AlarmEvent]) -> list[AlarmEvent]:
        if ev.event_id not in self._known_ids:
            self._known_ids.add(ev.event_id)
            out.append(ev)
        return out

    def _hhmm(self, ms: int) -> str:
        return local_stamp(ms, self.tz)

    def _message(self, rule: Rule, ev_type: EventType, device: str, channel: str, s: _Sample, start: int,
                 peak: float | None = None) -> str:
        what = rule.title or rule.id
        place = " ".join(p for p in (device, channel) if p)
        if isinstance(rule, ThresholdRule):
            win = WINDOW_WORDS.get(s.window, f"{s.window} average" if s.window else "")
            if s.window not in ("raw", "") and rule.stat != "avg":
                win = f"{s.window} {rule.stat}"
            elif s.window in ("1h", "1d", "1m"):
                win += " average"
            op = ">" if rule.direction == "above" else "<"
            value = f"{place} {win} {_fmt(s.value)} {s.unit}".replace("  ", " ")
            if ev_type is EventType.RAISED:
                return f"{what}: {value} {op} limit {_fmt(s.limit)} {s.unit} since {self._hhmm(start)}"
            if ev_type is EventType.CLEARED:
                return (f"{what}: cleared, {value} (limit {_fmt(s.limit)} {s.unit}; peak {_fmt(peak)}; "
                        f"since {self._hhmm(start)})")
            if ev_type is EventType.ESCALATED:
                return (f"{what}: not acknowledged for {_duration(rule.escalate_after_s or 0)} (escalated): {value} "
                        f"{op} limit {_fmt(s.limit)} {s.unit} since {self._hhmm(start)}")
            return f"{what}: still {value} since {self._hhmm(start)}"
        if ev_type is EventType.ESCALATED:
            detail = f" ({s.note})" if s.note else ""
            return (f"{what}: not acknowledged for {_duration(rule.escalate_after_s or 0)} (escalated): "
                    f"{place or self.site}{detail} since {self._hhmm(start)}")
        verb = {EventType.RAISED: "", EventType.CLEARED: "cleared, ", EventType.RENOTIFY: "still, "}.get(ev_type, "")
        detail = f" ({s.note})" if s.note else ""
        return f"{what}: {verb}{place or self.site}{detail} since {self._hhmm(start)}"

    def _raise(self, rule: Rule, where: tuple[str, str], t: _Track, s: _Sample, out: list[AlarmEvent],
               count: int | None = None) -> None:
        device, channel = where
        peak = t.peak if t.peak is not None else s.value
        ev = AlarmEvent(EventType.RAISED, self.site, rule.id, device, channel, s.window, t.start, s.ts, s.value,
                        s.limit, s.unit, rule.severity, rule.title, rule.standard,
                        self._message(rule, EventType.RAISED, device, channel, s, t.start), count=count, peak=peak,
                        note=s.note)
        t.state = "active"
        t.alarm = ActiveAlarm(ev, last_value=s.value, peak=peak)
        self._active[(rule.id, device, channel)] = t
        self._emit(ev, out)

    def _clear(self, rule: Rule, where: tuple[str, str], t: _Track, s: _Sample, out: list[AlarmEvent]) -> None:
        device, channel = where
        a = t.alarm
        assert a is not None
        r = a.raised
        ev = AlarmEvent(EventType.CLEARED, self.site, rule.id, device, channel, r.window, r.start, s.ts, s.value,
                        r.limit, r.unit, rule.severity, rule.title, rule.standard,
                        self._message(rule, EventType.CLEARED, device, channel,
                                      _Sample(s.value, s.start, s.ts, r.limit, None, r.unit, r.window, s.note),
                                      r.start, a.peak),
                        count=r.count, peak=a.peak, note=s.note)
        t.state, t.alarm, t.peak = "idle", None, None
        self._active.pop((rule.id, device, channel), None)
        self._emit(ev, out)

    def _renotify_all(self, now: int, out: list[AlarmEvent]) -> None:
        for key, t in list(self._active.items()):
            a = t.alarm
            if a is None:
                continue
            rule = self._by_id.get(key[0])
            if rule is None or rule.renotify_s is None or (a.acked and not rule.renotify_when_acked):
                continue
            every = int(rule.renotify_s * 1000)
            n = (now - a.raised.ts) // every
            if n > a.renotified:
                a.renotified = int(n)
                r = a.raised
                s = _Sample(a.last_value, r.start, r.ts + n * every, r.limit, None, r.unit, r.window, r.note)
                ev = AlarmEvent(EventType.RENOTIFY, self.site, key[0], key[1], key[2], r.window, r.start,
                                r.ts + n * every, a.last_value, r.limit, r.unit, r.severity, r.title, r.standard,
                                self._message(rule, EventType.RENOTIFY, key[1], key[2], s, r.start), n=int(n),
                                count=r.count, peak=a.peak, note=r.note)
                self._emit(ev, out)
        self._escalate_all(now, out)

    def _escalate_all(self, now: int, out: list[AlarmEvent]) -> None:
        """One `escalated` event for each active alarm nobody acknowledged within its rule's escalate_after_s. Its
        time is the deadline (not `now`), so a replay after a restart rebuilds the same event; one already in the
        log (restore) is not made again."""
        for key, t in list(self._active.items()):
            a = t.alarm
            if a is None or a.acked or a.escalated:
                continue
            rule = self._by_id.get(key[0])
            if rule is None or rule.escalate_after_s is None:
                continue
            due = a.raised.ts + int(rule.escalate_after_s * 1000)
            if now < due:
                continue
            a.escalated = True
            r = a.raised
            s = _Sample(a.last_value, r.start, due, r.limit, None, r.unit, r.window, r.note)
            ev = AlarmEvent(EventType.ESCALATED, self.site, key[0], key[1], key[2], r.window, r.start, due,
                            a.last_value, r.limit, r.unit, r.severity, r.title, r.standard,
                            self._message(rule, EventType.ESCALATED, key[1], key[2], s, r.start), count=r.count,
                            peak=a.peak, note=r.note)
            self._emit(ev, out)
