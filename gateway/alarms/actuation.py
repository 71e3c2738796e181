"""Actuation policy: fog cannons and sprinklers switched by alarms, as pure logic producing Modbus writes.

- On when an alarm of a rule that names the actuator (`actuate: [fog-1]`) is raised; several alarms may hold it.
- Off `off_delay_s` after the last of them cleared (dust settles after the peak; a cannon hunting on and off with
  every reading wears the pump).
- At most `max_run_s_per_day` of running per local day: then off, and not on again that day (water, neighbours).
  A new local day renews the budget: still-raised alarms switch it on again.
- Manual override (from MQTT or the CLI): `on` and `off` win over everything (run time still counted); `auto`
  returns to the policy.
Every decision is a `WriteCommand`, which is also the actuation event written to the log: what was written, when
and why. After a restart, `restore` rebuilds the state (today's run time, the override, the alarms holding it) from
those commands and the alarm events, and re-sends the current state (the device may have restarted too).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.rules import NAME, Rule
from gateway.core.localtime import day_start, local_date

Mode = Literal["auto", "on", "off"]


class ActuatorConfig(BaseModel):
    """Site-file section `actuators` (a list): an output a rule may switch."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME)
    device: str = Field(description="The site device (its bus and Modbus address) that is written.")
    function: Literal[5, 6] = Field(5, description="5: write a coil; 6: write a holding register.")
    address: int = Field(ge=0, le=0xFFFF)
    on_value: int = Field(1, ge=0, le=0xFFFF, description="Coil: 1; register: the value that switches it on.")
    off_value: int = Field(0, ge=0, le=0xFFFF)
    off_delay_s: float = Field(300.0, ge=0, description="Stays on this long after the last alarm cleared.")
    max_run_s_per_day: float | None = Field(None, gt=0, le=86_400, description="Running time a local day allows.")

    @model_validator(mode="after")
    def _coil(self) -> ActuatorConfig:
        if self.function == 5 and {self.on_value, self.off_value} != {0, 1}:
            raise ValueError("a coil (function 5) is on_value 1 / off_value 0 (or the reverse)")
        if self.on_value == self.off_value:
            raise ValueError("on_value and off_value must differ")
        return self


@dataclass(slots=True, frozen=True)
class WriteCommand:
    """One write to an actuator and why: executed by the Modbus writer, logged as the actuation event."""

    actuator: str
    device: str
    function: int
    address: int
    value: int  # the logical value (coil 1/0, register value)
    on: bool
    ts: int
    reason: str
    mode: Mode = "auto"
    alarm_ids: tuple[str, ...] = ()
    run_s_today: float = 0.0

    @property
    def wire_value(self) -> int:
        """What goes into the request PDU: FC 5 writes 0xFF00 for on and 0x0000 for off."""
        if self.function == 5:
            return 0xFF00 if self.value else 0x0000
        return self.value

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["alarm_ids"] = list(self.alarm_ids)
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> WriteCommand:
        return WriteCommand(**{**d, "alarm_ids": tuple(d.get("alarm_ids", ()))})


@dataclass(slots=True)
class _State:
    cfg: ActuatorConfig
    on: bool = False
    on_since: int = 0
    run_ms: int = 0  # completed running time of `day`
    day: date | None = None
    demand: set[str] = field(default_factory=set)
    off_at: int | None = None
    mode: Mode = "auto"


