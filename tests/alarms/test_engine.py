"""The alarm lifecycle as an enforcement officer experiences it: one alarm per real exceedance, none from a value
flapping around the limit, the context to act, acknowledgements, reminders, and restarts that neither lose nor
duplicate an alarm."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.events import AlarmEvent, EventType
from gateway.core.model import ChannelValue, Flag
from tests.alarms.helpers import RULE, T, agg, ms, reading, rule

S = 1000
MIN = 60 * S


def kinds(events):
    return [e.type.value for e in events]


def feed(engine, readings):
    out = []
    for r in readings:
        out += engine.on_reading(r)
    return out


def pm10_series(values, step=10 * S, start=T, device="dust-1"):
    return [reading(start + i * step, device, pm10=float(v)) for i, v in enumerate(values)]


# --- thresholds ----------------------------------------------------------------------------------------------
def test_a_dust_burst_raises_exactly_one_alarm_and_clears_it_after():
    e = AlarmEngine([rule(id="pm10-raw", channel="pm10", limit=150, clear=120, title="PM10 over 150")], "site",
                    "Asia/Shanghai")
    events = feed(e, pm10_series([40, 100, 160, 210, 180, 130, 90, 60]))
    assert kinds(events) == ["raised", "cleared"]
    raised, cleared = events
    assert (raised.value, raised.limit, raised.unit, raised.start, raised.ts) == (160.0, 150, "ug/m3", T + 20 * S,
                                                                                   T + 20 * S)
    assert (raised.site, raised.device, raised.channel, raised.rule, raised.window) == (
        "site", "dust-1", "pm10", "pm10-raw", "raw")
    assert raised.message == "PM10 over 150: dust-1 pm10 160 ug/m3 > limit 150 ug/m3 since 2026-03-02 08:00 UTC+08:00"
    # 130 is between clear (120) and limit: still active; 90 clears it
    assert (cleared.value, cleared.ts, cleared.peak, cleared.alarm_id) == (90.0, T + 60 * S, 210.0, raised.alarm_id)
    assert e.active() == []


def test_a_value_flapping_around_the_limit_does_not_flap_the_alarm():
    flapping = [148, 152, 149, 155, 141, 151, 147, 153, 139, 150.5, 100]
    with_hysteresis = AlarmEngine([rule(channel="pm10", limit=150, clear=130)], "site")
    assert kinds(feed(with_hysteresis, pm10_series(flapping))) == ["raised", "cleared"]
    without = AlarmEngine([rule(channel="pm10", limit=150)], "site")  # clear defaults to the limit
    assert kinds(feed(without, pm10_series(flapping))).count("raised") == 5  # what hysteresis prevents


def test_minimum_duration_before_raising():
    e = AlarmEngine([rule(channel="pm10", limit=150, for_s=60)], "site")
    # 50 s over the limit, then under: nothing
    assert feed(e, pm10_series([160, 170, 180, 190, 200, 160, 100])) == []
    # over from t0 for 60 s: raised at t0 + 60 s, and its start is t0
    t0 = T + 10 * MIN
    events = feed(e, pm10_series([160, 170, 180, 190, 200, 160, 170], start=t0))
    assert kinds(events) == ["raised"] and (events[0].start, events[0].ts) == (t0, t0 + 60 * S)
    assert events[0].peak == 200.0


def test_minimum_duration_before_clearing():
    e = AlarmEngine([rule(channel="pm10", limit=150, clear=120, clear_for_s=30)], "site")
    events = feed(e, pm10_series([200, 100, 100, 160, 100, 100, 100, 100]))
    # back over at 30 s resets the clear timer: clears at 40 + 30 = 70 s
    assert kinds(events) == ["raised", "cleared"] and events[1].ts == T + 70 * S


def test_below_rule():
    e = AlarmEngine([rule(channel="flow_std", limit=1000, clear=1200, direction="below", kind="cems")], "site")
    r = [reading(T + i * S, "stack-1", kind="cems", flow_std=(v, "m3/h")) for i, v in enumerate([1500, 900, 1100,
                                                                                                  1300])]
    events = feed(e, r)
    assert kinds(events) == ["raised", "cleared"] and events[0].message.endswith("< limit 1000 m3/h since "
                                                                                 "2026-03-02 00:00 UTC")


def test_bad_data_neither_raises_nor_clears():
    e = AlarmEngine([rule(channel="pm10", limit=150, for_s=20)], "site")
    series = [reading(T, pm10=200.0), reading(T + 10 * S, pm10=(999.0, "ug/m3", Flag.D)),
              reading(T + 20 * S, pm10=200.0), reading(T + 30 * S, pm10=200.0), reading(T + 40 * S, pm10=200.0)]
    events = feed(e, series)
    # the D value resets the pending alarm: raised 20 s after 20 s, not at 20 s
    assert kinds(events) == ["raised"] and events[0].start == T + 20 * S and events[0].ts == T + 40 * S
    more = feed(e, [reading(T + 50 * S, pm10=ChannelValue(None, "ug/m3", Flag.B)),
                    reading(T + 60 * S, pm10=(10.0, "ug/m3", Flag.M))])
    assert more == [] and len(e.active()) == 1


def test_window_average_rule_with_unit_conversion():
    e = AlarmEngine([rule(id="tsp-5m", channel="tsp", window="5m", unit="mg/m3", limit=0.8, clear=0.7)], "site")
    assert e.on_aggregate(agg(T, "5m", tsp=790.0)) == []  # 0.79 mg/m3
    assert e.on_aggregate(agg(T, "15m", tsp=5000.0)) == []  # another window: not this rule
    (ev,) = e.on_aggregate(agg(T + 5 * MIN, "5m", tsp=850.0))
    assert (ev.value, ev.unit, ev.limit, ev.window, ev.start, ev.ts) == (pytest.approx(0.85), "mg/m3", 0.8, "5m",
                                                                         T + 5 * MIN, T + 10 * MIN)
    assert "5m average 0.85 mg/m3 > limit 0.8 mg/m3" in ev.message
    assert kinds(e.on_aggregate(agg(T + 10 * MIN, "5m", tsp=650.0))) == ["cleared"]


def test_partial_and_invalid_windows_are_not_judged():
    e = AlarmEngine([rule(channel="pm10", window="15m", limit=150)], "site")
    assert e.on_aggregate(agg(T, "15m", partial=True, pm10=400.0)) == []
    assert e.on_aggregate(agg(T + 15 * MIN, "15m", pm10=(400.0, "ug/m3", Flag.C))) == []
    assert kinds(e.on_aggregate(agg(T + 30 * MIN, "15m", pm10=400.0))) == ["raised"]


def test_unit_mismatch_is_a_problem_not_an_alarm():
    e = AlarmEngine([rule(id="x", channel="pm10", unit="mg/m3", limit=0.1)], "site")
    assert feed(e, [reading(T, pm10=(5.0, "dB(A)"))]) == []
    assert e.problems == ["rule x: dust-1.pm10 is in 'dB(A)', the rule in 'mg/m3'"]


def test_hebei_baseline_and_at_most_two_exceedances_a_local_day():
    e = AlarmEngine([rule(id="pm10-1h", channel="pm10", window="1h", unit="ug/m3", limit=80, baseline=60,
                          max_per_day=2)], "site", "Asia/Shanghai")
    day = ms("2026-03-01T16:00:00")  # local midnight of 2 March in Shanghai
    hours = [130, 150, 145, 200, 100, 170]  # minus 60: 70, 90 (1st), 85 (2nd), 140 (3rd: raised), 40, 110 (4th)
    events = [ev for i, v in enumerate(hours) for ev in e.on_aggregate(agg(day + i * 3_600_000, "1h", pm10=v))]
    assert kinds(events) == ["raised", "cleared", "raised"]
    assert [(ev.value, ev.count, ev.start) for ev in events if ev.type is EventType.RAISED] == [
        (140.0, 3, day + 3 * 3_600_000), (110.0, 4, day + 5 * 3_600_000)]
    # the next local day starts counting again: its first two exceedances are tolerated
    nxt = day + 24 * 3_600_000
    assert kinds(e.on_aggregate(agg(nxt - 3_600_000, "1h", pm10=50.0))) == ["cleared"]
    assert e.on_aggregate(agg(nxt, "1h", pm10=200.0)) == []
    assert e.on_aggregate(agg(nxt + 3_600_000, "1h", pm10=200.0)) == []


def test_noise_limit_follows_the_local_time_of_day():
    r = RULE.validate_python({"id": "leq", "type": "threshold", "channel": "noise", "window": "20m",
                              "unit": "dB(A)", "schedule": [{"during": "06:00-22:00", "limit": 70},
                                                            {"during": "22:00-06:00", "limit": 55}]})
    e = AlarmEngine([r], "site", "Asia/Shanghai")
    evening = ms("2026-03-02T13:40:00")  # 21:40 local: day limit 70
    assert e.on_aggregate(agg(evening, "20m", noise=(62.0, "dB(A)"))) == []
    (ev,) = e.on_aggregate(agg(evening + 20 * MIN, "20m", noise=(62.0, "dB(A)")))  # 22:00 local: 55
    assert (ev.limit, ev.value) == (55, 62.0)


# --- offline, quality, the log ---------------------------------------------------------------------------------
OFFLINE = RULE.validate_python({"id": "offline", "type": "offline", "after_s": 300})


def test_a_dead_device_raises_offline_and_clears_when_it_answers():
    e = AlarmEngine([OFFLINE], "site", devices=["dust-1"])
    assert feed(e, [reading(T, pm10=10.0)]) == []
    failed = [reading(T + i * 10 * S, ok=False, pm10=ChannelValue(None, "ug/m3", Flag.B)) for i in range(1, 31)]
    events = feed(e, failed)
    assert kinds(events) == ["raised"]
    assert (events[0].start, events[0].ts, events[0].device, events[0].limit) == (T, T + 300 * S, "dust-1", 300)
    assert "no successful reading" in events[0].message
    (cleared,) = feed(e, [reading(T + 400 * S, pm10=10.0)])
    assert cleared.type is EventType.CLEARED and cleared.alarm_id == events[0].alarm_id


def test_a_silent_device_is_offline_by_the_clock_but_downtime_of_the_gateway_does_not_count():
    e = AlarmEngine([OFFLINE], "site", devices=["dust-1", "dust-2"])
    feed(e, [reading(T, "dust-1", pm10=1.0)])
    later = T + 3 * 3_600_000  # the gateway was down for 3 hours
    assert e.tick(later) == []
    assert e.tick(later + 299 * S) == []
    events = e.tick(later + 300 * S)
    assert sorted((ev.device, ev.start) for ev in events) == [("dust-1", T), ("dust-2", later)]
    assert e.tick(later + 400 * S) == []


def test_sustained_bad_data_quality():
    r = RULE.validate_python({"id": "bad", "type": "quality", "channels": ["so2"], "flags": ["D", "B"],
                              "for_s": 600})
    e = AlarmEngine([r], "site")
    series = [reading(T + i * MIN, "stack-1", so2=(1.0, "mg/m3", Flag.D), o2=(1.0, "%", Flag.D)) for i in range(11)]
    events = feed(e, series)
    assert [(ev.type.value, ev.channel, ev.start, ev.ts) for ev in events] == [("raised", "so2", T, T + 10 * MIN)]
    assert kinds(feed(e, [reading(T + 11 * MIN, "stack-1", so2=(1.0, "mg/m3", Flag.C))])) == ["cleared"]


def test_log_drops_and_disk_usage():
    rules = [RULE.validate_python({"id": "drops", "type": "log_drops", "quiet_s": 600}),
             RULE.validate_python({"id": "disk", "type": "disk_usage", "limit": 90, "clear": 80})]
    e = AlarmEngine(rules, "site")
    assert e.on_log_stats(T, 0, 50, 100) == []
    events = e.on_log_stats(T + MIN, 120, 91, 100)
    assert sorted((ev.rule, ev.type.value, ev.value) for ev in events) == [
        ("disk", "raised", 91.0), ("drops", "raised", 120.0)]
    assert e.on_log_stats(T + 2 * MIN, 150, 85, 100) == []  # more drops: same alarm; 85 %: held (hysteresis)
    assert e.tick(T + 11 * MIN) == []  # 9 minutes since the last drop
    events = e.on_log_stats(T + 13 * MIN, 150, 79, 100)
    assert sorted((ev.rule, ev.type.value) for ev in events) == [("disk", "cleared"), ("drops", "cleared")]


# --- acknowledge, renotify -------------------------------------------------------------------------------------
def test_acknowledge_once_and_renotify_until_then():
    e = AlarmEngine([rule(channel="pm10", limit=150, renotify_s=600)], "site")
    (raised,) = feed(e, pm10_series([200]))
    events = feed(e, pm10_series([200] * 130, step=10 * S, start=T + 10 * S))  # 21 more minutes over the limit
    assert [(ev.type.value, ev.n, ev.ts) for ev in events] == [("renotify", 1, T + 600 * S),
                                                               ("renotify", 2, T + 1200 * S)]
    assert {ev.alarm_id for ev in events} == {raised.alarm_id}
    (ack,) = e.acknowledge(raised.alarm_id, T + 1300 * S, by="officer wang", note="on my way")
    assert (ack.type, ack.by, ack.note, ack.start) == (EventType.ACKNOWLEDGED, "officer wang", "on my way", T)
    assert e.acknowledge(raised.alarm_id, T + 1301 * S) == []  # once
    assert e.acknowledge("no/such/alarm/1", T) == []
    assert e.active()[0].acked and e.active()[0].acked_by == "officer wang"
    assert feed(e, pm10_series([200] * 100, start=T + 1310 * S)) == []  # acknowledged: no more reminders
    assert e.active()[0].to_json()["acked"] is True


def test_event_ids_are_stable_and_json_round_trips():
    e = AlarmEngine([rule(id="pm10", channel="pm10", limit=150)], "site")
    (ev,) = feed(e, pm10_series([200]))
    assert ev.alarm_id == f"pm10/dust-1/pm10/{T}" and ev.event_id == f"pm10/dust-1/pm10/{T}/raised"
    assert len(ev.idempotency_key) == 32
    back = AlarmEvent.from_json(ev.to_json())
    assert back == ev and back.idempotency_key == ev.idempotency_key


# --- restart ---------------------------------------------------------------------------------------------------
def restarted(rules, logged, readings, tz="UTC"):
    """A new engine after a restart: the log's events restored, readings since replay_from fed again."""
    e = AlarmEngine(rules, "site", tz)
    e.restore(logged)
    since, _ = e.replay_from(readings[-1].ts if readings else T)
    return e, feed(e, [r for r in readings if r.ts >= since])


