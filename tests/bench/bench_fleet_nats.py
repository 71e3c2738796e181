"""Benchmark of the central path on a NATS cluster: prints figures, asserts nothing about speed.

    python tests/bench/bench_fleet_nats.py [--sites 1000 --devices 10 --interval 10 --duration 180] [--gateways 3]

All on loopback, each part its own process: three nats-server 2.9 nodes (cluster, JetStream, MQTT listener; the
authorization of deploy/central/nats/authz.py: one MQTT-only user per site), VictoriaMetrics (InfluxDB line
protocol on /write), two central consumers (deploy/central/nats/ingest.py: one durable JetStream pull consumer on
the MQTT stream, both instances fetching from it; `--push`: a push consumer's queue group instead), a light fleet
of simulated sites (tests/bench/fleet_sim.py: one MQTT 3.1.1 connection per site, QoS 1, spread over the three
nodes, failing over to the next node) and a few real `plume run` gateways against `plume-sim`, with the three
nodes as broker and failover brokers.

Halfway through, the node leading the MQTT message stream is killed with SIGKILL and stays down. At the end:
every reading a site had committed — a simulated site: what it got a PUBACK for; a real gateway: what its durable
log holds up to its MQTT sink's cursor — must be in the database, at its own timestamp, once; printed: sites,
readings/s through the cluster, the node killed, readings lost, duplicates delivered, consumer lag (reading's
time -> database write acknowledged) p50/p95/max, and what each process cost in CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "deploy" / "central" / "nats"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import httpx  # noqa: E402

from gateway.localservers import Server, free_port, port_open  # noqa: E402

NATS_PY = ROOT / "deploy" / "central" / "nats" / "ingest.py"


# --- servers ----------------------------------------------------------------------------------------------------

class NatsNode(Server):
    binary = "nats-server"

    def __init__(self, folder: Path, name: str, cluster_ports: list[int], authz: Path):
        super().__init__(folder)
        self.name = name
        self.mqtt_port = free_port()
        self.cluster_port = cluster_ports.pop(0)
        self.routes = list(cluster_ports)
        self.authz = authz

    def command(self) -> list[str]:
        routes = ", ".join(f"nats://127.0.0.1:{p}" for p in self.routes)
        conf = self.folder / "node.conf"
        conf.write_text(f"""\
