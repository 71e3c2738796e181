"""Central ingest for a Plume fleet on NATS: MQTT contract v1 readings out of JetStream into InfluxDB line protocol.

Why a JetStream consumer and not a plain NATS subscription: NATS's MQTT listener stores every QoS 1 PUBLISH in
its own stream `$MQTT_msgs` (subjects `$MQTT.msgs.<subject>`, replicated over the cluster, retention by
interest) and only then sends the PUBACK; the plain subject (`plume.<site>.<device>.data`) is a fire-and-forget
copy. So a gateway's PUBACK means "on a quorum of the cluster's disks" only for the stream copy. This program
reads that copy through one durable consumer (`plume-ingest`, filter `$MQTT.msgs.plume.*.*.data`, explicit ack)
that every instance joins as a queue group (deliver group `plume-ingest`): each message goes to one instance,
a message is acknowledged only after the database answered 2xx to the batch that carried it, and what an
instance (or a broker node) took down with it is redelivered after `ack_wait`. The consumer must exist before
the gateways publish (interest retention keeps only what some consumer still wants): `--create` makes it.

    python deploy/central/nats/ingest.py --servers nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222 \\
        --user ingest --password-file /etc/plume/ingest.pass --create \\
        --write-url 'http://victoria:8428/write?precision=ms'     # or InfluxDB 1.x: http://influx:8086/write?db=plume&precision=ms

Points are the gateway's own InfluxDB schema v1 (gateway.sinks.lineproto: measurement = kind, tags site and
device, one field per channel plus `<channel>_flag`, the poll's ts in ms), so a re-delivered reading rewrites the
same point. Needs the `plume-gateway` package (for the schema) and `nats-py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.sinks.lineproto import reading_line

STREAM = "$MQTT_msgs"
DURABLE = "plume-ingest"
FILTER = "$MQTT.msgs.plume.*.*.data"
DELIVER_SUBJECT = "plume-ingest.deliver"
CORE_SUBJECT = "plume.*.*.data"


PULL_DURABLE = "plume-ingest-pull"


def consumer_config(ack_wait_s: float, max_ack_pending: int, replicas: int, pull: bool = False) -> ConsumerConfig:
    push = {} if pull else {"deliver_group": DURABLE, "deliver_subject": DELIVER_SUBJECT}
    return ConsumerConfig(durable_name=PULL_DURABLE if pull else DURABLE, filter_subject=FILTER,
                          ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=ack_wait_s,
                          max_ack_pending=max_ack_pending, num_replicas=replicas, **push)


def to_line(payload: bytes) -> tuple[str | None, tuple[str, str, int, int] | None]:
    """(line protocol or None, (site, device, seq, ts) or None for a payload that is not a contract-v1 reading)."""
    try:
        msg = json.loads(payload)
        site, device, seq, ts = str(msg["site"]), str(msg["device"]), int(msg["seq"]), int(msg["ts"])
        values = {ch: ChannelValue(v.get("value"), str(v.get("unit", "")), Flag(v.get("flag", "N")))
                  for ch, v in (msg.get("values") or {}).items()}
        reading = DeviceReading(site, device, str(msg["kind"]), ts, values)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None
    return reading_line(reading), (site, device, seq, ts)


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


class Ingest:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.http = httpx.AsyncClient(timeout=30)
        self.written = 0
        self.redelivered = 0
        self.bad = 0
        self.write_errors = 0
        self.record = open(args.record, "a") if args.record else None  # noqa: SIM115 - for the whole run
        self.stopping = asyncio.Event()
        self.last_msg = time.monotonic()
        self.stalls = 0

    async def on_message(self, msg: Any) -> None:
        self.last_msg = time.monotonic()
        await self.queue.put(msg)

    async def watchdog(self, nc: Any, js: Any, durable: str) -> None:
        """Say so loudly when the consumer has messages but this instance got none for --stall-s, and ask the
        consumer's leader to step down (a new leader resumes delivery). nats-server has had defects where a
        consumer stops delivering after a leader change (see deploy/central/README.md); the benchmark saw one
        such stall once. The step-down is a remedy that could not be tried on that stall; the message is the
        point: alert on it."""
        while not self.stopping.is_set():
            await asyncio.sleep(self.args.stall_s / 3)
            if time.monotonic() - self.last_msg < self.args.stall_s:
                continue
            try:
                ci = await js.consumer_info(STREAM, durable)
            except Exception:  # a leader election under way: look again later
                continue
            if not (ci.num_pending or ci.num_ack_pending):
                continue  # nothing to deliver: idle, not stalled
            self.stalls += 1
            leader = ci.cluster.leader if ci.cluster else "?"
            print(f"ingest: STALLED: consumer {durable} has {ci.num_pending} pending and {ci.num_ack_pending} "
                  f"unacknowledged, nothing delivered here for {self.args.stall_s:g} s; asking its leader {leader} "
                  "to step down", file=sys.stderr, flush=True)
            with contextlib.suppress(Exception):
                await nc.request(f"$JS.API.CONSUMER.LEADER.STEPDOWN.{STREAM}.{durable}", b"", timeout=5)
            self.last_msg = time.monotonic()

    async def pull(self, sub: Any) -> None:
        """--pull: fetch batches from the durable pull consumer (every instance pulls from the same one)."""
        while not self.stopping.is_set():
            try:
                msgs = await sub.fetch(self.args.batch, timeout=max(self.args.linger_ms / 1000, 1.0))
            except nats.errors.TimeoutError:
                continue
            except Exception as e:  # a leader change or a reconnect: ask again
                print(f"ingest: fetch: {e!r}", file=sys.stderr, flush=True)
                await asyncio.sleep(0.5)
                continue
            self.last_msg = time.monotonic()
            for m in msgs:
                await self.queue.put(m)

    async def writer(self) -> None:
        linger = self.args.linger_ms / 1000
        while not (self.stopping.is_set() and self.queue.empty()):
            try:
                first = await asyncio.wait_for(self.queue.get(), 0.5)
            except TimeoutError:
                continue
            batch = [first]
            deadline = time.monotonic() + linger
            while len(batch) < self.args.batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            await self.write(batch)

    async def write(self, batch: list[Any]) -> None:
        lines, keys = [], []
        for m in batch:
            line, key = to_line(m.data)
            if key is None:
                self.bad += 1  # not a reading: acknowledged and counted, never retried forever
            else:
                keys.append((key, m.metadata.num_delivered if m.reply else 1))
            if line:
                lines.append(line)
        body = ("\n".join(lines) + "\n").encode()
        while lines:
            try:
                r = await self.http.post(self.args.write_url, content=body)
                if r.status_code < 300:
                    break
                print(f"ingest: database answered {r.status_code}: {r.text[:200]}", file=sys.stderr, flush=True)
            except httpx.HTTPError as e:
                print(f"ingest: database unreachable: {e}", file=sys.stderr, flush=True)
            self.write_errors += 1
            await asyncio.sleep(1)  # the messages stay unacknowledged meanwhile; NATS holds them
        done = time.time_ns() // 1_000_000
        self.written += len(keys)
        for (site, device, seq, ts), delivered in keys:
            self.redelivered += delivered > 1
            if self.record is not None:
                self.record.write(f"{site} {device} {seq} {ts} {done} {delivered}\n")
        if self.record is not None:
            self.record.flush()  # before the acks: an instance killed in between only causes a redelivery
        for m in batch:
            if m.reply:
                await m.ack()

    async def run(self) -> None:
        servers = self.args.servers.split(",")
        password = self.args.password
        if self.args.password_file:
            password = Path(self.args.password_file).read_text().splitlines()[0]

        async def on_error(e: Exception) -> None:
            print(f"ingest: nats: {e!r}", file=sys.stderr, flush=True)

        tls = ssl.create_default_context(cafile=self.args.ca_file) if self.args.ca_file else None
        nc = await nats.connect(servers, user=self.args.user, password=password, name=self.args.name, tls=tls,
                                max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=on_error)
        if self.args.core:  # the comparison: a plain queue group on the subject copy, no JetStream, no acks
            sub = await nc.subscribe(CORE_SUBJECT, queue=DURABLE, cb=self.on_message)
        else:
            js = nc.jetstream()
            cfg = consumer_config(self.args.ack_wait_s, self.args.max_ack_pending, self.args.replicas,
                                  self.args.pull)
            if self.args.create:
                await ensure_consumer(js, cfg)
            if self.args.pull:
                sub = await js.pull_subscribe_bind(durable=PULL_DURABLE, stream=STREAM)
                puller = asyncio.create_task(self.pull(sub))
            else:
                sub = await nc.subscribe(DELIVER_SUBJECT, queue=DURABLE, cb=self.on_message)
            watchdog = asyncio.create_task(self.watchdog(nc, js, PULL_DURABLE if self.args.pull else DURABLE))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        what = CORE_SUBJECT if self.args.core else f"{STREAM} > {FILTER}"
        how = f"pulling from durable {PULL_DURABLE}" if self.args.pull else f"as queue group {DURABLE}"
        print(f"ingest: {self.args.name} reading {what} {how}", flush=True)
        writer = asyncio.create_task(self.writer())
        await self.stopping.wait()
        if self.args.pull:
            await puller
        if not self.args.core:
            watchdog.cancel()
        await sub.unsubscribe()  # nothing new; what is queued here is still written and acknowledged
        await writer
        await nc.flush()
        await nc.close()
        await self.http.aclose()
        if self.record is not None:
            self.record.close()
        print(f"ingest: {self.args.name} written {self.written} readings, redelivered {self.redelivered}, "
              f"not readings {self.bad}, write retries {self.write_errors}, stalls {self.stalls}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", required=True, help="comma-separated nats:// URLs of the cluster's nodes")
    ap.add_argument("--user", default="ingest")
    ap.add_argument("--password", default=None)
    ap.add_argument("--password-file", default=None)
    ap.add_argument("--ca-file", default=None, help="CA of the nodes' certificates (tls:// URLs)")
    ap.add_argument("--name", default="plume-ingest", help="this instance's connection name")
    ap.add_argument("--write-url", required=True, help="InfluxDB line-protocol write URL (precision=ms)")
    ap.add_argument("--create", action="store_true", help="create the durable consumer if it is not there")
    ap.add_argument("--replicas", type=int, default=3, help="replicas of the consumer's state (with --create)")
    ap.add_argument("--ack-wait-s", type=float, default=10.0, help="redeliver what is not acknowledged by then")
    ap.add_argument("--max-ack-pending", type=int, default=20000)
    ap.add_argument("--stall-s", type=float, default=30.0, help="report a stalled consumer after this long")
    ap.add_argument("--batch", type=int, default=2000, help="readings per database write at most")
    ap.add_argument("--linger-ms", type=float, default=200.0, help="wait this long to fill a batch")
    ap.add_argument("--pull", action="store_true", help=f"pull from the durable consumer {PULL_DURABLE} instead "
                    "of joining the push consumer's queue group")
    ap.add_argument("--core", action="store_true", help="read the plain subjects with a NATS queue group instead "
                    "(at most once: loses what a killed node had in flight; for comparison only)")
    ap.add_argument("--record", default=None, help="append `site device seq ts written_ms deliveries` per reading "
                    "to this file (the benchmark's check)")
    asyncio.run(Ingest(ap.parse_args()).run())


if __name__ == "__main__":
    main()