class ActuationPolicy:
    def __init__(self, actuators: Iterable[ActuatorConfig], rules: Iterable[Rule], tz: ZoneInfo | str = "UTC"):
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._state = {a.name: _State(a) for a in actuators}
        self._by_rule: dict[str, list[str]] = {r.id: [n for n in r.actuate if n in self._state] for r in rules}

    # --- inputs ---------------------------------------------------------------------------------------------
    def on_event(self, ev: AlarmEvent) -> list[WriteCommand]:
        out: list[WriteCommand] = []
        for name in self._by_rule.get(ev.rule, []):
            s = self._state[name]
            if ev.type is EventType.RAISED:
                s.demand.add(ev.alarm_id)
                s.off_at = None
                self._decide(s, ev.ts, f"alarm raised: {ev.title or ev.rule}", out)
            elif ev.type is EventType.CLEARED and ev.alarm_id in s.demand:
                s.demand.discard(ev.alarm_id)
                if not s.demand:
                    s.off_at = ev.ts + int(s.cfg.off_delay_s * 1000)
                self._decide(s, ev.ts, "alarm cleared", out)
        return out

    def override(self, actuator: str, mode: Mode, ts: int, by: str = "") -> list[WriteCommand]:
        """Manual override; always returns the write (so the override itself is logged and survives a restart)."""
        s = self._state[actuator]
        s.mode = mode
        out: list[WriteCommand] = []
        who = f" by {by}" if by else ""
        self._decide(s, ts, f"manual {mode}{who}", out, force=True)
        return out

    def tick(self, now: int) -> list[WriteCommand]:
        out: list[WriteCommand] = []
        for s in self._state.values():
            self._decide(s, now, "", out)
        return out

    def state(self, actuator: str, now: int) -> dict[str, Any]:
        """For health and the retained MQTT state."""
        s = self._state[actuator]
        self._roll(s, now)
        return {"on": s.on, "mode": s.mode, "alarms": sorted(s.demand), "off_at": s.off_at,
                "exhausted": self._exhausted(s, now), "run_s_today": self._run_ms(s, now) / 1000}

    # --- restart --------------------------------------------------------------------------------------------
    def restore(self, commands: Iterable[WriteCommand], events: Iterable[AlarmEvent], now: int,
                ) -> list[WriteCommand]:
        """Rebuild from the logged commands and alarm events (oldest first); returns the resync writes."""
        for ev in events:
            for name in self._by_rule.get(ev.rule, []):
                s = self._state[name]
                if ev.type is EventType.RAISED:
                    s.demand.add(ev.alarm_id)
                    s.off_at = None
                elif ev.type is EventType.CLEARED and ev.alarm_id in s.demand:
                    s.demand.discard(ev.alarm_id)
                    if not s.demand:
                        s.off_at = ev.ts + int(s.cfg.off_delay_s * 1000)
        for c in commands:
            st = self._state.get(c.actuator)
            if st is None:
                continue
            self._roll(st, c.ts)
            if c.on and not st.on:
                st.on, st.on_since = True, c.ts
            elif not c.on and st.on:
                st.run_ms += c.ts - max(st.on_since, day_start(c.ts, self.tz))
                st.on = False
            st.mode = c.mode
        out: list[WriteCommand] = []
        for s in self._state.values():
            self._roll(s, now)
            self._decide(s, now, "resync after restart", out, force=True)
        return out

    # --- the decision ---------------------------------------------------------------------------------------
    def _roll(self, s: _State, now: int) -> bool:
        """Start a new local day (its run-time budget); True when a day ended."""
        d = local_date(now, self.tz)
        if s.day == d:
            return False
        fresh = s.day is not None
        s.day, s.run_ms = d, 0
        return fresh

    def _run_ms(self, s: _State, now: int) -> int:
        if not s.on or s.day is None:
            return s.run_ms
        return s.run_ms + max(0, now - max(s.on_since, day_start(now, self.tz)))

    def _exhausted(self, s: _State, now: int) -> bool:
        cap = s.cfg.max_run_s_per_day
        return cap is not None and self._run_ms(s, now) >= cap * 1000

    def _decide(self, s: _State, now: int, reason: str, out: list[WriteCommand], force: bool = False) -> None:
        rolled = self._roll(s, now)
        exhausted = self._exhausted(s, now)
        expired = s.off_at is not None and now >= s.off_at
        if expired:
            s.off_at = None
        held = bool(s.demand) or s.off_at is not None
        want = (s.mode == "on") if s.mode != "auto" else (held and not exhausted)
        if want == s.on and not force:
            return
        if s.mode == "auto" and held and exhausted:
            why = f"daily maximum run time reached ({s.cfg.max_run_s_per_day:g} s)"
            reason = f"{reason}; {why}" if reason else why
        elif not reason:
            if expired:
                reason = f"off {s.cfg.off_delay_s:g} s after the last alarm cleared"
            elif rolled and want:
                reason = "new day: run-time budget renewed"
            else:
                reason = "on" if want else "off"
        if want and not s.on:
            s.on, s.on_since = True, now
        elif not want and s.on:
            s.run_ms += now - max(s.on_since, day_start(now, self.tz))
            s.on = False
        c = s.cfg
        out.append(WriteCommand(c.name, c.device, c.function, c.address, c.on_value if want else c.off_value, want,
                                now, reason, s.mode, tuple(sorted(s.demand)), self._run_ms(s, now) / 1000))
