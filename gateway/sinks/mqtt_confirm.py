"""Data messages published through paho itself, each confirmed by a plain Future resolved at its PUBACK/PUBCOMP.

aiomqtt's `publish()` is made for one awaited call at a time: per message it costs a Task (the caller must run it
concurrently to keep a window on the wire), an Event, `asyncio.wait_for` (another Task on Python 3.11) and two scans
of every pending call (`mid in` a generator, `len(list(...))`), so with a window of `inflight` messages each publish
walks the whole window: ~59 us of CPU a message against ~26 us here (a loop that only publishes, a window of 200,
against Mosquitto), where a message costs paho's own work, one Future and one dict entry. The MQTT sink publishes
one message per poll; at 10,000 messages a second (100,000 values/s of 10-value readings) the old path fell behind
and this one keeps up. aiomqtt still owns the
connection, the session, the subscriptions and every other publish (status, health, events, aggregates); this
hooks its client's `on_publish` and calls aiomqtt's handler first, so those keep working.

Timeouts are the caller's (the MQTT sink waits for its oldest message with `cfg.timeout_s`); a broken connection
is reported by aiomqtt's message iterator, which ends the session and abandons these Futures with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttCodeError


class Confirmations:
    """One MQTT session's publisher of data messages (make it inside `async with client`)."""

    def __init__(self, client: aiomqtt.Client):
        self._paho: paho.Client = client._client  # aiomqtt 2.x keeps the paho client here (pinned: <3)
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._aiomqtt_on_publish = self._paho.on_publish
        self._paho.on_publish = self._on_publish

    def publish(self, topic: str, payload: str | bytes, qos: int, retain: bool) -> asyncio.Future[None]:
        """Hand one message to paho; the Future is done when the broker confirmed it (QoS 0: when paho wrote it to
        the socket, as aiomqtt waits for), or holds MqttCodeError when paho refused it (not connected, queue
        full). With aiomqtt's socket callbacks paho never writes inside publish(), so the hook cannot fire before
        the Future is registered."""
        fut: asyncio.Future[None] = self._loop.create_future()
        info = self._paho.publish(topic, payload, qos, retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            fut.set_exception(MqttCodeError(info.rc, "Could not publish message"))
        elif info.is_published():
            fut.set_result(None)
        else:
            self._pending[info.mid] = fut
        return fut

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, *rest: Any) -> None:
        if self._aiomqtt_on_publish is not None:
            self._aiomqtt_on_publish(client, userdata, mid, *rest)  # aiomqtt's own publishes
        fut = self._pending.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)
