"""Webhook delivery inside `plume run`: each webhook is a log consumer with its own cursor, reading alarm records.

The cursor moves only past records whose delivery is finished (sent, not for this webhook, given up), so a
notification survives a receiver outage and a restart; after a crash between the receiver's answer and the cursor
commit the event is sent again with the same idempotency key (the receiver deduplicates on it). Policy (which
events, retries, backoff) is the pure Outbox; this module does the I/O: httpx POSTs, timers, the cursor.
Only the head of the queue is ever in flight, so the webhook reads no further than the first undelivered event.
"""

from __future__ import annotations

import logging
import random
from zoneinfo import ZoneInfo

from gateway.alarms.outbox import Outbox
from gateway.alarms.records import AlarmRecord
from gateway.alarms.webhooks import WebhookConfig, post, redact, render
from gateway.core.clock import now_ms
from gateway.sinks.backoff import Outage
from gateway.sinks.base import DeliveredHook, HealthProvider, SinkStatus
from gateway.store.log import DurableLog
from gateway.store.records import ALARM, LogRecord

log = logging.getLogger("plume.webhook")



class WebhookSink:
    """Delivers alarm events of the log to one webhook."""

    type = "webhook"

    def __init__(self, cfg: WebhookConfig, site_id: str, site_name: str, tz: ZoneInfo, log_: DurableLog, *,
                 url: str, secret: str | None = None, on_delivered: DeliveredHook | None = None):
        self.cfg = cfg
        self.name = cfg.name
        self.site_id = site_id
        self.site_name = site_name
        self.tz = tz
        self.log = log_
        self.consumer = log_.consumer(cfg.name)
        self._url = url
        self._secret = secret
        self._on_delivered = on_delivered
        self.status = SinkStatus(cfg.name, "webhook", redact(url))
        self._outage = Outage(log, f"webhook[{cfg.name}] {redact(url)}")
        self.outbox = Outbox([cfg])
        self.sent = 0
        self.failed = 0

    def set_health(self, provider: HealthProvider, interval_s: float | None = None) -> None:
        pass  # a webhook receiver has no place for the gateway's health

    async def run(self) -> None:
        import httpx

        async with httpx.AsyncClient() as client:
            after = self.consumer.acked
            while True:
                after = max(after, self.consumer.acked)
                records, upto = await self.log.read_kinds(after, (ALARM,), limit=100)
                if not records and upto <= after and self.log.closing:
                    return
                now = now_ms()
                for rec in records:
                    if not isinstance(rec, AlarmRecord):
                        continue
                    alarm = rec.payload
                    self.outbox.add(rec.id, None if alarm.checkpoint else alarm.event, now)
                after = upto
                if not await self._deliver(client, {r.id: r for r in records}):
                    return  # closing with a delivery pending: it stays in the log for the next start
                self.log.ack(self.consumer, after)

    async def _deliver(self, client: object, records: dict[int, LogRecord]) -> bool:
        """Deliver what the outbox holds; False when the log started closing before that was done."""
        import httpx

        assert isinstance(client, httpx.AsyncClient)
        name = self.name
        while self.outbox.pending(name):
            now = now_ms()
            for d in self.outbox.due(now):
                assert d.event is not None
                req = render(self.cfg, d.event, url=self._url, tz=self.tz, now_ms=now, secret=self._secret,
                             site_name=self.site_name)
                outcome = await post(client, req, self.cfg)
                verdict = self.outbox.result(d, outcome, now_ms(), jitter=random.uniform(0.5, 1.0))
                if verdict == "sent":
                    self.sent += 1
                    self.status.connected = True
                    self._outage.ok()
                    rec = records.get(d.record_id)
                    done = [rec] if rec is not None else []
                    self.status.delivered(done)
                    self.log.ack(self.consumer, self.outbox.acked_through(name), len(done))
                    if self._on_delivered is not None:
                        self._on_delivered(done)
                    log.debug("webhook[%s]: delivered %s", name, d.event.event_id)
                elif verdict == "failed":
                    self.failed += 1
                    self.status.last_error = d.last_error
                    log.warning("webhook[%s]: gave up on %s: %s", name, d.event.event_id, d.last_error)
                    self.log.ack(self.consumer, self.outbox.acked_through(name))
                else:
                    self.status.failures += 1
                    self.status.connected = False
                    self.status.last_error = outcome.detail
                    self._outage.fail(f"{outcome.detail}; retrying (attempt {d.attempts}), nothing is lost")
            wake = self.outbox.next_wakeup()
            if self.outbox.pending(name) and wake is not None and (
                    self.log.closing or await self.log.sleep(max(0.0, (wake - now_ms()) / 1000))):
                return False
        return True