server_name: {self.name}
listen: 127.0.0.1:{self.port}
jetstream {{ store_dir: "{self.folder}/js" }}
mqtt {{ listen: 127.0.0.1:{self.mqtt_port}, stream_replicas: 3, ack_wait: "10s" }}
cluster {{ name: plume, listen: 127.0.0.1:{self.cluster_port}, routes: [{routes}] }}
include "{os.path.relpath(self.authz, self.folder)}"
""")
        return ["nats-server", "-c", str(conf)]

    def ready(self) -> bool:
        return port_open(self.port) and port_open(self.mqtt_port)


class Victoria(Server):
    binary = "victoria-metrics"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return ["victoria-metrics", f"-storageDataPath={self.folder}/data", f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=1d", "-search.latencyOffset=0s", "-dedup.minScrapeInterval=1ms",
                "-loggerLevel=ERROR"]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def timestamps(self, site_regex: str) -> dict[tuple[str, str], set[int]]:
        """Every (site, device) -> the timestamps holding any numeric field of a reading."""
        httpx.get(f"{self.url}/internal/force_flush", timeout=30)
        out: dict[tuple[str, str], set[int]] = {}
        with httpx.stream("POST", f"{self.url}/api/v1/export", timeout=300,
                          data={"match[]": f'{{__name__=~"dust_.*",site=~"{site_regex}"}}'}) as r:
            for line in r.iter_lines():
                if line:
                    row = json.loads(line)
                    key = (row["metric"]["site"], row["metric"]["device"])
                    out.setdefault(key, set()).update(row["timestamps"])
        return out


def cpu_s(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# --- the fleet child --------------------------------------------------------------------------------------------

def cpu_now() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def fleet_child(spec_path: Path, out_path: Path) -> None:
    from tests.bench.fleet_sim import Fleet, SiteSim

    spec = json.loads(spec_path.read_text())
    servers = [tuple(s) for s in spec["servers"]]

    async def main() -> None:
        sites = [SiteSim(site, pw, servers, spec["devices"], spec["interval"], k % len(servers))  # type: ignore[arg-type]
                 for k, (site, pw) in enumerate(spec["sites"].items())]
        fleet = Fleet(sites, spec["interval"])
        tasks = [asyncio.create_task(s.run()) for s in sites]
        producing = asyncio.create_task(fleet.produce(spec["duration"]))
        t0 = time.monotonic()
        while not producing.done() or fleet.unacked:
            await asyncio.sleep(5)
            print(f"fleet: t={time.monotonic() - t0:5.0f} s produced {fleet.produced} acked {fleet.acked} "
                  f"unacked {fleet.unacked} connects {sum(s.connects for s in sites)}", flush=True)
            if producing.done() and time.monotonic() - t0 > spec["duration"] + 120:
                print("fleet: gave up waiting for acknowledgements", flush=True)
                break
        for t in tasks:
            t.cancel()
        out_path.write_text(json.dumps({s.site: {"produced": s.produced, "acked": s.acked,
                                                 "resent": s.resent, "connects": s.connects,
                                                 "refused": s.refused, "out_of_order_acks": s.out_of_order_acks}
                                        for s in sites} | {"_cpu_s": cpu_now()}))

    asyncio.run(main())


# --- real gateways ----------------------------------------------------------------------------------------------

GATEWAY_DEVICES = ["dust-1", "dust-2", "dust-3"]


def sim_site_text(sim_port: int) -> str:
    devices = "\n".join(f"  - {{name: {d}, bus: lan, address: {i + 1}, profile: dust-monitor}}"
                        for i, d in enumerate(GATEWAY_DEVICES))
    return f"site: {{id: sim}}\nbuses:\n  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}\n" \
           f"devices:\n{devices}\n"


def gateway_site_text(site: str, sim_port: int, nodes: list[NatsNode], folder: Path) -> str:
    devices = "\n".join(f"  - {{name: {d}, bus: lan, address: {i + 1}, profile: dust-monitor, poll_interval_s: 1, "
                        f"timeout_s: 0.5}}" for i, d in enumerate(GATEWAY_DEVICES))
    failover = ", ".join(f'"127.0.0.1:{n.mqtt_port}"' for n in nodes[1:])
    return f"""\
