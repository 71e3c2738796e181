"""Benchmark of the durable pipeline: prints figures, asserts nothing about speed.

    python tests/bench/bench_pipeline.py [--quick]                 # as a script
    python -m pytest tests/bench/bench_pipeline.py -s -m bench     # the same through pytest

Each gateway runs in its own fresh process (so RSS and CPU are the gateway's, not the harness's), against
Mosquitto and InfluxDB 1.6 (v1 API) started here on free loopback ports:

1. sustained: a synthetic source (10 devices x 10 channels, stamped at emit time) offers a fixed rate for a
   while; the gateway commits every poll to the durable log (durability full) and delivers it to MQTT (QoS 1)
   and InfluxDB. Reported: values/s delivered by both sinks, CPU seconds per 10,000 values, peak RSS, p50/p99
   latency from poll to PUBACK (and to InfluxDB's 204).
2. simulator: `plume-sim` serving 10 dust monitors over Modbus TCP -> `plume run` -> both sinks: what the whole
   chain does with real polling (acquisition bound).
3. backlog: one simulated day of a 10-device site (10 channels at 1 s: 864,000 polls, 8.64 M values) already in
   the log, InfluxDB sink only: the drain rate after an outage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.core.model import ChannelValue, DeviceReading, Flag  # noqa: E402
from gateway.site.load import load_site  # noqa: E402
from gateway.site.model import Site  # noqa: E402
from tests.pipeline.servers import InfluxDB, Mosquitto, free_port, wait_for  # noqa: E402

DEVICES = 10
CHANNELS = [f"ch{i}" for i in range(10)]


# --- the gateway child process ------------------------------------------------------------------------------

class Synthetic:
    """Offers `rate` polls/s (10 channels each) spread over 10 devices for `duration` seconds, stamped at emit."""

    def __init__(self, site: Site, emit: Callable[[DeviceReading], None], rate: float, duration: float):
        self.site_id = site.id
        self.emit = emit
        self.rate = rate
        self.duration = duration
        self.emitted = 0
        self.done = asyncio.Event()

    async def run(self) -> None:
        rnd = random.Random(1)
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= self.duration:
                break
            due = int(elapsed * self.rate) - self.emitted
            ts = time.time_ns() // 1_000_000
            for _ in range(due):
                n = self.emitted
                values = {ch: ChannelValue(round(rnd.uniform(0, 500), 1), "ug/m3", Flag.N) for ch in CHANNELS}
                self.emit(DeviceReading(self.site_id, f"dev-{n % DEVICES:02d}", "dust", ts + n % DEVICES, values))
                self.emitted += 1
            await asyncio.sleep(0.01)
        self.done.set()

    def health(self) -> Mapping[str, Any]:
        return {}


class AllLatencies(array):  # type: ignore[type-arg]
    """Every latency of a run, 8 bytes each (a deque of floats would cost the gateway ~32 bytes each)."""

    def __new__(cls) -> AllLatencies:
        return super().__new__(cls, "d")


class Idle:
    def __init__(self, site: Site, emit: Callable[[DeviceReading], None]):
        pass

    async def run(self) -> None:
        return

    def health(self) -> Mapping[str, Any]:
        return {}


async def child(site_file: str, mode: str, rate: float, duration: float) -> dict[str, Any]:
    from gateway.pipeline.gateway import Gateway

    site = load_site(site_file)
    holder: dict[str, Synthetic] = {}

    def source(s: Site, emit: Callable[[DeviceReading], None]) -> Synthetic | Idle:
        if mode == "drain":
            return Idle(s, emit)
        holder["src"] = Synthetic(s, emit, rate, duration)
        return holder["src"]

    gw = Gateway(site, source=source, grace_s=60)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    await gw.started.wait()
    if mode != "drain":  # keep every latency of this run, not only the last 4096 (a backlog has no live latency)
        for s in gw.sinks:
            s.status.latencies_ms = AllLatencies()  # type: ignore[assignment]
    assert gw.log is not None
    lg = gw.log
    t0 = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    if mode == "drain":
        backlog = {s.name: lg.depth(s.consumer) for s in gw.sinks}
        print(json.dumps({"event": "draining", "backlog": backlog}), flush=True)
    else:
        await holder["src"].done.wait()
    while any(lg.depth(s.consumer) > 0 or s.consumer.acked < lg.committed_id for s in gw.sinks) or lg.stats().buffered:
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    out: dict[str, Any] = {
        "elapsed_s": elapsed,
        "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "maxrss_mb": cpu1.ru_maxrss / 1024,
        "committed": lg.committed_records,
        "commits": lg.commits,
        "sinks": {},
    }
    for s in gw.sinks:
        lat = sorted(s.status.latencies_ms)
        out["sinks"][s.name] = {
            "delivered": s.consumer.delivered, "values": s.consumer.delivered_values, "dropped": s.consumer.dropped,
            "p50_ms": lat[len(lat) // 2] if lat else None,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
        }
    stop.set()
    await task
    return out


# --- the harness --------------------------------------------------------------------------------------------

def write_site(folder: Path, mqtt_port: int | None, influx_port: int, extra: str = "") -> Path:
    sinks = []
    if mqtt_port is not None:
        sinks.append(f"  - {{type: mqtt, name: mqtt, host: 127.0.0.1, port: {mqtt_port}, health_interval_s: 0, "
                     "inflight: 200, batch: 1000}")
    sinks.append(f"  - {{type: influx, name: influx, url: 'http://127.0.0.1:{influx_port}', database: plume, "
                 "health_interval_s: 0, gzip: false}")
    path = folder / "site.yaml"
    path.write_text(f"site: {{id: bench}}\n{extra}store: {{dir: '{folder}/log', durability: full}}\nsinks:\n"
                    + "\n".join(sinks) + "\n")
    return path


def run_child(site: Path, mode: str, rate: float = 0, duration: float = 0) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", str(site), mode, str(rate), str(duration)],
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report_sustained(name: str, r: dict[str, Any]) -> None:
    values = r["committed"] * len(CHANNELS)
    print(f"\n== {name}")
    print(f"   {r['committed']:,} polls = {values:,} values committed in {r['commits']:,} transactions")
    print(f"   delivered to both sinks at {values / r['elapsed_s']:,.0f} values/s (until the last PUBACK/204)")
    print(f"   CPU {r['cpu_s']:.2f} s = {r['cpu_s'] / (values / 10_000):.3f} CPU s per 10,000 values; "
          f"peak RSS {r['maxrss_mb']:.1f} MB")
    for sname, s in r["sinks"].items():
        print(f"   {sname:7s} delivered {s['values']:,} values, dropped {s['dropped']}, latency poll->confirmation "
              f"p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms")


def bench_sustained(tmp: Path, rates: list[int], duration: float) -> None:
    for rate_values in rates:
        folder = tmp / f"sustained-{rate_values}"
        folder.mkdir()
        broker, db = Mosquitto(folder / "mosquitto"), InfluxDB(folder / "influxdb")
        broker.start()
        db.start()
        db.create_db()
        try:
            site = write_site(folder, broker.port, db.port)
            r = run_child(site, "sustained", rate_values / len(CHANNELS), duration)
            report_sustained(f"sustained, offered {rate_values:,} values/s for {duration:g} s (synthetic source)", r)
        finally:
            broker.stop()
            db.stop()


def bench_simulator(tmp: Path, duration: float, devices: int = 10, interval: float = 0.05) -> None:
    folder = tmp / "simulator"
    folder.mkdir()
    broker, db = Mosquitto(folder / "mosquitto"), InfluxDB(folder / "influxdb")
    broker.start()
    db.start()
    db.create_db()
    ports = [free_port() for _ in range(devices)]
    buses = "".join(f"  - {{name: lan{i}, type: tcp, host: 127.0.0.1, port: {p}}}\n" for i, p in enumerate(ports))
    devs = "".join(f"  - {{name: dust-{i}, bus: lan{i}, address: 1, profile: dust-monitor, "
                   f"poll_interval_s: {interval}, timeout_s: 1}}\n" for i in range(devices))
    site = write_site(folder, broker.port, db.port, extra=f"buses:\n{buses}devices:\n{devs}")
    sim_bin = Path(sys.executable).parent / "plume-sim"
    sim = subprocess.Popen([str(sim_bin), str(site), "--quiet"], stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    metrics = free_port()
    gw: subprocess.Popen[str] | None = None
    try:
        assert sim.stdout is not None
        while "ready:" not in (line := sim.stdout.readline()):
            if not line and sim.poll() is not None:
                raise RuntimeError(f"plume-sim exited with {sim.returncode}")
        gw = subprocess.Popen([sys.executable, "-m", "gateway.cli_run", str(site), "--metrics-port", str(metrics),
                               "--log-level", "warning"], start_new_session=True)
        import httpx

        def scrape() -> dict[str, float]:
            out: dict[str, float] = {}
            try:
                text = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
            except httpx.HTTPError:
                return out
            for line in text.splitlines():
                if line.startswith("plume_") and "{" in line:
                    name, rest = line.split("{", 1)
                    labels, value = rest.rsplit("} ", 1)
                    key = name + ":" + next((p.split('"')[1] for p in labels.split(",") if p.startswith("sink=")), "")
                    out[key] = out.get(key, 0.0) + float(value)
            return out

        wait_for(lambda: scrape().get("plume_log_committed_total:", 0) > 0, 30, "the gateway to poll")
        m0, t0, cpu0 = scrape(), time.monotonic(), cpu_of(gw.pid)
        time.sleep(duration)
        m1, t1, cpu1 = scrape(), time.monotonic(), cpu_of(gw.pid)
        rss = rss_of(gw.pid)
        sim_cpu = cpu_of(sim.pid)
    finally:
        for p in (gw, sim):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        broker.stop()
        db.stop()
    values = m1["plume_sink_delivered_values_total:influx"] - m0["plume_sink_delivered_values_total:influx"]
    mq = m1["plume_sink_delivered_values_total:mqtt"] - m0["plume_sink_delivered_values_total:mqtt"]
    polls = m1["plume_device_polls_total:"] - m0["plume_device_polls_total:"]
    fails = m1["plume_device_poll_failures_total:"] - m0["plume_device_poll_failures_total:"]
    print(f"\n== simulator: plume-sim ({devices} dust monitors, Modbus TCP, one bus each, poll every {interval} s) "
          f"-> plume run -> MQTT + InfluxDB, {duration:g} s")
    print(f"   {polls / (t1 - t0):,.0f} polls/s ({fails:.0f} failed); delivered {values / (t1 - t0):,.0f} values/s "
          f"to InfluxDB, {mq / (t1 - t0):,.0f} to MQTT")
    print(f"   plume run: CPU {cpu1 - cpu0:.2f} s = {(cpu1 - cpu0) / max(values / 10_000, 1e-9):.3f} CPU s per 10,000 "
          f"values; RSS {rss:.1f} MB (plume-sim used {sim_cpu:.1f} CPU s in all)")
    print(f"   latency poll->PUBACK p50 {m1.get('plume_sink_latency_p50_ms:mqtt', 0):.0f} ms, "
          f"p99 {m1.get('plume_sink_latency_p99_ms:mqtt', 0):.0f} ms (last 4096 messages)")


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fill_day(folder: Path, hours: float) -> int:
    """Write `hours` of a 10-device, 10-channel, 1 s site into the log, as acquisition would have."""
    from gateway.store.config import StoreConfig
    from gateway.store.log import DurableLog

    async def fill() -> int:
        log = DurableLog(folder / "log" / "log.sqlite", StoreConfig(durability="normal", max_disk_mb=4096))
        await log.open(["influx"])
        rnd = random.Random(2)
        t0 = int(time.time() * 1000) - int(hours * 3600_000)
        n = 0
        for s in range(int(hours * 3600)):
            for d in range(DEVICES):
                values = {ch: ChannelValue(round(rnd.uniform(0, 500), 1), "ug/m3", Flag.N) for ch in CHANNELS}
                log.append(DeviceReading("bench", f"dev-{d:02d}", "dust", t0 + s * 1000 + d, values))
                n += 1
            if s % 500 == 499:
                await log.flush()
        await log.close()
        return n

    return asyncio.run(fill())


def bench_backlog(tmp: Path, hours: float) -> None:
    folder = tmp / "backlog"
    folder.mkdir()
    t = time.monotonic()
    n = fill_day(folder, hours)
    size = (folder / "log" / "log.sqlite").stat().st_size
    print(f"\n== backlog: {hours:g} h of 10 devices x 10 channels at 1 s = {n:,} polls, {n * 10:,} values; "
          f"log {size / 1e6:.0f} MB ({size / n:.0f} bytes a poll), written in {time.monotonic() - t:.0f} s")
    db = InfluxDB(folder / "influxdb")
    db.start()
    db.create_db()
    try:
        site = write_site(folder, None, db.port)
        r = run_child(site, "drain")
        count = db.count("dust", "ch0")
    finally:
        db.stop()
    values = r["sinks"]["influx"]["values"]
    print(f"   drained into InfluxDB 1.6 in {r['elapsed_s']:.1f} s: {values / r['elapsed_s']:,.0f} values/s "
          f"({values / 10 / r['elapsed_s']:,.0f} points/s); gateway CPU {r['cpu_s']:.1f} s, peak RSS "
          f"{r['maxrss_mb']:.1f} MB; InfluxDB holds {count:,} points")


def bench_durability(tmp: Path, commits: int) -> None:
    """What an fsync per commit costs: the same commits with durability full and normal."""
    from gateway.store.config import StoreConfig
    from gateway.store.log import DurableLog

    async def run(durability: str) -> float:
        log = DurableLog(tmp / f"durability-{durability}" / "log.sqlite", StoreConfig(durability=durability))
        await log.open([])
        values = {ch: ChannelValue(1.5, "ug/m3", Flag.N) for ch in CHANNELS}
        t = time.perf_counter()
        for i in range(commits):
            for d in range(DEVICES):  # one poll burst of a 10-device site per commit
                log.append(DeviceReading("bench", f"dev-{d}", "dust", i * 1000 + d, dict(values)))
            await log.flush()
        took = time.perf_counter() - t
        await log.close()
        return took / commits

    full, normal = asyncio.run(run("full")), asyncio.run(run("normal"))
    print(f"\n== durability: {commits} commits of 10 polls each")
    print(f"   full (fsync every commit): {full * 1000:.2f} ms a commit; normal: {normal * 1000:.2f} ms a commit")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short runs (a smoke test of the benchmark itself)")
    p.add_argument("--child", nargs=4, metavar=("SITE", "MODE", "RATE", "DURATION"), help=argparse.SUPPRESS)
    p.add_argument("--rates", type=int, nargs="+", help="offered values/s of the sustained runs")
    p.add_argument("--only", choices=["sustained", "simulator", "backlog", "durability"], action="append")
    args = p.parse_args(argv)
    if args.child:
        site, mode, rate, duration = args.child
        print(json.dumps(asyncio.run(child(site, mode, float(rate), float(duration)))), flush=True)
        return
    for binary in ("mosquitto", "influxd"):
        if shutil.which(binary) is None:
            raise SystemExit(f"{binary} is not installed (see docs/services.md)")
    only = set(args.only or ["durability", "sustained", "simulator", "backlog"])
    print(f"plume pipeline benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"{'quick' if args.quick else 'full'} run")
    with tempfile.TemporaryDirectory(prefix="plume-bench-") as tmp:
        if "durability" in only:
            bench_durability(Path(tmp), 50 if args.quick else 400)
        if "sustained" in only:
            rates = args.rates or ([5_000] if args.quick else [20_000, 30_000, 40_000, 50_000])
            bench_sustained(Path(tmp), rates, 3 if args.quick else 20)
        if "simulator" in only:
            bench_simulator(Path(tmp), 3 if args.quick else 15)
        if "backlog" in only:
            bench_backlog(Path(tmp), 0.05 if args.quick else 24)


if "pytest" in sys.modules:  # collected by pytest; as a script (and in the gateway child) pytest is not loaded
    import pytest

    @pytest.mark.bench
    def test_bench_pipeline() -> None:
        main([])


if __name__ == "__main__":
    main()