def test_a_restart_in_the_middle_of_an_alarm_neither_loses_nor_duplicates_it():
    rules = [rule(channel="pm10", limit=150, clear=120, for_s=30)]
    series = pm10_series([100, 200, 200, 200, 210, 220, 230, 240, 90, 80])
    full = feed(AlarmEngine(rules, "site"), series)
    assert kinds(full) == ["raised", "cleared"]
    before = AlarmEngine(rules, "site")
    logged = feed(before, series[:6])  # the gateway stops at 50 s, the alarm raised at 40 s
    logged += before.acknowledge(logged[0].alarm_id, T + 55 * S, by="wang")
    after, replayed = restarted(rules, logged, series[:6])
    assert replayed == []  # nothing new from the replay: no second "raised"
    assert [a.alarm_id for a in after.active()] == [full[0].alarm_id] and after.active()[0].acked
    rest = feed(after, series[6:])
    assert kinds(rest) == ["cleared"] and rest[0].event_id == full[1].event_id


def test_an_alarm_decided_but_not_logged_before_a_crash_is_sent_after_the_restart():
    rules = [rule(channel="pm10", limit=150)]
    series = pm10_series([100, 120, 200])
    full = feed(AlarmEngine(rules, "site"), series)
    _, replayed = restarted(rules, [], series)  # the raise never reached the log
    assert [ev.event_id for ev in replayed] == [ev.event_id for ev in full]


