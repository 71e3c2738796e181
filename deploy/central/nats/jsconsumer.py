"""The ingest's durable JetStream consumer on the MQTT stream: its configuration, its creation, and its re-creation
at the acknowledgement floor when it has stopped delivering.

Why re-creation needs care: `$MQTT_msgs` has interest retention, so a message is kept only while some consumer
still wants it. Deleting the stalled consumer and creating it again would let the server drop, in between, every
reading the old one had not acknowledged yet (the gateways had their PUBACK for them: a loss). So a second
consumer, the bridge (never read), is made first, starting at the old one's ack floor + 1; it holds the interest
while the old one is deleted and the new one (same name and settings, starting at the same sequence) is made;
then the bridge goes. At every moment some consumer wants every unacknowledged reading; what the old consumer had
acknowledged above its floor comes again (a duplicate: the database stores it once), nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig

STREAM = "$MQTT_msgs"
FILTER = "$MQTT.msgs.plume.*.*.data"
PULL_DURABLE = "plume-ingest-pull"  # the default: every instance fetches from it
PUSH_DURABLE = "plume-ingest"  # --push: every instance joins its deliver group
DELIVER_SUBJECT = "plume-ingest.deliver"
BRIDGE_SUFFIX = "-bridge"
BRIDGE_IDLE_S = 300.0  # a bridge an instance left behind (killed mid-recovery) goes away by itself


def consumer_config(ack_wait_s: float, max_ack_pending: int, replicas: int, push: bool = False) -> ConsumerConfig:
    return ConsumerConfig(durable_name=PUSH_DURABLE if push else PULL_DURABLE, filter_subject=FILTER,
                          ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=ack_wait_s,
                          max_ack_pending=max_ack_pending, num_replicas=replicas,
                          deliver_group=PUSH_DURABLE if push else None,
                          deliver_subject=DELIVER_SUBJECT if push else None)


async def ensure_consumer(js: Any, cfg: ConsumerConfig, timeout_s: float = 60.0) -> None:
    """The durable consumer, and the MQTT message stream under it if no MQTT client has connected yet (the server
    makes `$MQTT_msgs` on the first MQTT connection; made here first, with the same settings as nats-server 2.9
    gives it, the first gateway's first readings already have an interested consumer and are kept)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            try:
                await js.stream_info(STREAM)
            except nats.js.errors.NotFoundError:
                with contextlib.suppress(nats.js.errors.BadRequestError):  # made meanwhile by the server
                    await js.add_stream(StreamConfig(name=STREAM, subjects=["$MQTT.msgs.>"],
                                                     storage=StorageType.FILE, retention=RetentionPolicy.INTEREST,
                                                     num_replicas=cfg.num_replicas))
            with contextlib.suppress(nats.js.errors.BadRequestError):  # there already (another instance)
                await js.add_consumer(STREAM, cfg)
            return
        except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError, nats.js.errors.APIError) as e:
            if time.monotonic() > deadline:
                raise
            print(f"ingest: JetStream not ready ({e!r}), retrying", file=sys.stderr, flush=True)
            await asyncio.sleep(1)


async def start_seq(js: Any, durable: str, info: Any | None) -> int:
    """Where a re-created consumer starts: the stalled one's ack floor + 1; if it is gone, a bridge's start (an
    instance died mid-recovery), else the stream's first message (interest retention: what is left in the stream
    is what some consumer has not acknowledged)."""
    if info is not None:
        return int(info.ack_floor.stream_seq) + 1
    with contextlib.suppress(nats.js.errors.NotFoundError):
        bridge = await js.consumer_info(STREAM, durable + BRIDGE_SUFFIX)
        return int(bridge.ack_floor.stream_seq) + 1
    return int((await js.stream_info(STREAM)).state.first_seq)


async def recreate_at_ack_floor(js: Any, cfg: ConsumerConfig, info: Any | None) -> int | None:
    """Delete the consumer and make it again (same name, same settings) starting at its ack floor + 1, the
    bridge holding the interest meanwhile (module docstring). The start sequence; None if another instance is
    doing it right now (its bridge is there and so is the consumer). A bridge found with the consumer gone (an
    instance died half-way, or the creation below failed) is finished: the consumer is made at the bridge's start."""
    durable = str(cfg.durable_name)
    bridge_name = durable + BRIDGE_SUFFIX
    seq = await start_seq(js, durable, info)
    bridge = ConsumerConfig(durable_name=bridge_name, filter_subject=FILTER,
                            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                            opt_start_seq=seq, num_replicas=cfg.num_replicas, inactive_threshold=BRIDGE_IDLE_S)
    try:
        await js.add_consumer(STREAM, bridge)
    except nats.js.errors.BadRequestError:  # "consumer already exists"
        if info is not None:
            return None  # another instance is re-creating it
        seq = await start_seq(js, durable, None)  # the bridge's start
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_consumer(STREAM, durable)
    await js.add_consumer(STREAM, cfg.evolve(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq))
    # only now, with the new consumer in place, may the bridge go (if this fails, it goes after BRIDGE_IDLE_S)
    with contextlib.suppress(Exception):
        await js.delete_consumer(STREAM, bridge_name)
    return seq
