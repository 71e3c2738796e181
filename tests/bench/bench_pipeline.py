"""Benchmark of the durable pipeline: prints figures, asserts nothing about speed.

    python tests/bench/bench_pipeline.py [--quick]                 # as a script
    python -m pytest tests/bench/bench_pipeline.py -s -m bench     # the same through pytest

Each gateway runs in its own fresh process (so RSS and CPU are the gateway's, not the harness's), against
Mosquitto and InfluxDB 1.6 (v1 API) started here on free loopback ports:

1. sustained: a synthetic source (10 devices x 10 channels, or `--channels N` values a reading, stamped at emit
   time; its values are made once, so the source costs the gateway next to nothing) offers a fixed rate for a
   while; the gateway commits every poll to the durable log (durability full) and delivers it to MQTT (QoS 1)
   and InfluxDB. Reported: values/s delivered by both sinks, CPU seconds per 10,000 values, peak RSS, p50/p99
   latency from poll to PUBACK (and to InfluxDB's 204).
2. loads: the loads of issue 12's table (idle 1x1 @ 10 s, (a) 5x12 @ 1 s, (b) 20x50 @ 100 ms, (c) 20x50 @ 50 ms,
   ceiling 20x100 @ 50 ms): `plume-sim` serving each device on its own Modbus TCP port -> `plume run` in its own
   process -> both sinks. Reported per load: offered and delivered values/s, poll slots scheduled/taken, CPU %,
   CPU s per 10,000 values, peak RSS (VmHWM), age poll->PUBACK p50/p95/max, log depth, start-up time.
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
CHANNELS = [f"ch{i}" for i in range(10)]  # --channels N: values a reading of the sustained runs
POOL = 64  # distinct value sets the synthetic source cycles through


# --- the gateway child process ------------------------------------------------------------------------------

class Synthetic:
    """Offers `rate` polls/s (len(CHANNELS) channels each) spread over 10 devices for `duration` seconds, stamped
    at emit. The values are drawn once (POOL sets, cycled; each reading gets its own dict): making 100,000 random
    ChannelValues a second would otherwise cost the gateway's process ~15 % of its CPU at 10 values a reading."""

    def __init__(self, site: Site, emit: Callable[[DeviceReading], None], rate: float, duration: float):
        self.site_id = site.id
        self.emit = emit
        self.rate = rate
        self.duration = duration
        self.emitted = 0
        self.done = asyncio.Event()

    async def run(self) -> None:
        rnd = random.Random(1)
        pool = [{ch: ChannelValue(round(rnd.uniform(0, 500), 1), "ug/m3", Flag.N) for ch in CHANNELS}
                for _ in range(POOL)]
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= self.duration:
                break
            due = int(elapsed * self.rate) - self.emitted
            ts = time.time_ns() // 1_000_000
            for _ in range(due):
                n = self.emitted
                self.emit(DeviceReading(self.site_id, f"dev-{n % DEVICES:02d}", "dust", ts + n % DEVICES,
                                        dict(pool[n % POOL])))
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
        "offer_s": duration,
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

STORE_EXTRA = ""  # e.g. ", commit_interval_ms: 250" (--commit-interval-ms)
PROFILE_TO: Path | None = None  # --profile: cProfile the gateway of each load into this folder
GATEWAY_ROOT: Path | None = None  # --gateway-root: run `plume run` from another checkout (before/after figures)
# --entry: how `plume run` is started: "plume" as the console script does (`gateway.cli:app`, the whole command
# line tool imported first, as systemd runs it), or "module" (`python -m gateway.cli_run`, only the run command)
ENTRY = "plume"
_PLUME = "import sys; from gateway.cli import app; sys.argv[0] = 'plume'; sys.exit(app())"
COMPILE = True  # --no-compile: run the gateway as the environment leaves it (maybe from source, see compile_bytecode)
SMAPS_TO: Path | None = None  # --smaps: keep /proc/PID/smaps of each load's gateway (at start-up and at the end)


