"""Alarm notifications inside `plume run`: each webhook and each e-mail route is a log consumer with its own cursor,
reading alarm records.

The cursor moves only past records whose delivery is finished (sent, not for this route, given up), so a
notification survives a receiver outage and a restart; after a crash between the receiver's answer and the cursor
commit the event is sent again with the same idempotency key (the receiver deduplicates on it; a mail keeps its
Message-ID). Policy (which events, retries, backoff) is the pure Outbox; `AlarmDelivery` does the log and timer
side once, and each transport only says how one event is sent (`WebhookSink`: an httpx POST; `EmailSink`: SMTP;
`SmsSink`: the SMS provider's HTTP request, one per number when the provider takes one number each).
Only the head of the queue is ever in flight, so a route reads no further than its first undelivered event.
A raised alarm of a device a camera watches waits for its pictures (gateway.alarms.snapshots) at most the
camera's time box, once; then it goes out with them or saying which are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alarms.events import AlarmEvent
from gateway.alarms.mail import EmailConfig
from gateway.alarms.mail import render as render_mail
from gateway.alarms.mail import send as send_mail
from gateway.alarms.outbox import Outbox
from gateway.alarms.records import AlarmRecord
from gateway.alarms.sms import SmsConfig, masked
from gateway.alarms.sms import render as render_sms
from gateway.alarms.sms import send as send_sms
from gateway.alarms.snapshots import CameraService, evidence
from gateway.alarms.webhooks import Outcome, WebhookConfig, image_requests, post, redact, render
from gateway.core.clock import now_ms
from gateway.sinks.backoff import Outage
from gateway.sinks.base import DeliveredHook, HealthProvider, SinkStatus
from gateway.store.log import DurableLog
from gateway.store.records import ALARM, LogRecord


class AlarmDelivery:
    """Delivers the alarm events of the log that one route takes, in order, retried until finished."""

    type = "notify"
    log_name = "plume.notify"

    def __init__(self, cfg: WebhookConfig | EmailConfig | SmsConfig, site_id: str, site_name: str, tz: ZoneInfo,
                 log_: DurableLog, *, target: str, on_delivered: DeliveredHook | None = None):
        self.cfg = cfg
        self.name = cfg.name
        self.site_id = site_id
        self.site_name = site_name
        self.tz = tz
        self.log = log_
        self.consumer = log_.consumer(cfg.name)
        self._on_delivered = on_delivered
        self._log = logging.getLogger(self.log_name)
        self.status = SinkStatus(cfg.name, self.type, target)
        self._outage = Outage(self._log, f"{self.type}[{cfg.name}] {target}")
        self.outbox = Outbox([cfg])
        self.sent = 0
        self.failed = 0
        self.cameras: CameraService | None = None  # set when the site has cameras (gateway.alarms.snapshots)

    def set_health(self, provider: HealthProvider, interval_s: float | None = None) -> None:
        pass  # a notification receiver has no place for the gateway's health

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        """What the transport keeps open while the consumer runs (an HTTP client, nothing)."""
        yield None

    async def attempt(self, session: Any, event: AlarmEvent, now: int) -> Outcome:
        """Send one event once; every failure is an Outcome."""
        raise NotImplementedError

    async def run(self) -> None:
        async with self.session() as session:
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
                if not await self._deliver(session, {r.id: r for r in records}):
                    return  # closing with a delivery pending: it stays in the log for the next start
                self.log.ack(self.consumer, after)

    async def _deliver(self, session: Any, records: dict[int, LogRecord]) -> bool:
        """Deliver what the outbox holds; False when the log started closing before that was done."""
        name, log = self.name, self._log
        while self.outbox.pending(name):
            for d in self.outbox.due(now_ms()):
                assert d.event is not None
                outcome = await self.attempt(session, d.event, now_ms())
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
                    log.debug("%s[%s]: delivered %s", self.type, name, d.event.event_id)
                elif verdict == "failed":
                    self.failed += 1
                    self.status.last_error = d.last_error
                    log.warning("%s[%s]: gave up on %s: %s", self.type, name, d.event.event_id, d.last_error)
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


class WebhookSink(AlarmDelivery):
    """Delivers alarm events of the log to one webhook."""

    type = "webhook"
    log_name = "plume.webhook"

    def __init__(self, cfg: WebhookConfig, site_id: str, site_name: str, tz: ZoneInfo, log_: DurableLog, *,
                 url: str, secret: str | None = None, on_delivered: DeliveredHook | None = None):
        super().__init__(cfg, site_id, site_name, tz, log_, target=redact(url), on_delivered=on_delivered)
        self.webhook = cfg
        self.pictures_sent = 0
        self.pictures_failed = 0
        self._url = url
        self._secret = secret

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        import httpx

        async with httpx.AsyncClient() as client:
            yield client

    async def attempt(self, session: Any, event: AlarmEvent, now: int) -> Outcome:
        shots = await evidence(self.cameras, event)  # at most the cameras' time box, once per event
        req = render(self.webhook, event, url=self._url, tz=self.tz, now_ms=now, secret=self._secret,
                     site_name=self.site_name, shots=shots)
        outcome = await post(session, req, self.webhook)
        if outcome.kind == "sent":  # the pictures follow the message (WeCom); one try each, the message is what counts
            for image in image_requests(self.webhook, event, shots, url=self._url):
                sent = await post(session, image, self.webhook)
                if sent.kind == "sent":
                    self.pictures_sent += 1
                else:
                    self.pictures_failed += 1
                    self._log.warning("%s[%s]: the picture %s did not go out: %s", self.type, self.name,
                                      image.event_id, sent.detail)
        return outcome


class EmailSink(AlarmDelivery):
    """Delivers alarm events of the log by e-mail through one SMTP server."""

    type = "email"
    log_name = "plume.email"

    def __init__(self, cfg: EmailConfig, site_id: str, site_name: str, tz: ZoneInfo, log_: DurableLog, *,
                 password: str | None = None, tls: ssl.SSLContext | None = None,
                 on_delivered: DeliveredHook | None = None):
        super().__init__(cfg, site_id, site_name, tz, log_, target=f"smtp {cfg.host}:{cfg.server_port}",
                         on_delivered=on_delivered)
        self.email = cfg
        self._password = password
        self._tls = tls

    async def attempt(self, session: Any, event: AlarmEvent, now: int) -> Outcome:
        shots = await evidence(self.cameras, event)  # at most the cameras' time box, once per event
        msg = render_mail(self.email, event, tz=self.tz, site_name=self.site_name, shots=shots)
        return await asyncio.to_thread(send_mail, self.email, msg, self._password, self._tls)


class SmsSink(AlarmDelivery):
    """Delivers alarm events of the log as SMS through one HTTP SMS gateway.

    With one request per number, the numbers the provider confirmed are remembered while the event is retried, so
    a retry sends only to the others (after a restart all are sent again, each request with its own idempotency
    key). A number refused for good is logged by its last four digits and the rest still go out."""

    type = "sms"
    log_name = "plume.sms"

    def __init__(self, cfg: SmsConfig, site_id: str, site_name: str, tz: ZoneInfo, log_: DurableLog, *,
                 url: str, password: str | None = None, token: str | None = None,
                 on_delivered: DeliveredHook | None = None):
        super().__init__(cfg, site_id, site_name, tz, log_, target=redact(url), on_delivered=on_delivered)
        self.sms = cfg
        self._url = url
        self._password = password
        self._token = token
        self._done: dict[str, set[str]] = {}  # event_id -> request keys finished (sent or refused for good)
        self._refused: dict[str, list[str]] = {}  # event_id -> the refusals among them, for the final outcome

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        import httpx

        async with httpx.AsyncClient() as client:
            yield client

    async def attempt(self, session: Any, event: AlarmEvent, now: int) -> Outcome:
        reqs = render_sms(self.sms, event, url=self._url, tz=self.tz, site_name=self.site_name,
                          password=self._password, token=self._token)
        done = self._done.setdefault(event.event_id, set())
        refused = self._refused.setdefault(event.event_id, [])
        retry: Outcome | None = None
        for req in reqs:
            if req.key in done:
                continue
            outcome = await send_sms(session, req, self.sms)
            if outcome.kind == "retry":
                retry = retry or outcome
                continue
            done.add(req.key)
            if outcome.kind == "failed":
                refused.append(f"{', '.join(masked(p) for p in req.phones)}: {outcome.detail}")
        if retry is not None:
            return retry
        self._done.pop(event.event_id, None)
        self._refused.pop(event.event_id, None)
        if refused:
            return Outcome("failed", "; ".join(refused))
        return Outcome("sent")
