"""The fog cannon as a site manager sees it: on with the alarm, off a while after, never beyond its daily run
time, overridable by hand, and every switch a logged command."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.alarms.actuation import ActuationPolicy, ActuatorConfig, WriteCommand
from gateway.alarms.events import AlarmEvent, EventType
from tests.alarms.helpers import T, ms, rule

S = 1000
MIN = 60 * S
FOG = ActuatorConfig(name="fog-1", device="fog-plc", function=5, address=16, off_delay_s=300,
                     max_run_s_per_day=3600)
RULES = [rule(id="pm10", channel="pm10", limit=150, actuate=["fog-1"]), rule(id="tsp", channel="tsp", limit=300,
                                                                            actuate=["fog-1"]),
         rule(id="noise", channel="noise", limit=70)]


def ev(kind, rule_id="pm10", ts=T, start=T):
    return AlarmEvent(EventType(kind), "site", rule_id, "dust-1", rule_id, "raw", start, ts, 200.0, 150.0)


def policy(tz="UTC"):
    return ActuationPolicy([FOG], RULES, tz)


def test_on_at_raise_off_after_clear_plus_delay():
    p = policy()
    (on,) = p.on_event(ev("raised"))
    assert (on.device, on.function, on.address, on.value, on.wire_value, on.on) == ("fog-plc", 5, 16, 1, 0xFF00,
                                                                                    True)
    assert on.reason == "alarm raised: pm10" and on.alarm_ids == (f"pm10/dust-1/pm10/{T}",)
    assert p.on_event(ev("cleared", ts=T + 10 * MIN)) == []  # still on: the delay runs
    assert p.tick(T + 10 * MIN + 299 * S) == []
    (off,) = p.tick(T + 15 * MIN)
    assert (off.on, off.value, off.wire_value, off.reason) == (False, 0, 0x0000,
                                                              "off 300 s after the last alarm cleared")
    assert off.run_s_today == 15 * 60


def test_rules_without_the_actuator_do_not_switch_it():
    assert policy().on_event(ev("raised", "noise")) == []


def test_two_alarms_hold_it_and_a_new_raise_cancels_the_off_delay():
    p = policy()
    p.on_event(ev("raised", "pm10"))
    assert p.on_event(ev("raised", "tsp", ts=T + MIN)) == []  # already on
    p.on_event(ev("cleared", "pm10", ts=T + 2 * MIN))
    assert p.tick(T + 20 * MIN) == []  # tsp still raised
    p.on_event(ev("cleared", "tsp", ts=T + 21 * MIN))
    p.on_event(ev("raised", "pm10", ts=T + 23 * MIN, start=T + 23 * MIN))  # during the delay
    assert p.tick(T + 30 * MIN) == []
    assert p.state("fog-1", T + 30 * MIN)["alarms"] == [f"pm10/dust-1/pm10/{T + 23 * MIN}"]


def test_daily_maximum_run_time_then_a_new_local_day():
    p = policy("Asia/Shanghai")
    start = ms("2026-03-02T14:00:00")  # 22:00 local
    p.on_event(ev("raised", ts=start, start=start))
    assert p.tick(start + 59 * MIN) == []
    (off,) = p.tick(start + 60 * MIN)  # 3600 s used
    assert not off.on and off.reason == "daily maximum run time reached (3600 s)"
    p.on_event(ev("raised", "tsp", ts=start + 70 * MIN))  # another alarm the same day: no water left today
    assert p.tick(start + 100 * MIN) == []
    (on,) = p.tick(ms("2026-03-02T16:00:00"))  # local midnight: a new budget, the alarms still hold it
    assert on.on and on.reason == "new day: run-time budget renewed" and on.run_s_today == 0


def test_running_across_midnight_counts_in_the_new_day():
    p = policy("Asia/Shanghai")
    start = ms("2026-03-02T15:30:00")  # 23:30 local
    p.on_event(ev("raised", ts=start, start=start))
    assert p.tick(ms("2026-03-02T16:30:00")) == []  # 60 min running, but only 30 of them today
    assert p.state("fog-1", ms("2026-03-02T16:30:00"))["run_s_today"] == 1800


def test_manual_override_wins_and_every_override_is_logged():
    p = policy()
    (c,) = p.override("fog-1", "on", T, by="site manager")
    assert c.on and c.mode == "on" and c.reason == "manual on by site manager"
    assert p.tick(T + 2 * 3600 * S) == []  # over the daily budget: a manual on stays on
    p.on_event(ev("raised", ts=T + 2 * 3600 * S))
    (c,) = p.override("fog-1", "off", T + 2 * 3600 * S + S)
    assert not c.on and c.mode == "off"
    assert p.on_event(ev("raised", "tsp", ts=T + 2 * 3600 * S + 2 * S)) == []  # manual off holds during alarms
    (c,) = p.override("fog-1", "auto", T + 2 * 3600 * S + 3 * S)
    assert not c.on and c.mode == "auto" and "daily maximum run time reached" in c.reason  # budget spent
    (again,) = p.override("fog-1", "auto", T + 2 * 3600 * S + 4 * S)  # no change, still a logged write
    assert not again.on


def test_restart_keeps_the_days_run_time_and_resyncs_the_output():
    p = policy()
    log: list[WriteCommand] = []
    events = [ev("raised")]
    log += p.on_event(events[0])
    log += p.tick(T + 40 * MIN)
    # the gateway restarts 40 minutes in; the alarm is still raised
    q = policy()
    (resync,) = q.restore([WriteCommand.from_json(c.to_json()) for c in log], events, T + 40 * MIN)
    assert resync.on and resync.reason == "resync after restart"
    (off,) = q.tick(T + 60 * MIN)
    assert not off.on and "daily maximum" in off.reason
    # and once more: the budget stays spent after a second restart
    r = policy()
    (resync,) = r.restore([*log, resync, off], events, T + 61 * MIN)
    assert not resync.on and "daily maximum" in resync.reason
    assert r.tick(T + 120 * MIN) == []


def test_restart_during_the_off_delay():
    p = policy()
    events = [ev("raised"), ev("cleared", ts=T + 10 * MIN)]
    log = p.on_event(events[0]) + p.on_event(events[1])
    q = policy()
    (resync,) = q.restore(log, events, T + 12 * MIN)
    assert resync.on
    (off,) = q.tick(T + 15 * MIN)
    assert not off.on


def test_register_actuator_and_config_errors():
    sprinkler = ActuatorConfig(name="spr", device="plc", function=6, address=100, on_value=2, off_value=0)
    p = ActuationPolicy([sprinkler], [rule(id="pm10", channel="pm10", limit=150, actuate=["spr"])])
    (c,) = p.on_event(ev("raised"))
    assert (c.function, c.value, c.wire_value) == (6, 2, 2)
    with pytest.raises(ValidationError, match="a coil"):
        ActuatorConfig(name="x", device="d", function=5, address=0, on_value=2)
    with pytest.raises(ValidationError, match="must differ"):
        ActuatorConfig(name="x", device="d", function=6, address=0, on_value=0)