def write_site(folder: Path, mqtt_port: int | None, influx_port: int | None, extra: str = "",
               store_dir: Path | None = None) -> Path:
    sinks = []
    if mqtt_port is not None:
        sinks.append(f"  - {{type: mqtt, name: mqtt, host: 127.0.0.1, port: {mqtt_port}, health_interval_s: 0, "
                     "inflight: 200, batch: 1000}")
    if influx_port is not None:
        sinks.append(f"  - {{type: influx, name: influx, url: 'http://127.0.0.1:{influx_port}', database: plume, "
                     "health_interval_s: 0, gzip: false}")
    path = folder / "site.yaml"
    store = store_dir or folder / "log"
    path.write_text(f"site: {{id: bench}}\n{extra}store: {{dir: '{store}', durability: full{STORE_EXTRA}}}\n"
                    "sinks:\n"
                    + "\n".join(sinks) + "\n")
    return path


def run_child(site: Path, mode: str, rate: float = 0, duration: float = 0) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", str(site), mode, str(rate), str(duration),
                           str(len(CHANNELS))],
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report_sustained(name: str, r: dict[str, Any]) -> None:
    values = r["committed"] * len(CHANNELS)
    print(f"\n== {name}")
    print(f"   {r['committed']:,} polls = {values:,} values committed in {r['commits']:,} transactions")
    print(f"   delivered to both sinks at {values / r['elapsed_s']:,.0f} values/s (until the last PUBACK/204, "
          f"{r['elapsed_s'] - r['offer_s']:.1f} s after the source stopped: InfluxDB's linger is 1 s)")
    print(f"   CPU {r['cpu_s']:.2f} s = {r['cpu_s'] / (values / 10_000):.3f} CPU s per 10,000 values; "
          f"peak RSS {r['maxrss_mb']:.1f} MB; machine load (1 min) {os.getloadavg()[0]:.2f}")
    for sname, s in r["sinks"].items():
        print(f"   {sname:7s} delivered {s['values']:,} values, dropped {s['dropped']}, latency poll->confirmation "
              f"p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms")


def bench_sustained(tmp: Path, rates: list[int], duration: float, channels: int = 10) -> None:
    global CHANNELS
    CHANNELS, before = [f"ch{i}" for i in range(channels)], CHANNELS
    try:
        _bench_sustained(tmp, rates, duration)
    finally:
        CHANNELS = before


def _bench_sustained(tmp: Path, rates: list[int], duration: float) -> None:
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
            report_sustained(f"sustained, offered {rate_values:,} values/s for {duration:g} s (synthetic source, "
                             f"{len(CHANNELS)} values a reading: {rate_values / len(CHANNELS):,.0f} readings/s)", r)
        finally:
            broker.stop()
            db.stop()


# name: (devices, registers per device, poll interval s) - the loads of issue 12's table, one TCP port per device
LOADS: dict[str, tuple[int, int, float]] = {
    "idle": (1, 1, 10.0),
    "a": (5, 12, 1.0),
    "b": (20, 50, 0.1),
    "c": (20, 50, 0.05),
    "ceiling": (20, 100, 0.05),
}


def bench_profile(folder: Path, registers: int) -> str:
    """A device of `registers` u16 holding registers read in one request (the simulator walks each one)."""
    name = f"bench-{registers}"
    folder.mkdir(parents=True, exist_ok=True)
    regs = "".join(f"  - {{channel: r{i}, address: {i}, function: 3, type: u16, scale: 0.1, unit: ug/m3}}\n"
                   for i in range(registers))
    (folder / f"{name}.yaml").write_text(f"name: {name}\nkind: dust\nmax_registers_per_request: 125\n"
                                         f"registers:\n{regs}")
    return name


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (held open together while they are picked)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def scrape(port: int) -> dict[str, float]:
    """plume_* metrics summed per (name, sink); {} while the gateway does not answer yet."""
    import httpx

    out: dict[str, float] = {}
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return out
    for line in text.splitlines():
        if line.startswith("plume_") and "{" in line:
            name, rest = line.split("{", 1)
            labels, value = rest.rsplit("} ", 1)
            key = name + ":" + next((p.split('"')[1] for p in labels.split(",") if p.startswith("sink=")), "")
            out[key] = out.get(key, 0.0) + float(value)
    return out


