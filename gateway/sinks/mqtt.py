"""MQTT sink: publishes each committed poll as one message (contract v1) with at-least-once delivery.

- The cursor advances only over messages the broker acknowledged (PUBACK for QoS 1, PUBCOMP for QoS 2), in log
  order, even though up to `inflight` messages are on the wire at once.
- After a disconnect everything after the cursor is published again: subscribers drop duplicates by `seq`.
- `{prefix}/{site}/status` is `online` (retained) while connected; the last will turns it `offline` when the
  link or the process dies, and a clean shutdown publishes `offline` itself.
- Reconnects back off exponentially with jitter; the first failure of an outage is an ERROR line naming the
  broker and the reason (bad password, TLS, refused), repeats are quiet.
- Window aggregates go to `{prefix}/{site}/{device}/agg/{window}`; alarm events to `{prefix}/{site}/alarms/events`
  plus the retained current state `{prefix}/{site}/alarms/active/{rule}/{device}/{channel}` (see contract.py);
  other record kinds (actuations, commands, alarm checkpoints) are passed over.
- Commands (acknowledge, maintenance switch, actuator override) arrive on the command topics and are handed to
  the gateway (`set_command_handler`), which writes them to the log; retained command messages are ignored
  (a command is an event, not a state).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from gateway.alarms.records import AlarmRecord
from gateway.processing.records import AggregateRecord
from gateway.sinks.availability import Availability
from gateway.sinks.backoff import Backoff, Outage, Recovery, tcp_reachable
from gateway.sinks.base import BATCH_VALUES, DeliveredHook, HealthProvider, SinkStatus
from gateway.sinks.config import MqttSinkConfig
from gateway.sinks.contract import (
    ack_topic,
    actuator_set_topic,
    agg_payload,
    agg_topic,
    alarm_active_payload,
    alarm_active_topic,
    alarm_event_payload,
    alarm_events_topic,
    data_payload,
    data_topic,
    device_status_topic,
    health_topic,
    json_payload,
    maintenance_topic,
    status_topic,
    stored_data_payload,
)
from gateway.sinks.mqtt_confirm import Confirmations
from gateway.store.codec import decode_stored, decoded
from gateway.store.log import DurableLog
from gateway.store.records import LogRecord, ReadingRecord, StoredReading, value_count

log = logging.getLogger("plume.sink.mqtt")

AUTH_CODES = {4, 5, 134, 135}  # 3.1.1: bad username or password, not authorised; 5: the same as reason codes


def tls_context(cfg: MqttSinkConfig, base: Path | None = None) -> ssl.SSLContext | None:
    """The SSL context for the broker, or None without TLS. Raises OSError/ssl.SSLError for unreadable files."""
    if cfg.tls is None:
        return None

    def path(p: str | None) -> str | None:
        if p is None:
            return None
        q = Path(p).expanduser()
        return str(base / q if base is not None and not q.is_absolute() else q)

    ctx = ssl.create_default_context(cafile=path(cfg.tls.ca_file))
    if cfg.tls.cert_file:
        ctx.load_cert_chain(path(cfg.tls.cert_file) or "", path(cfg.tls.key_file))
    if cfg.tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def describe(exc: BaseException) -> str:
    """One readable reason for a failed connection or publish."""
    if isinstance(exc, MqttConnectError):
        rc = exc.rc
        code = getattr(rc, "value", rc)
        name = rc.getName() if isinstance(rc, ReasonCode) else str(exc)
        text = f"broker refused the connection: {name}"
        if code in AUTH_CODES:
            text += " (check username and password)"
        return text
    text = str(exc) or type(exc).__name__
    if "Disconnected during message iteration" in text or text == "connection lost":
        return "connection lost"
    if "Connection refused" in text:
        return "connection refused (is the broker running, is the port right?)"
    if "CERTIFICATE_VERIFY_FAILED" in text or "WRONG_VERSION_NUMBER" in text or "SSL" in text:
        text = f"TLS handshake failed: {text} (check tls.ca_file, the port and the broker's certificate)"
    return text


class MqttSink:
    """Delivers the log to one MQTT broker."""

    type = "mqtt"

    def __init__(
        self,
        cfg: MqttSinkConfig,
        site_id: str,
        log_: DurableLog,
        *,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        on_delivered: DeliveredHook | None = None,
    ):
        self.cfg = cfg
        self.name = cfg.name
        self.site_id = site_id
        self.log = log_
        self.consumer = log_.consumer(cfg.name)
        self._password = password
        self._tls = tls
        self._on_delivered = on_delivered
        self._health: HealthProvider | None = None
        self._health_interval = cfg.health_interval_s
        self.status = SinkStatus(cfg.name, "mqtt", f"{cfg.host}:{cfg.effective_port}")
        self._outage = Outage(log, f"mqtt[{cfg.name}] {cfg.host}:{cfg.effective_port}")
        # a returning broker (the one in use: failover moves it) ends the back-off
        self.recovery = Recovery(cfg.host, cfg.effective_port,
                                 probe=lambda: tcp_reachable(*self._brokers[self._broker], 1.0))
        self._topics: dict[str, str] = {}
        self._status_topic = status_topic(cfg.topic_prefix, site_id)
        self._health_topic = health_topic(cfg.topic_prefix, site_id)
        self._events_topic = alarm_events_topic(cfg.topic_prefix, site_id)
        self._ack_topic = ack_topic(cfg.topic_prefix, site_id)
        self._maintenance_topic = maintenance_topic(cfg.topic_prefix, site_id)
        self._actuator_topic = actuator_set_topic(cfg.topic_prefix, site_id, "+")
        self._on_command: Callable[[dict[str, Any]], str | None] | None = None
        self.commands_received = 0
        self._availability = Availability(cfg.offline_after) if cfg.availability else None
        self._brokers = cfg.brokers
        self._broker = 0  # index of the broker in use (failover: the next one after a failure)

    def set_command_handler(self, handler: Callable[[dict[str, Any]], str | None]) -> None:
        """Where commands received on the command topics go (the gateway logs them); returns a problem or None."""
        self._on_command = handler

    def set_health(self, provider: HealthProvider, interval_s: float | None = None) -> None:
        self._health = provider
        if interval_s is not None:
            self._health_interval = interval_s

    @property
    def client_id(self) -> str:
        """`client_id` of the site file, else the MQTT username (the fleet broker's convention: it forces the
        client id to the username, so no site can take another's), else plume-<site>-<sink>."""
        return self.cfg.client_id or self.cfg.username or f"plume-{self.site_id}-{self.cfg.name}"

    def _client(self) -> aiomqtt.Client:
        cfg = self.cfg
        v5 = cfg.protocol == "5"
        host, port = self._brokers[self._broker]
        client = aiomqtt.Client(
            host,
            port,
            username=cfg.username,
            password=self._password if cfg.username is not None else None,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self._status_topic, b"offline", qos=1, retain=True),
            clean_session=None if v5 else True,
            keepalive=cfg.keepalive_s,
            timeout=cfg.timeout_s,
            tls_context=self._tls,
            # the sink's window bounds what is in flight; paho's own limit would walk every message in flight at
            # each PUBACK (14 % of a backlog drain's CPU). MQTT 5 keeps it (a broker announces a receive maximum)
            max_inflight_messages=cfg.inflight if v5 else 0,
            logger=logging.getLogger("plume.sink.mqtt.client"),
        )
        client.pending_calls_threshold = cfg.inflight + 100  # our window, not a leak: keep aiomqtt quiet
        return client

    async def run(self) -> None:
        backoff = Backoff(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
        while True:
            if self.log.closing and self.log.depth(self.consumer) == 0:
                return
            client = self._client()
            try:
                async with client:
                    self.status.connected = True
                    self.status.connects += 1
                    if self.status.connects > 1:
                        self.status.reconnects += 1
                    backoff.reset()
                    self._outage.ok("connected")
                    log.info("mqtt[%s]: connected to %s (MQTT %s%s)", self.name, self.status.target,
                             self.cfg.protocol, ", TLS" if self._tls else "")
                    await client.publish(self._status_topic, b"online", qos=1, retain=True)
                    try:
                        finished = await self._session(client)
                    finally:
                        with contextlib.suppress(Exception, asyncio.CancelledError):
                            await asyncio.wait_for(
                                client.publish(self._status_topic, b"offline", qos=1, retain=True), 1.0
                            )
                    if finished:
                        log.info("mqtt[%s]: everything committed was delivered; disconnecting", self.name)
                        return
            except aiomqtt.MqttError as exc:
                self.status.failures += 1
                self.status.last_error = describe(exc)
                self._outage.fail(self.status.last_error)
                self._fail_over()
            finally:
                self.status.connected = False
            if self.log.closing or await self.recovery.wait(backoff.next(), self.log.sleep):
                return  # shutting down with the broker away: what is left stays in the log for the next start

    async def _session(self, client: aiomqtt.Client) -> bool:
        """Publish until the log closes (True) or the connection breaks (raises MqttError)."""
        if self._on_command is not None:
            await client.subscribe([(self._ack_topic, 1), (self._maintenance_topic, 1), (self._actuator_topic, 1)])
        pump = asyncio.create_task(self._pump(client), name=f"mqtt[{self.name}].pump")
        watch = asyncio.create_task(self._watch(client), name=f"mqtt[{self.name}].watch")
        tasks = [pump, watch]
        if self._health is not None and self._health_interval > 0:
            tasks.append(asyncio.create_task(self._publish_health(client), name=f"mqtt[{self.name}].health"))
        try:
            done, _ = await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if pump in done:
            return pump.result()
        watch.result()
        raise aiomqtt.MqttError("connection lost")

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Raises MqttError as soon as the connection drops (aiomqtt ends its message iterator then). Hands
        commands to the gateway."""
        async for msg in client.messages:
            if self._on_command is not None:
                self._command(str(msg.topic), msg.payload, bool(msg.retain))

    def _command(self, topic: str, payload: Any, retained: bool) -> None:
        if retained:
            log.warning("mqtt[%s]: ignoring a retained command on %s (publish commands without retain)",
                        self.name, topic)
            return
        try:
            body = json.loads(payload) if payload else {}
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("mqtt[%s]: command on %s is not JSON (%s); ignored", self.name, topic, exc)
            return
        if topic == self._ack_topic:
            cmd = {"type": "ack", "alarm_id": body.get("alarm_id"), "by": body.get("by", ""),
                   "note": body.get("note", "")}
        elif topic == self._maintenance_topic:
            cmd = {"type": "maintenance", "on": body.get("on"), "device": body.get("device"), "by": body.get("by", "")}
        else:
            cmd = {"type": "override", "actuator": topic.rsplit("/", 1)[-1], "mode": body.get("mode"),
                   "by": body.get("by", "")}
        cmd["source"] = f"mqtt:{self.name}"
        assert self._on_command is not None
        problem = self._on_command(cmd)
        self.commands_received += 1
        if problem:
            log.warning("mqtt[%s]: command on %s refused: %s", self.name, topic, problem)

    async def _pump(self, client: aiomqtt.Client) -> bool:
        cfg = self.cfg
        after = self.consumer.acked
        window: deque[tuple[LogRecord, asyncio.Future[Any]]] = deque()
        publish = Confirmations(client).publish  # data messages: one Future each, no Task (mqtt_confirm.py)
        qos, retain = cfg.qos, cfg.retain
        passed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        passed.set_result(None)  # records of kinds this sink does not publish
        if self._availability is not None:
            self._availability.new_session()
        try:
            while True:
                if window and self.log.committed_id <= after:
                    await self._settle(window, len(window))  # nothing new: confirm what is on the wire first
                # a backlog comes as stored rows: the usual poll's message is made from the row (no decoding);
                # not with availability on, which follows each reading's outcome
                records = await self.log.read(after, cfg.batch, max_values=BATCH_VALUES,
                                              rows=self._availability is None)
                if not records:
                    await self._settle(window, len(window))
                    return True
                for rec in records:
                    if len(window) >= cfg.inflight:
                        await self._settle(window, 1)
                    fut: asyncio.Future[Any]
                    stored = rec if isinstance(rec, StoredReading) else None
                    payload = None if stored is None else stored_data_payload(stored)
                    if stored is not None and payload is not None:  # a backlog's usual poll, from its row
                        fut = publish(self._topic_of(stored.layout.site, stored.layout.device), payload, qos, retain)
                    else:
                        if stored is not None:
                            rec = decode_stored(stored)
                        if isinstance(rec, ReadingRecord):
                            fut = publish(self._topic(rec), data_payload(rec), qos, retain)
                            if self._availability is not None:
                                fut = self._with_device_status(client, rec, fut)
                        else:
                            fut = self._publish_record(client, rec) or passed
                    window.append((rec, fut))
                    after = rec.id
                self._settle_done(window)
        finally:
            for _, fut in window:
                fut.cancel()

    async def _settle(self, window: deque[tuple[LogRecord, asyncio.Future[Any]]], at_least: int) -> None:
        """Wait until `at_least` of the oldest messages are confirmed, then advance the cursor. A broker that
        confirms nothing for `timeout_s` ends the session (MqttError, as aiomqtt's own publish times out)."""
        for i in range(min(at_least, len(window))):
            fut = window[i][1]
            if not fut.done():
                try:
                    async with asyncio.timeout(self.cfg.timeout_s):
                        await fut
                except TimeoutError:
                    raise aiomqtt.MqttError("Operation timed out") from None
        self._settle_done(window)

    def _settle_done(self, window: deque[tuple[LogRecord, asyncio.Future[Any]]]) -> None:
        done: list[LogRecord] = []
        while window and window[0][1].done():
            rec, fut = window.popleft()
            fut.result()  # raises MqttError if that publish failed: the session ends, the cursor stays
            done.append(rec)
        if done:
            values = value_count(done)
            self.log.ack(self.consumer, done[-1].id, len(done), values)
            self.status.delivered(done)
            if self._on_delivered is not None:
                self._on_delivered(decoded(done))

    def _publish_record(self, client: aiomqtt.Client, rec: LogRecord) -> asyncio.Future[Any] | None:
        """Aggregates and alarm events; None for kinds this sink passes over."""
        cfg = self.cfg
        if isinstance(rec, AggregateRecord):
            agg = rec.payload
            topic = agg_topic(cfg.topic_prefix, self.site_id, agg.device, agg.window)
            return asyncio.ensure_future(client.publish(topic, agg_payload(agg), qos=cfg.qos, retain=cfg.retain,
                                                        timeout=cfg.timeout_s))
        if isinstance(rec, AlarmRecord) and not rec.payload.checkpoint:
            ev = rec.payload.event
            active = alarm_active_topic(cfg.topic_prefix, self.site_id, ev.rule, ev.device, ev.channel)
            qos = max(1, cfg.qos)
            return asyncio.gather(
                client.publish(self._events_topic, alarm_event_payload(rec.payload), qos=qos, timeout=cfg.timeout_s),
                client.publish(active, alarm_active_payload(rec.payload), qos=qos, retain=True,
                               timeout=cfg.timeout_s),
            )
        return None

    def _topic(self, rec: ReadingRecord) -> str:
        return self._topic_of(rec.reading.site, rec.reading.device)

    def _topic_of(self, site: str, device: str) -> str:
        topic = self._topics.get(device)
        if topic is None:
            topic = self._topics[device] = data_topic(self.cfg.topic_prefix, site, device)
        return topic

    async def _publish_health(self, client: aiomqtt.Client) -> None:
        assert self._health is not None
        while True:
            try:
                snap = await self._health()
                await client.publish(self._health_topic, json_payload(snap), qos=1, retain=True,
                                     timeout=self.cfg.timeout_s)
            except aiomqtt.MqttError:
                return  # the watcher reports the disconnect
            except Exception:
                log.exception("mqtt[%s]: health snapshot failed", self.name)
            await asyncio.sleep(self._health_interval)

    def _with_device_status(self, client: aiomqtt.Client, rec: ReadingRecord,
                            data: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """The data message plus, when this reading changes its device's availability, the retained status
        after it (one future: the cursor passes the reading only once both are confirmed)."""
        assert self._availability is not None
        state = self._availability.observe(rec)
        if state is None:
            return data
        topic = device_status_topic(self.cfg.topic_prefix, self.site_id, rec.reading.device)
        status = client.publish(topic, state.encode(), qos=1, retain=True, timeout=self.cfg.timeout_s)
        return asyncio.gather(data, status)

    def _fail_over(self) -> None:
        """After a failure, the next broker of the failover list (round robin); the cursor did not move past what
        the failed broker acknowledged, so the next one gets everything after it again, in log order."""
        if len(self._brokers) < 2:
            return
        self._broker = (self._broker + 1) % len(self._brokers)
        host, port = self._brokers[self._broker]
        self.status.target = f"{host}:{port}"
        log.warning("mqtt[%s]: moving to broker %s (%s)", self.name, self.status.target, self.status.last_error)
