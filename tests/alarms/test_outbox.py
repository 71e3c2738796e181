"""The outbox: a receiver that is down gets each notification after it comes back, once, in order; the log cursor
moves only past finished deliveries."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.outbox import Outbox, RetryPolicy
from gateway.alarms.webhooks import Outcome, RetryConfig, WebhookConfig
from tests.alarms.helpers import T

S = 1000
RAISED = AlarmEvent(EventType.RAISED, "site", "pm10", "dust-1", "pm10", "15m", T, T + 900 * S, 180.0, 150.0,
                    "ug/m3")
CLEARED = dataclasses.replace(RAISED, type=EventType.CLEARED, ts=T + 1800 * S, value=90.0)
DOWN = Outcome("retry", "ConnectError")
OK = Outcome("sent")


def hook(name="officers", **kw):
    return WebhookConfig.model_validate({"name": name, "url": "https://x.test/h", **kw})


class Receiver:
    """A receiver that deduplicates on the idempotency key (what the key is for)."""

    def __init__(self):
        self.up = False
        self.posts = 0
        self.seen: dict[str, AlarmEvent] = {}

    def __call__(self, ev):
        if not self.up:
            return DOWN
        self.posts += 1
        self.seen.setdefault(ev.idempotency_key, ev)
        return OK


def run(box, receiver, start, end, step=S):
    """Drive the outbox like the sink does, one attempt per due delivery."""
    now = start
    while now <= end:
        for d in box.due(now):
            box.result(d, receiver(d.event), now)
        now += step
    return now


def test_backoff_schedule_doubles_up_to_the_cap_and_honours_retry_after():
    p = RetryPolicy(RetryConfig(initial_s=5, max_s=600, factor=2))
    assert [p.delay_s(a) for a in range(1, 10)] == [5, 10, 20, 40, 80, 160, 320, 600, 600]
    assert p.delay_s(3, jitter=0.5) == 10.0 and p.delay_s(3, jitter=0.1) == 10.0  # jitter in [0.5, 1]
    assert p.delay_s(1, retry_after_s=120) == 120 and p.delay_s(1, retry_after_s=10**6) == 3600
    assert RetryPolicy(RetryConfig(max_attempts=3)).gives_up(3, 0) == "gave up after 3 attempts"
    assert RetryPolicy(RetryConfig(max_age_s=60)).gives_up(1, 60 * S) == "gave up: older than 60 s"
    assert RetryPolicy(RetryConfig()).gives_up(1000, 10**9) is None  # by default: until delivered


def test_a_receiver_that_is_down_gets_the_notification_after_it_comes_back_once():
    box, rx = Outbox([hook()]), Receiver()
    box.add(10, RAISED, T)
    run(box, rx, T, T + 300 * S)  # down for 5 minutes: attempts at 0, 5, 15, 35, 75, 155 s
    assert rx.posts == 0 and box.pending("officers") == 1 and box.stats("officers").retries == 6
    assert box.acked_through("officers") == 0  # the log cursor must not pass the undelivered event
    rx.up = True
    run(box, rx, T + 301 * S, T + 1000 * S)
    assert rx.posts == 1 and list(rx.seen.values()) == [RAISED]
    assert box.acked_through("officers") == 10 and box.pending("officers") == 0


def test_events_keep_their_order_behind_a_retried_head():
    box, rx = Outbox([hook()]), Receiver()
    box.add(1, RAISED, T)
    box.add(2, CLEARED, T)
    (d,) = box.due(T)
    assert d.event == RAISED and box.due(T) == []  # in flight: nothing else
    box.result(d, DOWN, T)
    assert box.due(T + 4 * S) == []  # the cleared event waits for the raised one
    rx.up = True
    order = []
    now = T + 5 * S
    for _ in range(3):
        for d in box.due(now):
            assert d.event is not None
            order.append(d.event.type)
            box.result(d, rx(d.event), now)
    assert order == [EventType.RAISED, EventType.CLEARED]


def test_a_permanent_failure_is_skipped_not_retried_forever():
    box = Outbox([hook()])
    box.add(1, RAISED, T)
    box.add(2, CLEARED, T)
    (d,) = box.due(T)
    assert box.result(d, Outcome("failed", "errcode 93000: invalid webhook url"), T) == "failed"
    (d,) = box.due(T)
    assert d.event == CLEARED
    assert box.stats("officers").failed == 1 and "93000" in box.stats("officers").last_error


def test_records_a_webhook_does_not_take_move_its_cursor():
    box = Outbox([hook("all"), hook("critical-only", min_severity="critical")])
    box.add(5, None, T)  # a reading, an aggregate: not an alarm event
    box.add(6, RAISED, T)  # severity warning
    assert box.acked_through("critical-only") == 6 and box.acked_through("all") == 5
    assert [d.webhook for d in box.due(T)] == ["all"]


def test_next_wakeup():
    box = Outbox([hook()])
    assert box.next_wakeup() is None
    box.add(1, RAISED, T)
    (d,) = box.due(T)
    assert box.next_wakeup() is None  # in flight
    box.result(d, DOWN, T)
    assert box.next_wakeup() == T + 5 * S


@pytest.mark.parametrize("crash_after_send", [True, False])
def test_a_crash_before_the_cursor_commit_resends_with_the_same_key(crash_after_send):
    rx = Receiver()
    rx.up = True
    box = Outbox([hook()])
    box.add(7, RAISED, T)
    (d,) = box.due(T)
    if crash_after_send:
        rx(d.event)  # the receiver got it, the gateway died before recording the result
    cursor = 0  # what the log had committed for this webhook
    box = Outbox([hook()])  # after the restart: records after the cursor are read again
    box.add(7, RAISED, T + 60 * S)
    run(box, rx, T + 60 * S, T + 61 * S)
    assert box.acked_through("officers") == 7 > cursor
    assert len(rx.seen) == 1  # the receiver acted once
    assert rx.posts == (2 if crash_after_send else 1)  # at-least-once on the wire
