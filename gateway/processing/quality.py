"""Data-quality flags the gateway adds on top of what acquisition reports.

Acquisition already flags status bits (D/C/M...), range (T over the upper range, D below the plausible minimum)
and communication failures (B). This stage adds what only the site knows:
- maintenance (M): a site-wide or per-device switch, and planned windows (absolute or daily, in local time);
- stuck values: a channel repeating the same value N times and/or for a duration is flagged (D by default) —
  a frozen analyzer keeps answering Modbus happily, and a frozen 0 would otherwise count as valid clean air.
Flags combine by `worst_flag`, so a B or D is never hidden by M. The processor mutates the reading it is given
(called before the reading is appended to the log) and is deterministic: replaying the same readings in the same
order rebuilds the stuck-value state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from gateway.core.localtime import in_daily, minute_of_day, parse_daily
from gateway.core.model import DeviceReading, Flag, worst_flag
from gateway.core.patterns import matches
from gateway.core.strict import Strict


class MaintenanceWindow(Strict):
    """A planned maintenance period: absolute (`start`/`end`, local time unless an offset is given) or `daily`."""

    start: datetime | None = Field(None, description="Start, e.g. 2026-03-02T08:00:00 (site local time).")
    end: datetime | None = Field(None, description="End (exclusive).")
    daily: str | None = Field(None, description="Every day, local time, e.g. 02:00-02:15 or 23:30-00:30.")
    devices: list[str] = Field(default_factory=lambda: ["*"], description="Device name patterns.")
    channels: list[str] = Field(default_factory=lambda: ["*"], description="Channel name patterns.")
    reason: str = ""

    @field_validator("daily")
    @classmethod
    def _daily(cls, v: str | None) -> str | None:
        if v is not None:
            parse_daily(v)
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> MaintenanceWindow:
        absolute = self.start is not None or self.end is not None
        if absolute == (self.daily is not None):
            raise ValueError("give either start and end, or daily")
        if absolute and (self.start is None or self.end is None):
            raise ValueError("an absolute window needs both start and end")
        if self.start is not None and self.end is not None and self._ms(self.start) >= self._ms(self.end):
            raise ValueError("end must be after start")
        return self

    @staticmethod
    def _ms(t: datetime, tz: ZoneInfo | None = None) -> int:
        if t.tzinfo is None:
            t = t.replace(tzinfo=tz) if tz is not None else t.replace(tzinfo=ZoneInfo("UTC"))
        return int(t.timestamp() * 1000)

    def bounds_ms(self, tz: ZoneInfo) -> tuple[int, int] | None:
        if self.start is None or self.end is None:
            return None
        return self._ms(self.start, tz), self._ms(self.end, tz)


class MaintenanceConfig(Strict):
    """Site-file section `maintenance`: values measured during maintenance are flagged M (HJ 212), never dropped."""

    active: bool = Field(False, description="The switch: flag everything of `devices` M while true.")
    devices: list[str] = Field(default_factory=lambda: ["*"], description="Devices the switch applies to.")
    windows: list[MaintenanceWindow] = Field(default_factory=list)


class StuckRule(Strict):
    """Site-file section `stuck` (a list): when is a repeating value a frozen instrument?

    A value is flagged once the same value (within `tolerance` of the first of the run) has been seen `count`
    times in a row and/or for `duration_s`; both conditions must hold when both are given. The first values of the
    run are not flagged retroactively (they were logged already). Values without a number (B) are skipped, they
    neither extend nor break the run.
    """

    devices: list[str] = Field(default_factory=lambda: ["*"])
    channels: list[str] = Field(description="Channel name patterns, e.g. [pm10, pm25, tsp].")
    count: int | None = Field(None, ge=2, description="Identical consecutive values before flagging.")
    duration_s: float | None = Field(None, gt=0, description="How long the value must not move before flagging.")
    tolerance: float = Field(0.0, ge=0, description="Values within this of the run's first value are identical.")
    flag: Flag = Field(Flag.D, description="Flag given to stuck values (HJ 212 has no own flag; D = fault).")

    @model_validator(mode="after")
    def _some(self) -> StuckRule:
        if self.count is None and self.duration_s is None:
            raise ValueError("give count and/or duration_s")
        if self.flag is Flag.N:
            raise ValueError("flag N would not mark anything")
        return self


@dataclass(slots=True)
class _Run:
    value: float
    first_ts: int
    count: int


class QualityProcessor:
    """Applies maintenance and stuck-value flags to readings, in log order."""

    def __init__(self, maintenance: MaintenanceConfig | None = None, stuck: list[StuckRule] | None = None,
                 tz: ZoneInfo | str = "UTC"):
        self.maintenance = maintenance or MaintenanceConfig()
        self.stuck = stuck or []
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._switch: dict[str | None, bool] = {}
        self._runs: dict[tuple[str, str], _Run] = {}
        self._windows = [(w, w.bounds_ms(self.tz), parse_daily(w.daily) if w.daily else None)
                         for w in self.maintenance.windows]
        self._rule_of: dict[tuple[str, str], StuckRule | None] = {}
        self._windows_of: dict[tuple[str, str], list[tuple[MaintenanceWindow, tuple[int, int] | None,
                                                           tuple[int, int] | None]]] = {}

    # --- maintenance ----------------------------------------------------------------------------------------
    def set_maintenance(self, on: bool | None, device: str | None = None) -> None:
        """The runtime switch (from MQTT or the CLI; the caller logs the change so a replay sees it too).
        `device` None is the site-wide switch; `on` None returns to what the site file says."""
        if on is None:
            self._switch.pop(device, None)
        else:
            self._switch[device] = on

    def in_maintenance(self, device: str, channel: str, ts: int) -> str | None:
        """Why `device.channel` is under maintenance at `ts` (a short reason), or None."""
        switched = self._switched(device)
        if switched is not None:
            return switched or None
        return self._planned(device, channel, ts)

    def _switched(self, device: str) -> str | None:
        """What the switches say of every channel of `device`: "maintenance switch", "" (switched off: no
        maintenance, whatever the windows say) or None (the windows decide, channel by channel)."""
        dev = self._switch.get(device)
        if dev is not None:
            return "maintenance switch" if dev else ""
        site = self._switch.get(None, self.maintenance.active)
        if site and matches(device, self.maintenance.devices):
            return "maintenance switch"
        return None

    def _planned(self, device: str, channel: str, ts: int) -> str | None:
        """The planned (or daily) maintenance window `device.channel` is in at `ts`, or None."""
        key = (device, channel)
        wins = self._windows_of.get(key)
        if wins is None:  # the windows of one channel, matched once (a site's channels are few and fixed)
            wins = self._windows_of[key] = [(w, bounds, daily) for w, bounds, daily in self._windows
                                            if matches(device, w.devices) and matches(channel, w.channels)]
        minute: int | None = None
        for w, bounds, daily in wins:
            if bounds is not None and bounds[0] <= ts < bounds[1]:
                return w.reason or "planned maintenance"
            if daily is not None:
                if minute is None:
                    minute = minute_of_day(ts, self.tz)
                if in_daily(minute, daily):
                    return w.reason or "daily maintenance"
        return None

    # --- stuck values ---------------------------------------------------------------------------------------
    def _rule(self, device: str, channel: str) -> StuckRule | None:
        key = (device, channel)
        if key not in self._rule_of:
            self._rule_of[key] = next(
                (r for r in self.stuck if matches(device, r.devices) and matches(channel, r.channels)), None)
        return self._rule_of[key]

    def _stuck(self, device: str, channel: str, value: float, ts: int, rule: StuckRule) -> str | None:
        key = (device, channel)
        run = self._runs.get(key)
        if run is None or abs(value - run.value) > rule.tolerance:
            self._runs[key] = _Run(value, ts, 1)
            return None
        run.count += 1
        if rule.count is not None and run.count < rule.count:
            return None
        if rule.duration_s is not None and ts - run.first_ts < rule.duration_s * 1000:
            return None
        return f"stuck: {run.count} identical values over {(ts - run.first_ts) / 1000:g} s"

    # --- the stage ------------------------------------------------------------------------------------------
    def apply(self, reading: DeviceReading) -> DeviceReading:
        """Add M and stuck flags to `reading` (in place; returned for chaining). The switches are asked once per
        reading (they hold for every channel), the windows and stuck rules only when there are any."""
        device, ts = reading.device, reading.ts
        switched = self._switched(device)
        windows = switched is None and bool(self._windows)
        if not switched and not windows and not self.stuck:
            return reading
        for ch, cv in reading.values.items():
            why = switched or (self._planned(device, ch, ts) if windows else None)
            if why is not None:
                flag = worst_flag(cv.flag, Flag.M)
                if flag is not cv.flag:
                    cv.flag = flag
                    cv.note = cv.note or why
            rule = self._rule(device, ch) if self.stuck else None
            if rule is not None and isinstance(cv.value, (int, float)) and not isinstance(cv.value, bool):
                note = self._stuck(device, ch, float(cv.value), ts, rule)
                if note is not None:
                    flag = worst_flag(cv.flag, rule.flag)
                    if flag is not cv.flag:
                        cv.flag = flag
                        cv.note = cv.note or note
        return reading
