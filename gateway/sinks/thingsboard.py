"""ThingsBoard gateway API: a ThingsBoard server takes Plume as its gateway (one MQTT connection for every device).

- `v1/gateway/connect` / `v1/gateway/disconnect` follow each device's availability, derived from the readings in
  log order (gateway.sinks.availability: disconnected after `offline_after` failed polls, connected at the first
  good one); `v1/gateway/attributes` gives each device its site, kind, profile, bus and address at every connect.
- `v1/gateway/telemetry` carries the readings, several per message, `{"dev": [{"ts": ms, "values": {...}}]}`:
  each channel's value (a null when the poll gave none) and, beside it, `{channel}_flag` (the HJ 212 data flag).
  The cursor passes a batch only once the broker acknowledged it (QoS 1): at-least-once, in log order; ThingsBoard
  keeps one value per key and timestamp, so a re-sent batch does not double.
- `v1/gateway/rpc` requests are mapped to the gateway's command path (the same as MQTT commands): `ack`
  {alarm_id, note}, `maintenance` {on}, `actuator` {actuator, mode}, `write` {channel, value} (only a channel the
  profile marks `writable`). Every request is answered on `v1/gateway/rpc` with `{"success": true}` or
  `{"success": false, "error": reason}`; refused ones are recorded in the log with their reason (the audit trail).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable
from typing import Any

import aiomqtt

from gateway.sinks.availability import ONLINE, Availability
from gateway.sinks.backoff import Backoff, Outage
from gateway.sinks.base import DeliveredHook, HealthProvider, SinkStatus
from gateway.sinks.config import ThingsBoardSinkConfig
from gateway.sinks.contract import json_payload
from gateway.sinks.mqtt import describe
from gateway.store.log import DurableLog
from gateway.store.records import LogRecord, ReadingRecord, value_count

log = logging.getLogger("plume.sink.thingsboard")

CONNECT, DISCONNECT = "v1/gateway/connect", "v1/gateway/disconnect"
TELEMETRY, ATTRIBUTES, RPC = "v1/gateway/telemetry", "v1/gateway/attributes", "v1/gateway/rpc"
CommandHandler = Callable[[dict[str, Any]], "str | None"]


def telemetry_entry(rec: ReadingRecord) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for ch, cv in rec.reading.values.items():
        v = cv.value
        values[ch] = None if isinstance(v, float) and v != v else v
        values[f"{ch}_flag"] = cv.flag.value
    return {"ts": rec.reading.ts, "values": values}


def rpc_command(device: str, method: Any, params: Any) -> dict[str, Any]:
    """The gateway command for one RPC request (an unknown method becomes a command the gateway refuses)."""
    p = params if isinstance(params, dict) else {}
    if method == "ack":
        return {"type": "ack", "alarm_id": p.get("alarm_id"), "note": p.get("note", ""), "by": p.get("by", "")}
    if method == "maintenance":
        return {"type": "maintenance", "on": p.get("on"), "device": device, "by": p.get("by", "")}
    if method == "actuator":
        return {"type": "override", "actuator": p.get("actuator"), "mode": p.get("mode"), "by": p.get("by", "")}
    if method == "write":
        return {"type": "write", "device": device, "channel": p.get("channel"), "value": p.get("value"),
                "by": p.get("by", "")}
    return {"type": f"rpc:{method}", "device": device, "params": p}


class ThingsBoardSink:
    """Delivers the log to ThingsBoard through its MQTT gateway API (see the module doc)."""

    type = "thingsboard"

    def __init__(self, cfg: ThingsBoardSinkConfig, site_id: str, log_: DurableLog, *,
                 devices: dict[str, dict[str, Any]], token: str | None, tls: ssl.SSLContext | None = None,
                 on_delivered: DeliveredHook | None = None):
        self.cfg = cfg
        self.name = cfg.name
        self.site_id = site_id
        self.log = log_
        self.consumer = log_.consumer(cfg.name)
        self.devices = devices  # name -> attributes
        self._token = token
        self._tls = tls
        self._on_delivered = on_delivered
        self.status = SinkStatus(cfg.name, "thingsboard", f"{cfg.host}:{cfg.effective_port}")
        self._outage = Outage(log, f"thingsboard[{cfg.name}] {self.status.target}")
        self._availability = Availability(cfg.offline_after)
        self._on_command: CommandHandler | None = None
        self.rpc_answered = 0

    def set_command_handler(self, handler: CommandHandler) -> None:
        self._on_command = handler

    def set_health(self, provider: HealthProvider, interval_s: float | None = None) -> None:
        """ThingsBoard gets no health snapshot (its own device state shows the gateway's connection)."""

    async def run(self) -> None:
        backoff = Backoff(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
        while True:
            if self.log.closing and self.log.depth(self.consumer) == 0:
                return
            client = aiomqtt.Client(
                self.cfg.host, self.cfg.effective_port, username=self._token,
                identifier=self.cfg.client_id or f"plume-{self.site_id}-{self.name}",
                keepalive=self.cfg.keepalive_s, timeout=self.cfg.timeout_s, tls_context=self._tls,
                logger=logging.getLogger("plume.sink.thingsboard.client"))
            try:
                async with client:
                    self.status.connected = True
                    self.status.connects += 1
                    backoff.reset()
                    self._outage.ok("connected")
                    log.info("thingsboard[%s]: connected to %s", self.name, self.status.target)
                    if await self._session(client):
                        return
            except aiomqtt.MqttError as exc:
                self.status.failures += 1
                self.status.last_error = describe(exc)
                self._outage.fail(self.status.last_error)
            finally:
                self.status.connected = False
            if self.log.closing or await self.log.sleep(backoff.next()):
                return

    async def _session(self, client: aiomqtt.Client) -> bool:
        await client.subscribe(RPC, qos=1)
        self._availability.new_session()
        pump = asyncio.create_task(self._pump(client), name=f"thingsboard[{self.name}].pump")
        watch = asyncio.create_task(self._watch(client), name=f"thingsboard[{self.name}].rpc")
        try:
            done, _ = await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (pump, watch):
                t.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)
        if pump in done:
            return pump.result()
        watch.result()
        raise aiomqtt.MqttError("connection lost")

    async def _pump(self, client: aiomqtt.Client) -> bool:
        after = self.consumer.acked
        while True:
            records = await self.log.read(after, self.cfg.batch)
            if not records:
                return True
            await asyncio.gather(*self._messages(client, records))
            after = records[-1].id
            self._delivered(records)

    def _messages(self, client: aiomqtt.Client, records: list[LogRecord]) -> list[Any]:
        """The publishes of one batch, in log order: a device's connect before its telemetry, its disconnect after
        the telemetry of the poll that made it offline."""
        out: list[Any] = []
        telemetry: dict[str, list[dict[str, Any]]] = {}

        def publish(topic: str, body: Any) -> None:
            out.append(client.publish(topic, json_payload(body), qos=1, timeout=self.cfg.timeout_s))

        def flush() -> None:
            if telemetry:
                publish(TELEMETRY, dict(telemetry))
                telemetry.clear()

        for rec in records:
            if not isinstance(rec, ReadingRecord):
                continue
            device = rec.reading.device
            state = self._availability.observe(rec)
            if state == ONLINE:
                flush()
                publish(CONNECT, {"device": device, "type": rec.reading.kind})
                publish(ATTRIBUTES, {device: self.devices.get(device, {"site": self.site_id})})
            telemetry.setdefault(device, []).append(telemetry_entry(rec))
            if state is not None and state != ONLINE:
                flush()
                publish(DISCONNECT, {"device": device})
        flush()
        return out

    def _delivered(self, records: list[LogRecord]) -> None:
        self.log.ack(self.consumer, records[-1].id, len(records), value_count(records))
        self.status.delivered(records)
        if self._on_delivered is not None:
            self._on_delivered(records)

    async def _watch(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            if str(msg.topic) == RPC and not msg.retain:
                reply = self._rpc(msg.payload)
                if reply is not None:
                    await client.publish(RPC, json_payload(reply), qos=1, timeout=self.cfg.timeout_s)
                    self.rpc_answered += 1

    def _rpc(self, payload: Any) -> dict[str, Any] | None:
        try:
            body = json.loads(payload)
            device, data = body["device"], body["data"]
            if "method" not in data and "id" in body:
                return None  # a reply (ours, echoed by a plain broker): nothing to do
            rid = data["id"]
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            log.warning("thingsboard[%s]: an RPC request that is not {device, data: {id, method}} (%s); ignored",
                        self.name, exc)
            return None
        cmd = rpc_command(str(device), data.get("method"), data.get("params"))
        cmd["source"] = f"thingsboard:{self.name}"
        problem = "the gateway takes no commands" if self._on_command is None else self._on_command(cmd)
        if problem:
            log.warning("thingsboard[%s]: RPC %s for %s refused: %s", self.name, data.get("method"), device, problem)
            return {"device": device, "id": rid, "data": {"success": False, "error": problem}}
        return {"device": device, "id": rid, "data": {"success": True}}