def test_daily_exceedance_count_survives_a_restart():
    rules = [rule(id="h", channel="pm10", window="1h", limit=80, max_per_day=2)]
    hours = [agg(T + i * 3_600_000, "1h", pm10=v) for i, v in enumerate([100, 100, 50, 100])]
    before = AlarmEngine(rules, "site")
    logged = [ev for a in hours[:2] for ev in before.on_aggregate(a)]
    assert logged == []
    after = AlarmEngine(rules, "site")
    after.restore(logged)
    _, aggs_from = after.replay_from(hours[1].end)
    assert aggs_from <= T  # the whole local day
    replay = [ev for a in hours[:2] if a.start >= aggs_from for ev in after.on_aggregate(a)]
    assert replay == []
    events = [ev for a in hours[2:] for ev in after.on_aggregate(a)]
    assert [(ev.type.value, ev.count) for ev in events] == [("raised", 3)]


def test_restored_log_drop_total_is_not_alarmed_again():
    r = RULE.validate_python({"id": "drops", "type": "log_drops"})
    before = AlarmEngine([r], "site")
    logged = before.on_log_stats(T, 500, 1, 100)
    after = AlarmEngine([r], "site")
    after.restore(logged)
    assert after.on_log_stats(T + MIN, 500, 1, 100) == []
    assert len(after.active()) == 1


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.sampled_from([50.0, 125.0, 145.0, 155.0, 300.0, None]), min_size=1, max_size=80),
    for_s=st.sampled_from([0, 20, 60]),
    clear_for_s=st.sampled_from([0, 30]),
    renotify=st.sampled_from([None, 60]),
    data=st.data(),
)
def test_restart_anywhere_gives_the_same_events_as_no_restart(values, for_s, clear_for_s, renotify, data):
    rules = [rule(id="pm10", channel="pm10", limit=150, clear=130, for_s=for_s, clear_for_s=clear_for_s,
                  renotify_s=renotify),
             RULE.validate_python({"id": "bad", "type": "quality", "channels": ["pm10"], "for_s": 30}),
             RULE.validate_python({"id": "off", "type": "offline", "after_s": 40})]
    series = [reading(T + i * 10 * S, ok=v is not None,
                      pm10=ChannelValue(v, "ug/m3", Flag.N if v is not None else Flag.B)) for i, v in
              enumerate(values)]
    full = feed(AlarmEngine(rules, "site"), series)
    k = data.draw(st.integers(1, len(series)))
    before = AlarmEngine(rules, "site")
    produced = feed(before, series[:k])
    since, _ = AlarmEngine(rules, "site").replay_from(series[k - 1].ts)
    # the last events may not have reached the log (decided within the replay window)
    j = data.draw(st.integers(0, len(produced)))
    if any(ev.ts < since for ev in produced[j:]):
        j = len(produced)
    logged = produced[:j]
    after, replayed = restarted(rules, logged, series[:k])
    rest = feed(after, series[k:])
    assert [ev.event_id for ev in logged + replayed + rest] == [ev.event_id for ev in full]


def test_a_sink_with_a_standing_problem_raises_a_health_alarm_until_it_is_gone():
    rule = RULE.validate_python({"id": "sink-problem", "type": "sink_problem", "severity": "warning"})
    e = AlarmEngine([rule], "site")
    assert e.on_sink_status(T, {"tsdb": "", "broker": ""}) == []
    problem = "every point is refused (20 in a row, none accepted: unknown request); check this sink's url"
    events = e.on_sink_status(T + MIN, {"tsdb": problem, "broker": ""})
    assert [(ev.rule, ev.type.value, ev.channel) for ev in events] == [("sink-problem", "raised", "tsdb")]
    assert problem in events[0].message and events[0].note == problem
    assert e.on_sink_status(T + 2 * MIN, {"tsdb": problem, "broker": ""}) == []  # still: the same alarm
    events = e.on_sink_status(T + 3 * MIN, {"tsdb": "", "broker": ""})
    assert [(ev.rule, ev.type.value, ev.channel) for ev in events] == [("sink-problem", "cleared", "tsdb")]


def test_the_gateway_health_pack_watches_sink_problems():
    from gateway.alarms.rules import load_pack

    pack = load_pack("gateway-health")
    assert any(r.get("type") == "sink_problem" for r in pack.rules)