def run_load(tmp: Path, name: str, devices: int, registers: int, interval: float, duration: float,
             log_dir: Path | None = None) -> dict[str, Any]:
    """plume-sim (one Modbus TCP port per device) -> `plume run` (its own process) -> Mosquitto + InfluxDB."""
    folder = tmp / f"load-{name}"
    folder.mkdir()
    broker, db = Mosquitto(folder / "mosquitto"), InfluxDB(folder / "influxdb")
    broker.start()
    db.start()
    db.create_db()
    profile = bench_profile(folder / "profiles", registers)
    ports = free_ports(devices)
    buses = "".join(f"  - {{name: lan{i}, type: tcp, host: 127.0.0.1, port: {p}}}\n" for i, p in enumerate(ports))
    devs = "".join(f"  - {{name: dev-{i:02d}, bus: lan{i}, address: 1, profile: {profile}, "
                   f"poll_interval_s: {interval}, timeout_s: 1}}\n" for i in range(devices))
    store = None if log_dir is None else log_dir / f"load-{name}"
    site = write_site(folder, broker.port, db.port, extra=f"profiles_dir: [profiles]\nbuses:\n{buses}devices:\n{devs}",
                      store_dir=store)
    sim_bin = Path(sys.executable).parent / "plume-sim"
    sim = subprocess.Popen([str(sim_bin), str(site), "--quiet"], stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    metrics = free_port()
    gw: subprocess.Popen[str] | None = None
    samples: list[dict[str, float]] = []
    try:
        assert sim.stdout is not None
        while "ready:" not in (line := sim.stdout.readline()):
            if not line and sim.poll() is not None:
                raise RuntimeError(f"plume-sim exited with {sim.returncode}")
        t_start = time.monotonic()
        prof = [] if PROFILE_TO is None else ["-m", "cProfile", "-o", str(PROFILE_TO / f"{name}.prof")]
        entry = ["-c", _PLUME, "run"] if ENTRY == "plume" and not prof else ["-m", "gateway.cli_run"]
        gw = subprocess.Popen([sys.executable, *prof, *entry, str(site), "--metrics-port",
                               str(metrics), "--log-level", "warning"], start_new_session=True,
                              env=None if GATEWAY_ROOT is None else {**os.environ, "PYTHONPATH": str(GATEWAY_ROOT)},
                              cwd=GATEWAY_ROOT)
        wait_for(lambda: scrape(metrics).get("plume_log_committed_total:", 0) > 0, 60, "the gateway to poll",
                 interval=0.01)
        startup = time.monotonic() - t_start
        mem0 = mem_of(gw.pid, "start", name)
        time.sleep(min(2.0, interval * 2))  # past the start-up burst
        m0, t0, cpu0, sim0 = scrape(metrics), time.monotonic(), cpu_of(gw.pid), cpu_of(sim.pid)
        io0 = written_of(gw.pid)
        while time.monotonic() - t0 < duration:  # a scrape a second, as slow as the polls at idle (Prometheus: 15 s)
            time.sleep(min(max(1.0, interval), duration / 3))
            samples.append(scrape(metrics))
        m1, t1, cpu1, sim1 = scrape(metrics), time.monotonic(), cpu_of(gw.pid), cpu_of(sim.pid)
        io1 = written_of(gw.pid)
        rss = rss_of(gw.pid)
        mem1 = mem_of(gw.pid, "end", name)
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
    span = t1 - t0

    def delta(key: str) -> float:
        return m1.get(key, 0.0) - m0.get(key, 0.0)

    influx, mqtt = delta("plume_sink_delivered_values_total:influx"), delta("plume_sink_delivered_values_total:mqtt")
    polls = delta("plume_device_polls_total:")
    missed = delta("plume_device_poll_slots_missed_total:")
    both = min(influx, mqtt)
    cpu = cpu1 - cpu0
    return {
        "load": name, "devices": devices, "registers": registers, "interval": interval,
        "offered": devices * registers / interval, "delivered_influx": influx / span, "delivered_mqtt": mqtt / span,
        "slots": polls + missed, "taken": polls, "failed": delta("plume_device_poll_failures_total:"),
        "cpu_pct": 100 * cpu / span, "cpu_per_10k": cpu / max(both / 10_000, 1e-9), "rss_mb": rss,
        "p50": m1.get("plume_sink_latency_p50_ms:mqtt"), "p95": m1.get("plume_sink_latency_p95_ms:mqtt"),
        "max": m1.get("plume_sink_latency_max_ms:mqtt"),
        "depth": max([s.get("plume_sink_log_depth:mqtt", 0) + s.get("plume_sink_log_depth:influx", 0)
                      for s in samples] or [0]),
        "mem_start": mem0, "mem_end": mem1,
        "commits_s": delta("plume_log_commits_total:") / span, "written_kb_s": (io1 - io0) / 1024 / span,
        "startup_s": startup, "span_s": span, "load_avg": os.getloadavg()[0], "sim_pct": 100 * (sim1 - sim0) / span,
    }


def print_loads(rows: list[dict[str, Any]], where: str) -> None:
    print(f"\n== loads: plume-sim (one Modbus TCP port per device) -> plume run -> MQTT QoS 1 + InfluxDB v1, "
          f"durability full, regulatory stage on; log on {where}; started as "
          f"{'plume run' if ENTRY == 'plume' else 'python -m gateway.cli_run'}")
    print(f"{'load':8s} {'offered/s':>10s} {'delivered/s':>11s} {'slots':>7s} {'taken':>7s} {'CPU %':>6s} "
          f"{'s/10k':>6s} {'VmHWM MB':>8s} {'age p50/p95/max ms':>19s} {'depth':>6s} {'commits/s':>9s} "
          f"{'disk KB/s':>9s} {'start s':>7s} {'load':>5s} {'sim %':>5s}")
    for r in rows:
        ages = "/".join("-" if r[k] is None else f"{r[k]:.0f}" for k in ("p50", "p95", "max"))
        shape = f"{r['devices']}x{r['registers']}@{r['interval']:g}s"
        both = min(r["delivered_influx"], r["delivered_mqtt"])
        per10k = f"{r['cpu_per_10k']:>6.3f}" if both * r["span_s"] >= 10_000 else "     -"
        print(f"{r['load']:8s} {r['offered']:>10,.1f} {both:>11,.1f} "
              f"{r['slots']:>7.0f} {r['taken']:>7.0f} {r['cpu_pct']:>6.2f} {per10k} "
              f"{r['rss_mb']:>8.1f} {ages:>19s} {r['depth']:>6.0f} {r['commits_s']:>9.1f} {r['written_kb_s']:>9.0f} "
              f"{r['startup_s']:>7.2f} {r['load_avg']:>5.2f}"
              f" {r['sim_pct']:>5.0f}"
              f"  {shape}")
    print("delivered/s = values confirmed by both sinks (the slower of MQTT PUBACK and InfluxDB 204) per second; "
          "slots = scheduled poll slots, taken = polls made; s/10k = CPU s of plume run per 10,000 values "
          "delivered; age = poll to PUBACK (last 4096 messages); depth = most readings waiting in the log "
          "(both sinks); commits/s = the log's transactions (one fsync each at durability full); disk KB/s = what "
          "the gateway wrote to storage (/proc/PID/io write_bytes: the log and its WAL); start = process start to "
          "the first committed reading; load = 1-min load average of the "
          "machine; sim % = CPU of plume-sim")
    print("memory at start-up (first committed reading) -> at the end: VmRSS (anonymous + file-backed) MB, threads")
    for r in rows:
        a, b = r["mem_start"], r["mem_end"]
        print(f"{r['load']:8s} {a['VmRSS']:.1f} ({a['RssAnon']:.1f} + {a['RssFile']:.1f}), {a['Threads']:.0f} threads"
              f" -> {b['VmRSS']:.1f} ({b['RssAnon']:.1f} + {b['RssFile']:.1f}), {b['Threads']:.0f} threads;"
              f" VmHWM {b['VmHWM']:.1f}")


def compile_bytecode() -> None:
    """Byte-compile the gateway's code and the environment's packages, as `pip install` (deploy/install.sh) leaves
    an installed gateway: with PYTHONDONTWRITEBYTECODE set and an editable install, every start would otherwise
    compile each module from source, which costs seconds of CPU and ~6 MB of peak RSS that no installed gateway
    pays."""
    import sysconfig

    root = GATEWAY_ROOT or ROOT
    dirs = [root / "gateway", Path(sysconfig.get_paths()["purelib"])]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *map(str, dirs)], check=False,
                   stdout=subprocess.DEVNULL)


