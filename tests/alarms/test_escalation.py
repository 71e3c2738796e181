"""Escalation as the engine decides it: an alarm nobody acknowledged within the rule's `escalate_after_s` gets one
`escalated` event (its own durable record, so routes with a second recipient list take it); an acknowledgement or
a clear before the time stops it; a restart past the time escalates once, not twice."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.events import EventType
from tests.alarms.helpers import T, reading, rule

S = 1000
MIN = 60 * S


def feed(engine, readings):
    out = []
    for r in readings:
        out += engine.on_reading(r)
    return out


def over(start, n, step=10 * S):
    return [reading(start + i * step, pm10=200.0) for i in range(n)]


RULES = [rule(id="pm10", channel="pm10", limit=150, clear=120, escalate_after_s=600, title="PM10 over 150")]


def test_an_alarm_nobody_acknowledges_is_escalated_once_after_the_time():
    e = AlarmEngine(RULES, "site", "Asia/Shanghai")
    (raised,) = feed(e, over(T, 1))
    assert feed(e, over(T + 10 * S, 58)) == []  # 9 min 50 s: not yet
    (esc,) = e.tick(T + 10 * MIN)
    assert (esc.type, esc.alarm_id, esc.ts, esc.start) == (EventType.ESCALATED, raised.alarm_id, T + 10 * MIN, T)
    assert esc.event_id == f"{raised.alarm_id}/escalated"
    assert (esc.value, esc.limit, esc.unit, esc.severity) == (200.0, 150, "ug/m3", "warning")
    assert esc.message == ("PM10 over 150: not acknowledged for 10 min (escalated): dust-1 pm10 200 ug/m3 "
                           "> limit 150 ug/m3 since 2026-03-02 08:00 UTC+08:00")
    assert feed(e, over(T + 10 * MIN, 100)) == [] and e.tick(T + 60 * MIN) == []  # once
    assert e.active()[0].escalated and e.active()[0].to_json()["escalated"] is True


def test_an_alarm_acknowledged_in_time_is_not_escalated():
    e = AlarmEngine(RULES, "site")
    (raised,) = feed(e, over(T, 1))
    (ack,) = e.acknowledge(raised.alarm_id, T + 9 * MIN, by="wang")
    assert ack.type is EventType.ACKNOWLEDGED
    assert feed(e, over(T + 10 * S, 100)) == [] and e.tick(T + 60 * MIN) == []


def test_an_alarm_cleared_in_time_is_not_escalated():
    e = AlarmEngine(RULES, "site")
    feed(e, over(T, 3))
    (cleared,) = feed(e, [reading(T + 5 * MIN, pm10=80.0)])
    assert cleared.type is EventType.CLEARED
    assert e.tick(T + 60 * MIN) == []


def test_an_acknowledgement_after_the_escalation_is_still_one_acknowledgement():
    e = AlarmEngine(RULES, "site")
    (raised,) = feed(e, over(T, 1))
    assert [ev.type for ev in e.tick(T + 11 * MIN)] == [EventType.ESCALATED]
    assert [ev.type for ev in e.acknowledge(raised.alarm_id, T + 12 * MIN)] == [EventType.ACKNOWLEDGED]


def test_a_restart_past_the_time_escalates_exactly_once():
    before = AlarmEngine(RULES, "site")
    logged = feed(before, over(T, 30))  # the gateway stops at 5 min, before the escalation
    after = AlarmEngine(RULES, "site")
    after.restore(logged)
    since, _ = after.replay_from(T + 29 * 10 * S)
    assert feed(after, [r for r in over(T, 30) if r.ts >= since]) == []
    (esc,) = after.tick(T + 30 * MIN)  # back at 30 min: past the time, escalated now
    assert esc.type is EventType.ESCALATED and esc.ts == T + 10 * MIN
    # and a second restart (the escalation in the log) does not escalate again
    again = AlarmEngine(RULES, "site")
    again.restore([*logged, esc])
    assert again.tick(T + 31 * MIN) == [] and again.active()[0].escalated


def test_a_restart_after_an_acknowledgement_does_not_escalate():
    before = AlarmEngine(RULES, "site")
    logged = feed(before, over(T, 3))
    logged += before.acknowledge(logged[0].alarm_id, T + MIN, by="wang")
    after = AlarmEngine(RULES, "site")
    after.restore(logged)
    assert after.tick(T + 30 * MIN) == []


def test_a_rule_without_escalate_after_never_escalates():
    e = AlarmEngine([rule(id="pm10", channel="pm10", limit=150)], "site")
    feed(e, over(T, 1))
    assert e.tick(T + 24 * 60 * MIN) == []


def test_escalate_after_must_be_positive():
    with pytest.raises(ValidationError):
        rule(id="pm10", channel="pm10", limit=150, escalate_after_s=0)


def test_an_email_route_sends_the_escalation_to_its_second_list_only():
    import dataclasses

    from gateway.alarms.mail import EmailConfig, recipients
    from gateway.alarms.webhooks import wants

    e = AlarmEngine(RULES, "site")
    (raised,) = feed(e, over(T, 1))
    (esc,) = e.tick(T + 10 * MIN)
    cfg = EmailConfig(name="m", host="h", sender="plume@site.example", to=["officer@city.example"],
                      escalate_to=["chief@city.example"])
    assert wants(cfg, raised) and recipients(cfg, raised) == ["officer@city.example"]
    assert wants(cfg, esc) and recipients(cfg, esc) == ["chief@city.example"]
    plain = EmailConfig(name="m", host="h", sender="plume@site.example", to=["officer@city.example"])
    assert not wants(plain, esc), "no escalate_to, no escalated in events: not this route's"
    only_escalation = EmailConfig(name="m", host="h", sender="plume@site.example", escalate_to=["chief@city.example"])
    assert not wants(only_escalation, raised) and wants(only_escalation, dataclasses.replace(esc))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.sampled_from([50.0, 125.0, 155.0, 300.0]), min_size=1, max_size=60),
       ack_at=st.one_of(st.none(), st.integers(0, 59)), data=st.data())
def test_a_restart_anywhere_gives_the_same_escalations_as_no_restart(values, ack_at, data):
    rules = [rule(id="pm10", channel="pm10", limit=150, clear=130, escalate_after_s=60, renotify_s=120)]
    series = [reading(T + i * 10 * S, pm10=v) for i, v in enumerate(values)]

    def run(engine, readings):
        out = []
        for r in readings:
            out += engine.on_reading(r)
            if ack_at is not None and r.ts == T + ack_at * 10 * S:
                for a in engine.active():
                    out += engine.acknowledge(a.alarm_id, r.ts, by="wang")
        return out

    full = run(AlarmEngine(rules, "site"), series)
    k = data.draw(st.integers(1, len(series)))
    logged = run(AlarmEngine(rules, "site"), series[:k])
    after = AlarmEngine(rules, "site")
    after.restore(logged)
    since, _ = after.replay_from(series[k - 1].ts)
    replayed = [ev for r in series[:k] if r.ts >= since for ev in after.on_reading(r)]
    rest = run(after, series[k:])
    ids = [ev.event_id for ev in logged + replayed + rest]
    assert ids == [ev.event_id for ev in full]
    assert len([i for i in ids if i.endswith("/escalated")]) == len({i for i in ids if i.endswith("/escalated")})


def test_a_webhook_takes_the_escalation_when_its_events_name_it_and_says_what_it_is():
    import json
    from zoneinfo import ZoneInfo

    from gateway.alarms.webhooks import WebhookConfig, render, wants

    e = AlarmEngine(RULES, "site", "Asia/Shanghai")
    feed(e, over(T, 1))
    (esc,) = e.tick(T + 10 * MIN)
    boss = WebhookConfig.model_validate({"name": "boss", "url": "https://example.org/hook", "template": "wecom",
                                         "language": "zh", "events": ["escalated"]})
    assert wants(boss, esc)
    assert not wants(WebhookConfig.model_validate({"name": "h", "url": "https://example.org/hook"}), esc)
    req = render(boss, esc, url="https://example.org/hook", tz=ZoneInfo("Asia/Shanghai"), now_ms=esc.ts)
    assert "[告警升级:无人确认] PM10 over 150" in json.loads(req.body)["markdown"]["content"]