site: {{id: {site}}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
{devices}
store: {{dir: {folder}/log, commit_interval_ms: 250}}
sinks:
  - {{type: mqtt, name: central, host: 127.0.0.1, port: {nodes[0].mqtt_port}, failover: [{failover}],
      username: {site}, password_file: {folder}/mqtt.pass, health_interval_s: 10, reconnect_min_s: 0.2,
      reconnect_max_s: 2, timeout_s: 5}}
"""


def gateway_committed(log_dir: Path, sink: str) -> tuple[dict[tuple[str, str], list[tuple[int, int]]], int]:
    """The readings of a stopped gateway's log up to `sink`'s cursor: (site, device) -> [(seq, ts)]; and how many
    committed readings lie beyond the cursor (not yet acknowledged by the broker when the gateway stopped)."""
    from gateway.store.config import StoreConfig
    from gateway.store.log import DurableLog
    from gateway.store.records import ReadingRecord

    async def read() -> tuple[dict[tuple[str, str], list[tuple[int, int]]], int]:
        log = DurableLog(log_dir / "log.sqlite", StoreConfig())
        await log.open([sink])
        upto = log.consumer(sink).acked
        out: dict[tuple[str, str], list[tuple[int, int]]] = {}
        beyond = 0
        async for batch in log.readings_since(0):
            for r in batch:
                if isinstance(r, ReadingRecord):
                    if r.id <= upto:
                        out.setdefault((r.reading.site, r.reading.device), []).append((r.seq, r.reading.ts))
                    else:
                        beyond += 1
        log.begin_close()
        await log.close()
        return out, beyond

    return asyncio.run(read())


def gateway_depth(metrics_port: int) -> float | None:
    try:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("plume_sink_log_depth{") and 'sink="central"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


# --- the run ----------------------------------------------------------------------------------------------------

async def js_leader(node: NatsNode, password: str) -> str | None:
    import nats

    nc = await nats.connect(f"nats://127.0.0.1:{node.port}", user="ingest", password=password,
                            max_reconnect_attempts=2)
    try:
        si = await nc.jetstream().stream_info("$MQTT_msgs")
        return si.cluster.leader if si.cluster else None
    finally:
        await nc.close()


async def js_state(node: NatsNode, password: str, durable: str) -> str:
    """What `$MQTT_msgs` and the consumer still hold (after a loss: were the missing readings still there?)."""
    import nats

    nc = await nats.connect(f"nats://127.0.0.1:{node.port}", user="ingest", password=password,
                            max_reconnect_attempts=2)
    try:
        js = nc.jetstream()
        si = await js.stream_info("$MQTT_msgs")
        ci = await js.consumer_info("$MQTT_msgs", durable)
        return (f"$MQTT_msgs holds {si.state.messages} messages (seq {si.state.first_seq}..{si.state.last_seq}); "
                f"consumer {durable}: {ci.num_pending} pending, {ci.num_ack_pending} unacknowledged, ack floor "
                f"stream seq {ci.ack_floor.stream_seq}, delivered up to stream seq {ci.delivered.stream_seq}")
    except Exception as e:  # reported, not fatal: the check below still runs
        return f"stream/consumer info failed: {e!r}"
    finally:
        await nc.close()


def wait_js(nodes: list[NatsNode], password: str, timeout: float = 60) -> str:
    """Until JetStream answers and the MQTT streams exist (made on the first MQTT connection); their leader."""
    from tests.bench.fleet_sim import connect_packet

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            import socket

            with socket.create_connection(("127.0.0.1", nodes[0].mqtt_port), timeout=5) as s:
                s.sendall(connect_packet("probe", "probe", password, "plume/probe/status", 30))
                s.settimeout(10)
                s.recv(4)
            leader = asyncio.run(js_leader(nodes[1], password))
            if leader:
                return leader
        except Exception as e:  # retried until the deadline
            last = e
        time.sleep(1)
    raise RuntimeError(f"JetStream/MQTT streams not ready: {last!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between a simulated device's readings")
    ap.add_argument("--duration", type=float, default=180.0, help="seconds of production")
    ap.add_argument("--gateways", type=int, default=3, help="real `plume run` gateways (3 devices at 1 s each)")
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--no-kill", action="store_true")
    ap.add_argument("--kill-consumer", action="store_true", help="also kill -9 one consumer at 3/4 of the run")
    ap.add_argument("--push", action="store_true", help="consumers join a push consumer's queue group instead of "
                    "pulling (ingest.py --push; the pull consumer is the default)")
    ap.add_argument("--stall-s", type=float, default=30.0, help="the consumers' stall watchdog (ingest.py --stall-s)")
    ap.add_argument("--core", action="store_true", help="consumers on plain NATS queue groups, no JetStream "
                    "(the comparison that shows why the durable consumer is there)")
    ap.add_argument("--keep", action="store_true", help="keep the run's folder")
    ap.add_argument("--fleet-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fleet_child:
        fleet_child(*args.fleet_child)
        return 0

    from authz import authorization

    folder = Path(tempfile.mkdtemp(prefix="plume-fleet-nats-"))
    py = sys.executable
    bin_dir = Path(py).parent
    fleet_sites = {f"site-{i:04d}": secrets.token_urlsafe(12) for i in range(1, args.sites + 1)}
    gw_sites = {f"gw-{i}": secrets.token_urlsafe(12) for i in range(1, args.gateways + 1)}
    ingest_pw = secrets.token_urlsafe(12)
    authz = folder / "authorization.conf"
    authz.write_text(authorization({**fleet_sites, **gw_sites, "probe": ingest_pw}, ingest_pw))
    cluster_ports = [free_port() for _ in range(3)]
    nodes = [NatsNode(folder / f"n{i}", f"n{i}", cluster_ports[i - 1:] + cluster_ports[:i - 1], authz)
             for i in (1, 2, 3)]
    vm = Victoria(folder / "vm")
    procs: list[subprocess.Popen[bytes]] = []
    outs: list[Any] = []

    def spawn(name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        out = open(folder / f"{name}.out", "wb")  # noqa: SIM115 - for the child's whole life
        outs.append(out)
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        procs.append(p)
        return p

    killed = "none"
    try:
        vm.start()
        for n in nodes:
            n.proc = None
        for n in nodes:  # all three at once: each waits for the others' routes
            with open(n.log_path, "ab") as log:
                n.proc = subprocess.Popen(n.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        leader = wait_js(nodes, ingest_pw)
        print(f"cluster: 3 nodes up, MQTT stream leader {leader}; folder {folder}", flush=True)
        servers = ",".join(f"nats://127.0.0.1:{n.port}" for n in nodes)
        write_url = f"{vm.url}/write?precision=ms"
        consumers = []
        for k in range(args.consumers):
            consumers.append(spawn(f"ingest-{k}", [
                py, str(NATS_PY), "--servers", servers, "--user", "ingest", "--password", ingest_pw,
                "--name", f"ingest-{k}", "--write-url", write_url, "--create", "--record",
                str(folder / f"ingest-{k}.rec"), *(["--core"] if args.core else []),
                *(["--push"] if args.push else []), "--stall-s", f"{args.stall_s:g}"]))
            time.sleep(1.0 if k == 0 else 0)  # the first one creates the consumer
        time.sleep(2)

        # real gateways against one plume-sim
        sim_port = free_port()
        (folder / "sim.yaml").write_text(sim_site_text(sim_port))
        spawn("plume-sim", [str(bin_dir / "plume-sim"), str(folder / "sim.yaml"), "--quiet"])
        time.sleep(2)
        gateways: list[tuple[str, Path, int, subprocess.Popen[bytes]]] = []
        for site, pw in gw_sites.items():
            gdir = folder / site
            gdir.mkdir()
            (gdir / "mqtt.pass").write_text(pw + "\n")
            (gdir / "site.yaml").write_text(gateway_site_text(site, sim_port, nodes, gdir))
            mport = free_port()
            gateways.append((site, gdir, mport, spawn(site, [
                py, "-m", "gateway.cli_run", str(gdir / "site.yaml"), "--metrics-port", str(mport),
                "--log-level", "warning"])))

        spec = folder / "fleet.json"
        spec.write_text(json.dumps({"servers": [["127.0.0.1", n.mqtt_port] for n in nodes], "sites": fleet_sites,
                                    "devices": args.devices, "interval": args.interval,
                                    "duration": args.duration}))
        fleet_out = folder / "fleet-result.json"
        t_start = time.monotonic()
        fleet = spawn("fleet", [py, str(Path(__file__).resolve()), "--fleet-child", str(spec), str(fleet_out)])
        print(f"fleet: {args.sites} sites x {args.devices} devices every {args.interval:g} s for "
              f"{args.duration:g} s; {args.gateways} plume run gateways (3 devices at 1 s); "
              f"{args.consumers} consumers", flush=True)

        kill_at = t_start + args.duration / 2
        while time.monotonic() < kill_at and not args.no_kill:
            time.sleep(1)
        if not args.no_kill:
            leader = asyncio.run(js_leader(nodes[1] if nodes[0].name == leader else nodes[0], ingest_pw)) or leader
            victim = next(n for n in nodes if n.name == leader)
            assert victim.proc is not None
            os.kill(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait()
            killed = f"{victim.name} (leader of $MQTT_msgs) at t={time.monotonic() - t_start:.0f} s"
            print(f"kill -9 {killed}", flush=True)
        if args.kill_consumer:
            while time.monotonic() < t_start + args.duration * 0.75:
                time.sleep(1)
            os.kill(consumers[0].pid, signal.SIGKILL)
            consumers[0].wait()
            killed += f"; consumer ingest-0 at t={time.monotonic() - t_start:.0f} s (kill -9, stays down)"
            print("kill -9 ingest-0", flush=True)
        fleet.wait()
        t_produced = time.monotonic() - t_start
        # the gateways: until their MQTT sink has nothing left, then stop them (SIGTERM: they commit and close)
        deadline = time.monotonic() + 60
        for _, _, mport, _ in gateways:
            while (gateway_depth(mport) or 0) > 0 and time.monotonic() < deadline:
                time.sleep(0.5)
        gw_cpu = {site: cpu_s(p.pid) for site, _, _, p in gateways}
        for _, _, _, p in gateways:
            p.send_signal(signal.SIGTERM)
        for _, _, _, p in gateways:
            p.wait(timeout=60)

        results = json.loads(fleet_out.read_text())
        fleet_cpu_note = f"; fleet simulator {results.pop('_cpu_s'):.0f}"
        committed: dict[tuple[str, str], list[tuple[int, int]]] = {}
        beyond = 0
        for _, gdir, _, _ in gateways:
            got, b = gateway_committed(gdir / "log", "central")
            committed.update(got)
            beyond += b
        sim_acked = sum(sum(r["acked"]) for r in results.values())
        sim_produced = sum(sum(r["produced"]) for r in results.values())
        gw_acked = sum(len(v) for v in committed.values())
        expected = sim_acked + gw_acked

        # the consumers: until they wrote everything committed (or a minute of nothing new), then stop them
        def recorded() -> list[str]:
            lines: list[str] = []
            for k in range(args.consumers):
                with contextlib.suppress(OSError):
                    lines += (folder / f"ingest-{k}.rec").read_text().splitlines()
            return lines

        last, still = -1, time.monotonic()
        while True:
            n = len({tuple(x.split()[:3]) for x in recorded()})
            if n >= expected or time.monotonic() - still > 60:
                break
            if n != last:
                last, still = n, time.monotonic()
            time.sleep(2)
        stream_state = asyncio.run(js_state(next(x for x in nodes if x.proc and x.proc.poll() is None), ingest_pw,
                                            "plume-ingest" if args.push else "plume-ingest-pull"))
        ingest_cpu = sum(cpu_s(p.pid) for p in consumers if p.poll() is None)
        nats_cpu = {n.name: cpu_s(n.proc.pid) for n in nodes if n.proc and n.proc.poll() is None}
        for p in consumers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in consumers:
            p.wait(timeout=60)

        # --- the check ------------------------------------------------------------------------------------
        rec = [x.split() for x in recorded()]
        seen: dict[tuple[str, str, int], int] = {}
        lags: list[int] = []
        arrival_out_of_order = 0
        last_seq: dict[tuple[str, str], int] = {}
        for site, device, seq, ts, done, _delivered in sorted(rec, key=lambda x: int(x[4])):
            k3 = (site, device, int(seq))
            seen[k3] = seen.get(k3, 0) + 1
            if seen[k3] == 1:
                lags.append(int(done) - int(ts))
                k2 = (site, device)
                if int(seq) < last_seq.get(k2, 0):
                    arrival_out_of_order += 1
                last_seq[k2] = max(last_seq.get(k2, 0), int(seq))
        duplicates = sum(c - 1 for c in seen.values())
        db = vm.timestamps(".*")

        lost = 0
        wrong_order = 0
        # simulated sites: device d's reading seq s was sent at ts; the consumers' record says which ts each had
        ts_of = {(s, d, int(q)): int(t) for s, d, q, t, _, _ in rec}
        for site, r in results.items():
            for d, n_acked in enumerate(r["acked"]):
                device = f"dust-{d + 1:02d}"
                have = db.get((site, device), set())
                prev = -1
                for seq in range(1, n_acked + 1):
                    ts = ts_of.get((site, device, seq))
                    if ts is None or ts not in have:
                        lost += 1
                        continue
                    if ts <= prev:
                        wrong_order += 1
                    prev = ts
        for (site, device), items in committed.items():
            have = db.get((site, device), set())
            prev_ts = -1
            for _seq, ts in sorted(items):
                if ts not in have:
                    lost += 1
                if ts <= prev_ts:
                    wrong_order += 1
                prev_ts = ts
        unique = len(seen)
        resent = sum(r["resent"] for r in results.values())
        connects = sum(r["connects"] for r in results.values())
        acks_out_of_order = sum(r["out_of_order_acks"] for r in results.values())

        print()
        print(f"sites: {args.sites} simulated x {args.devices} devices @ {args.interval:g} s "
              f"(one MQTT connection each) + {args.gateways} plume run gateways x 3 devices @ 1 s")
        print(f"node killed: {killed}")
        print(f"readings committed: {expected} (simulated PUBACKed {sim_acked} of {sim_produced} produced; "
              f"gateways' logs up to the sink cursor {gw_acked}, {beyond} beyond it at stop)")
        print(f"readings through the cluster: {unique / t_produced:.0f}/s over {t_produced:.0f} s "
              f"(offered {args.sites * args.devices / args.interval + args.gateways * 3:.0f}/s)")
        if lost:
            args.keep = True  # what went wrong stays for a look
        print(f"readings lost: {lost}   out of order in the database: {wrong_order}")
        print(f"duplicates delivered to the consumers: {duplicates} (resent by sites after the kill: {resent}; "
              f"site connections made: {connects}; PUBACKs out of order {acks_out_of_order}); "
              f"arrival at the consumers out of seq order: {arrival_out_of_order}")
        if rec:
            t0 = min(int(x[3]) for x in rec)
            buckets: dict[int, int] = {}
            for _s, _d, _q, ts, _w, _n in rec:
                b = (int(ts) - t0) // 15000
                buckets[b] = buckets.get(b, 0) + 1
            print("readings at the consumers per 15 s of reading time: "
                  + " ".join(str(buckets.get(b, 0)) for b in range(max(buckets) + 1)))
        print(f"when the consumers were stopped: {stream_state}")
        stall_lines = [line for k in range(args.consumers) if (folder / f"ingest-{k}.out").exists()
                       for line in (folder / f"ingest-{k}.out").read_text().splitlines() if "STALLED" in line]
        print(f"stall watchdog: {sum('recovered' in x for x in stall_lines)} recoveries, "
              f"{sum('recovered' not in x for x in stall_lines)} actions"
              + "".join(f"\n  {x}" for x in stall_lines[:20]))
        print(f"consumer lag reading -> database: p50 {pct(lags, .5):.0f} ms, p95 {pct(lags, .95):.0f} ms, "
              f"max {max(lags, default=0):.0f} ms")
        print(f"CPU s: nats nodes {', '.join(f'{k} {v:.0f}' for k, v in nats_cpu.items())}; consumers "
              f"{ingest_cpu:.0f}; gateways {', '.join(f'{v:.1f}' for v in gw_cpu.values())}{fleet_cpu_note}")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        for n in nodes:
            n.stop()
        vm.stop()
        for o in outs:
            o.close()
        if not args.keep and killed != "kept":
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")


if __name__ == "__main__":
    raise SystemExit(main())