def bench_loads(tmp: Path, names: list[str], duration: float, log_dir: Path | None) -> None:
    if COMPILE:
        compile_bytecode()
    rows = []
    for name in names:
        devices, registers, interval = LOADS[name]
        span = max(duration, 3 * interval) if name != "idle" else max(duration, 30.0)
        for attempt in range(3):  # a free port taken by another process meanwhile: try again on new ports
            try:
                rows.append(run_load(tmp, f"{name}" if attempt == 0 else f"{name}-{attempt}", devices, registers,
                                     interval, span, log_dir))
                break
            except RuntimeError as exc:
                print(f"   load {name}: {exc}; again", flush=True)
        else:
            raise RuntimeError(f"load {name} failed three times")
    print_loads(rows, "disk" if log_dir is None else str(log_dir))


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mem_of(pid: int, moment: str, load: str) -> dict[str, float]:
    """VmRSS, its anonymous and file-backed parts (MB) and the thread count of `pid` now; with --smaps the whole
    /proc/PID/smaps is kept as SMAPS_TO/LOAD-MOMENT.smaps."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
        elif key == "Threads":
            out[key] = int(value)
    if SMAPS_TO is not None:
        SMAPS_TO.mkdir(parents=True, exist_ok=True)
        (SMAPS_TO / f"{load}-{moment}.smaps").write_text(Path(f"/proc/{pid}/smaps").read_text())
    return out


def written_of(pid: int) -> int:
    """Bytes `pid` has caused to be sent to storage so far (write_bytes of /proc/PID/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


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
    broker = Mosquitto(folder / "mosquitto")  # the same log again, to an MQTT sink that starts from its beginning
    broker.start()
    try:
        r = run_child(write_site(folder, broker.port, None), "drain")
    finally:
        broker.stop()
    messages = r["sinks"]["mqtt"]["delivered"]
    print(f"   drained into Mosquitto (QoS 1, a message a poll) in {r['elapsed_s']:.1f} s: "
          f"{messages / r['elapsed_s']:,.0f} messages/s ({r['sinks']['mqtt']['values'] / r['elapsed_s']:,.0f} "
          f"values/s); gateway CPU {r['cpu_s']:.1f} s = {1e6 * r['cpu_s'] / max(messages, 1):.0f} us a message, "
          f"peak RSS {r['maxrss_mb']:.1f} MB")


def bench_durability(tmp: Path, commits: int, log_dir: Path | None = None) -> None:
    """What an fsync per commit costs: the same commits with durability full and normal."""
    where = log_dir or tmp
    from gateway.store.config import StoreConfig
    from gateway.store.log import DurableLog

    async def run(durability: str) -> float:
        log = DurableLog(where / f"durability-{durability}" / "log.sqlite", StoreConfig(durability=durability))
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
    print(f"\n== durability: {commits} commits of 10 polls each, log on {'disk' if log_dir is None else log_dir}")
    print(f"   full (fsync every commit): {full * 1000:.2f} ms a commit; normal: {normal * 1000:.2f} ms a commit")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short runs (a smoke test of the benchmark itself)")
    p.add_argument("--child", nargs=5, metavar=("SITE", "MODE", "RATE", "DURATION", "CHANNELS"),
                   help=argparse.SUPPRESS)
    p.add_argument("--rates", type=int, nargs="+", help="offered values/s of the sustained runs")
    p.add_argument("--channels", type=int, default=10, help="values a reading of the sustained runs (default 10; "
                   "the loads' devices have 50 and 100)")
    p.add_argument("--only", choices=["sustained", "loads", "backlog", "durability"], action="append")
    p.add_argument("--loads", nargs="+", choices=list(LOADS), help="which loads of the loads table")
    p.add_argument("--duration", type=float, help="seconds measured per load (default 20; idle at least 30)")
    p.add_argument("--log-dir", type=Path, help="put the gateway's log here (e.g. a tmpfs-backed loop mount)")
    p.add_argument("--commit-interval-ms", type=int, help="store.commit_interval_ms of the gateway (default: 0)")
    p.add_argument("--profile", type=Path, help="cProfile `plume run` of each load into this folder")
    p.add_argument("--entry", choices=["plume", "module"], default="plume", help="start the gateway as the `plume` "
                   "console script does (default) or as `python -m gateway.cli_run` (the run command only)")
    p.add_argument("--no-compile", action="store_true", help="do not byte-compile the gateway and its packages first")
    p.add_argument("--smaps", type=Path, help="keep /proc/PID/smaps of each load's gateway in this folder")
    p.add_argument("--gateway-root", type=Path, help="run `plume run` from this checkout (e.g. `git archive` of an "
                   "older commit) to compare before/after on the same machine at the same time")
    args = p.parse_args(argv)
    global CHANNELS
    if args.child:
        site, mode, rate, duration, channels = args.child
        CHANNELS = [f"ch{i}" for i in range(int(channels))]
        print(json.dumps(asyncio.run(child(site, mode, float(rate), float(duration)))), flush=True)
        return
    for binary in ("mosquitto", "influxd"):
        if shutil.which(binary) is None:
            raise SystemExit(f"{binary} is not installed (see docs/services.md)")
    global STORE_EXTRA, PROFILE_TO, GATEWAY_ROOT, SMAPS_TO, ENTRY, COMPILE
    ENTRY = args.entry
    COMPILE = not args.no_compile
    SMAPS_TO = args.smaps
    GATEWAY_ROOT = args.gateway_root
    if args.commit_interval_ms is not None:
        STORE_EXTRA = f", commit_interval_ms: {args.commit_interval_ms}"
    PROFILE_TO = args.profile
    only = set(args.only or ["durability", "sustained", "loads", "backlog"])
    print(f"plume pipeline benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"{'quick' if args.quick else 'full'} run")
    with tempfile.TemporaryDirectory(prefix="plume-bench-") as tmp:
        if "durability" in only:
            bench_durability(Path(tmp), 50 if args.quick else 400, args.log_dir)
        if "sustained" in only:
            rates = args.rates or ([5_000] if args.quick else [20_000, 30_000, 40_000, 50_000])
            bench_sustained(Path(tmp), rates, 3 if args.quick else 20, args.channels)
        if "loads" in only:
            names = args.loads or (["a", "b"] if args.quick else list(LOADS))
            bench_loads(Path(tmp), names, args.duration or (3 if args.quick else 20), args.log_dir)
        if "backlog" in only:
            bench_backlog(Path(tmp), 0.05 if args.quick else 24)


if "pytest" in sys.modules:  # collected by pytest; as a script (and in the gateway child) pytest is not loaded
    import pytest

    @pytest.mark.bench
    def test_bench_pipeline() -> None:
        main([])


if __name__ == "__main__":
    main()
