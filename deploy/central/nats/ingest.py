"""Central ingest for a Plume fleet on NATS: MQTT contract v1 readings out of JetStream into InfluxDB line protocol.

Why a JetStream consumer and not a plain NATS subscription: NATS's MQTT listener stores every QoS 1 PUBLISH in
its own stream `$MQTT_msgs` (subjects `$MQTT.msgs.<subject>`, replicated over the cluster, retention by
interest) and only then sends the PUBACK; the plain subject (`plume.<site>.<device>.data`) is a fire-and-forget
copy. So a gateway's PUBACK means "on a quorum of the cluster's disks" only for the stream copy. This program
reads that copy through one durable pull consumer (`plume-ingest-pull`, filter `$MQTT.msgs.plume.*.*.data`,
explicit ack) that every instance fetches from: each message goes to one instance, a message is acknowledged
only after the database answered 2xx to the batch that carried it, and what an instance (or a broker node) took
down with it is redelivered after `ack_wait`. The consumer must exist before the gateways publish (interest
retention keeps only what some consumer still wants): `--create` makes it. `--push` joins a push consumer's
queue group instead (`plume-ingest`); not recommended on nats-server 2.9, whose push consumers have stalled
after a node kill (deploy/central/README.md).

A watchdog covers a consumer that stops delivering without the server noticing: when nothing came for
`--stall-s` while the consumer reports pending or unacknowledged messages (or does not answer at all), the
instance drops its subscription and binds again (on another node if its own does not answer); if that still
brings nothing, it re-creates the durable consumer at its ack floor (jsconsumer.py). It logs
`ingest: STALLED ...` when it acts and `ingest: STALLED ... recovered ...` when readings flow again.

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
from jsconsumer import (
    DELIVER_SUBJECT,
    FILTER,
    PULL_DURABLE,
    PUSH_DURABLE,
    STREAM,
    consumer_config,
    ensure_consumer,
    recreate_at_ack_floor,
)

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.sinks.lineproto import reading_line

CORE_SUBJECT = "plume.*.*.data"


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


class Ingest:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.http = httpx.AsyncClient(timeout=30)
        self.written = 0
        self.received = 0
        self.redelivered = 0
        self.bad = 0
        self.write_errors = 0
        self.record = open(args.record, "a") if args.record else None  # noqa: SIM115 - for the whole run
        self.stopping = asyncio.Event()
        self.last_msg = time.monotonic()
        self.stalls = 0
        self.recoveries = 0
        self.nc: Any = None
        self.js: Any = None
        self.sub: Any = None
        self.password: str | None = None
        self.closing: set[asyncio.Task[None]] = set()
        self.stalled_at = self.acted_at = 0.0  # the watchdog's: when the stall began, when it last acted
        self.received_at_stall = 0
        self.stall_state = ""
        self.actions: list[str] = []
        self.cfg = consumer_config(args.ack_wait_s, args.max_ack_pending, args.replicas, push=args.push)
        self.durable = str(self.cfg.durable_name)

    async def on_message(self, msg: Any) -> None:
        self.delivered(1)
        await self.queue.put(msg)

    def delivered(self, n: int) -> None:
        """n messages came in; the first after a stall reports the recovery."""
        self.last_msg = time.monotonic()
        self.received += n
        if self.stalled_at and self.last_msg > self.acted_at:
            self.recoveries += 1
            print(f"ingest: STALLED {self.durable} recovered after {self.last_msg - self.stalled_at:.0f} s by "
                  f"{' + '.join(self.actions)}: {n} delivered at once, {self.received - self.received_at_stall} "
                  f"since the stall (at the stall: {self.stall_state})", file=sys.stderr, flush=True)
            self.stalled_at = 0.0
            self.actions = []

    async def bind(self) -> None:
        """Subscribe to the consumer (again): a fresh pull subscription (a new inbox), or the push queue group."""
        if self.sub is not None:
            try:
                await self.sub.unsubscribe()
            except Exception as e:  # a subscription on a dead connection: a new one is made all the same
                print(f"ingest: unsubscribe: {e!r}", file=sys.stderr, flush=True)
        if self.args.push:
            self.sub = await self.nc.subscribe(DELIVER_SUBJECT, queue=PUSH_DURABLE, cb=self.on_message)
        else:
            self.sub = await self.js.pull_subscribe_bind(durable=PULL_DURABLE, stream=STREAM)

    async def consumer_state(self) -> tuple[Any | None, str]:
        """(consumer info, "") or (None, why: "missing" if the consumer is gone, else the error)."""
        try:
            return await self.js.consumer_info(STREAM, self.durable, timeout=min(5.0, self.args.stall_s)), ""
        except nats.js.errors.NotFoundError:
            return None, "missing"
        except Exception as e:  # no answer: a leader election under way, or this connection's node is hung
            return None, repr(e)

    async def watchdog(self) -> None:
        """Nothing delivered here for --stall-s while the consumer has work (or does not answer): 1. drop the
        subscription and bind again, on another node if the consumer does not answer through this one;
        2. if another --stall-s brings nothing (or the consumer is gone), re-create the consumer at its ack floor
        (jsconsumer.py). Repeated while the stall lasts; reported when readings flow again. Nothing here waits for
        the server to un-stick itself; redeliveries it causes are duplicates, stored once."""
        while not self.stopping.is_set():
            await asyncio.sleep(self.args.stall_s / 4)
            now = time.monotonic()
            if now - max(self.last_msg, self.acted_at) < self.args.stall_s:
                continue
            ci, why = await self.consumer_state()
            if ci is not None and not (ci.num_pending or ci.num_ack_pending):
                continue  # nothing to deliver: idle, not stalled
            state = (f"{ci.num_pending} pending, {ci.num_ack_pending} unacknowledged, ack floor stream seq "
                     f"{ci.ack_floor.stream_seq}" if ci else f"no consumer info ({why})")
            if not self.stalled_at:
                self.stalled_at, self.received_at_stall, self.stall_state = now, self.received, state
                self.stalls += 1
            if ci is None and why != "missing":
                kind = "reconnect"
            elif why != "missing" and (not self.actions or self.actions[-1] != "re-bind"):
                kind = "re-bind"
            else:
                kind = "re-create"
            where = f" (away from {self._server()})" if kind == "reconnect" else ""
            print(f"ingest: STALLED: consumer {self.durable}: {state}; nothing delivered here for "
                  f"{now - self.last_msg:.0f} s; {kind}{where}", file=sys.stderr, flush=True)
            self.actions.append(kind)
            self.acted_at = time.monotonic()
            try:
                if kind == "reconnect":
                    await self.reconnect()
                elif kind == "re-create":
                    seq = await recreate_at_ack_floor(self.js, self.cfg, ci)
                    print(f"ingest: STALLED: consumer {self.durable} " + (
                        f"re-created at stream seq {seq}" if seq else "being re-created by another instance"),
                        file=sys.stderr, flush=True)
                await self.bind()
            except Exception as e:  # tried again after --stall-s
                print(f"ingest: STALLED: {kind} failed: {e!r}", file=sys.stderr, flush=True)

    async def connect(self, servers: list[str], randomize: bool = True) -> Any:
        async def on_error(e: Exception) -> None:
            print(f"ingest: nats: {e!r}", file=sys.stderr, flush=True)

        tls = ssl.create_default_context(cafile=self.args.ca_file) if self.args.ca_file else None
        return await nats.connect(servers, user=self.args.user, password=self.password, name=self.args.name,
                                  tls=tls, max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=on_error,
                                  dont_randomize=not randomize)

    async def reconnect(self) -> None:
        """A new connection, this node tried last; the old one is left to close in the background (on a hung
        node that takes the TLS shutdown timeout; what was fetched through it and not acknowledged is
        redelivered after --ack-wait-s)."""
        here = self._server()
        servers = self.args.servers.split(",")
        servers = [u for u in servers if not u.endswith(here)] + [u for u in servers if u.endswith(here)]
        old, self.sub = self.nc, None
        self.nc = await self.connect(servers, randomize=False)
        self.js = self.nc.jetstream()
        self.closing.add(task := asyncio.create_task(old.close()))
        task.add_done_callback(self.closing.discard)

    def _server(self) -> str:
        url = self.nc.connected_url
        return f"{url.hostname}:{url.port}" if url else "?"

    async def pull(self) -> None:
        """Fetch batches from the durable pull consumer (every instance pulls from the same one)."""
        while not self.stopping.is_set():
            sub = self.sub
            if sub is None:  # being replaced (watchdog)
                await asyncio.sleep(0.1)
                continue
            try:
                msgs = await sub.fetch(self.args.batch, timeout=max(self.args.linger_ms / 1000, 1.0))
            except nats.errors.TimeoutError:
                continue
            except Exception as e:  # a leader change, a reconnect, a re-bind: ask again
                if sub is self.sub:
                    print(f"ingest: fetch: {e!r}", file=sys.stderr, flush=True)
                    await asyncio.sleep(0.5)
                continue
            if not msgs:
                continue
            self.delivered(len(msgs))
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
                try:
                    await m.ack()
                except Exception as e:  # its connection is gone (a reconnect): redelivered, stored once
                    print(f"ingest: ack: {e!r}", file=sys.stderr, flush=True)

    async def run(self) -> None:
        servers = self.args.servers.split(",")
        password = self.args.password
        if self.args.password_file:
            password = Path(self.args.password_file).read_text().splitlines()[0]

        self.password = password
        self.nc = await self.connect(servers)
        tasks = []
        if self.args.core:  # the comparison: a plain queue group on the subject copy, no JetStream, no acks
            self.sub = await self.nc.subscribe(CORE_SUBJECT, queue=PUSH_DURABLE, cb=self.on_message)
        else:
            self.js = self.nc.jetstream()
            if self.args.create:
                await ensure_consumer(self.js, self.cfg)
            await self.bind()
            if not self.args.push:
                tasks.append(asyncio.create_task(self.pull()))
            tasks.append(asyncio.create_task(self.watchdog()))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        what = CORE_SUBJECT if self.args.core else f"{STREAM} > {FILTER}"
        how = f"as queue group {PUSH_DURABLE}" if self.args.push or self.args.core else \
            f"pulling from durable {PULL_DURABLE}"
        print(f"ingest: {self.args.name} reading {what} {how} (connected to {self._server()})", flush=True)
        writer = asyncio.create_task(self.writer())
        await self.stopping.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()  # nothing new; what is queued here is still written and acknowledged
        await writer
        await self.nc.flush()
        await self.nc.close()
        for t in self.closing:
            t.cancel()
        await self.http.aclose()
        if self.record is not None:
            self.record.close()
        print(f"ingest: {self.args.name} written {self.written} readings, redelivered {self.redelivered}, "
              f"not readings {self.bad}, write retries {self.write_errors}, stalls {self.stalls} "
              f"(recovered {self.recoveries})", flush=True)


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
    ap.add_argument("--stall-s", type=float, default=30.0, help="act on a consumer that delivered nothing for this "
                    "long while it has pending or unacknowledged messages (re-bind, then re-create at its ack floor)")
    ap.add_argument("--batch", type=int, default=2000, help="readings per database write at most")
    ap.add_argument("--linger-ms", type=float, default=200.0, help="wait this long to fill a batch")
    ap.add_argument("--push", action="store_true", help=f"join the push consumer {PUSH_DURABLE}'s queue group "
                    f"instead of pulling from {PULL_DURABLE} (not recommended on nats-server 2.9: its push consumers "
                    "have stalled after a node kill)")
    ap.add_argument("--pull", action="store_true", help="the default (kept for old command lines)")
    ap.add_argument("--core", action="store_true", help="read the plain subjects with a NATS queue group instead "
                    "(at most once: loses what a killed node had in flight; for comparison only)")
    ap.add_argument("--record", default=None, help="append `site device seq ts written_ms deliveries` per reading "
                    "to this file (the benchmark's check)")
    asyncio.run(Ingest(ap.parse_args()).run())


if __name__ == "__main__":
    main()
