"""The webhook outbox as pure logic: per webhook a FIFO of deliveries in log order, retried with backoff.

Durability comes from the log: alarm events are log records, and each webhook is a log consumer whose cursor
moves (`acked_through`) only past records whose delivery is finished (sent, not for this webhook, or given up).
After a crash, what was not finished is read again and sent with the same idempotency key.

Head-of-line: a webhook delivers in event order, so "cleared" never arrives before its "raised"; while its head is
being retried, the rest waits (a receiver that is down is down for all of them). A permanent failure (wrong key,
HTTP 4xx) is counted and skipped, never retried forever; a retry schedule may also give up by attempts or age.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.alarms.events import AlarmEvent
from gateway.alarms.webhooks import Outcome, RetryConfig, Route, wants


class RetryPolicy:
    """Exponential backoff: initial_s, x factor each attempt, capped at max_s; times `jitter` (0.5..1, passed in,
    so the schedule is deterministic in tests); never sooner than the receiver's Retry-After (up to an hour)."""

    def __init__(self, cfg: RetryConfig):
        self.cfg = cfg

    def delay_s(self, attempt: int, retry_after_s: float | None = None, jitter: float = 1.0) -> float:
        c = self.cfg
        d = min(c.max_s, c.initial_s * c.factor ** max(0, attempt - 1)) * min(1.0, max(0.5, jitter))
        if retry_after_s is not None:
            d = max(d, min(retry_after_s, 3600.0))
        return d

    def gives_up(self, attempts: int, age_ms: int) -> str | None:
        c = self.cfg
        if c.max_attempts is not None and attempts >= c.max_attempts:
            return f"gave up after {attempts} attempts"
        if c.max_age_s is not None and age_ms >= c.max_age_s * 1000:
            return f"gave up: older than {c.max_age_s:g} s"
        return None


@dataclass(slots=True)
class Delivery:
    webhook: str
    record_id: int  # the log record carrying the event
    event: AlarmEvent | None  # None: not for this webhook (only moves its cursor)
    created_ms: int
    attempts: int = 0
    next_ms: int = 0
    in_flight: bool = False
    last_error: str = ""


@dataclass(slots=True)
class WebhookStats:
    sent: int = 0
    retries: int = 0
    failed: int = 0
    last_error: str = ""


@dataclass(slots=True)
class _Queue:
    cfg: Route
    policy: RetryPolicy
    items: deque[Delivery] = field(default_factory=deque)
    done_through: int = 0
    stats: WebhookStats = field(default_factory=WebhookStats)


class Outbox:
    def __init__(self, webhooks: Sequence[Route]):
        self._queues = {w.name: _Queue(w, RetryPolicy(w.retry)) for w in webhooks}

    def add(self, record_id: int, event: AlarmEvent | None, now: int) -> None:
        """A log record in order: an alarm event, or None for any other record (moves the cursors)."""
        for name, q in self._queues.items():
            ev = event if event is not None and wants(q.cfg, event) else None
            if ev is None and not q.items:
                q.done_through = max(q.done_through, record_id)
                continue
            q.items.append(Delivery(name, record_id, ev, now, next_ms=now))

    def due(self, now: int) -> list[Delivery]:
        """Deliveries to attempt now (at most one per webhook); they are in flight until `result`."""
        out = []
        for q in self._queues.values():
            self._skip_done(q)
            if q.items:
                head = q.items[0]
                if not head.in_flight and head.next_ms <= now:
                    head.in_flight = True
                    out.append(head)
        return out

    def result(self, d: Delivery, outcome: Outcome, now: int, jitter: float = 1.0) -> str:
        """Record an attempt's outcome: 'sent', 'retry' (scheduled again) or 'failed' (given up, skipped)."""
        q = self._queues[d.webhook]
        d.in_flight = False
        d.attempts += 1
        if outcome.kind == "sent":
            q.stats.sent += 1
            self._pop(q, d)
            return "sent"
        d.last_error = q.stats.last_error = outcome.detail
        give_up = "permanent failure" if outcome.kind == "failed" else q.policy.gives_up(d.attempts,
                                                                                          now - d.created_ms)
        if give_up is not None:
            q.stats.failed += 1
            d.last_error = f"{outcome.detail} ({give_up})"
            self._pop(q, d)
            return "failed"
        q.stats.retries += 1
        d.next_ms = now + int(q.policy.delay_s(d.attempts, outcome.retry_after_s, jitter) * 1000)
        return "retry"

    def next_wakeup(self) -> int | None:
        """When the next attempt is due (None: nothing waits)."""
        times = [q.items[0].next_ms for q in self._queues.values() if q.items and not q.items[0].in_flight]
        return min(times, default=None)

    def acked_through(self, webhook: str) -> int:
        """The webhook's log cursor may move up to this record id."""
        q = self._queues[webhook]
        self._skip_done(q)
        return q.done_through

    def pending(self, webhook: str) -> int:
        return sum(1 for d in self._queues[webhook].items if d.event is not None)

    def stats(self, webhook: str) -> WebhookStats:
        return self._queues[webhook].stats

    @staticmethod
    def _skip_done(q: _Queue) -> None:
        while q.items and q.items[0].event is None:
            q.done_through = max(q.done_through, q.items.popleft().record_id)

    def _pop(self, q: _Queue, d: Delivery) -> None:
        assert q.items and q.items[0] is d
        q.items.popleft()
        q.done_through = max(q.done_through, d.record_id)
        self._skip_done(q)
