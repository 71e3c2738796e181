"""Benchmark: poll-cycle time on a paced 9600-baud RTU line against the theoretical wire time.

Run: .venv/bin/python -m pytest tests/bench/bench_rtu_cycle.py -s -q
(or directly: .venv/bin/python tests/bench/bench_rtu_cycle.py). Prints figures; asserts nothing about time.

The simulator paces every answer as a real 9600-baud line would (request bytes + 3.5-character turnaround +
response bytes); the theoretical time is bytes x 11 bits / baud plus a 3.5-character silence after each frame.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import yaml
from plume_sim import Simulator

from gateway.acquisition.planner import one_request_per_item, rtu_wire_time_s
from gateway.acquisition.poller import Acquisition
from gateway.config import RtuBus
from gateway.site.load import load_site

ROOT = Path(__file__).resolve().parents[2]
CYCLES = 20


def example_rtu_site(tmp: Path, stopbits: int, baudrate: int = 9600) -> Path:
    doc = yaml.safe_load((ROOT / "deploy/examples/sim-site.yaml").read_text())
    rtu = next(b for b in doc["buses"] if b["type"] == "rtu")
    rtu["port"] = str(tmp / "ttyBench")
    rtu["baudrate"] = baudrate
    rtu["stopbits"] = stopbits
    doc["buses"] = [rtu]
    doc["devices"] = [d for d in doc["devices"] if d["bus"] == rtu["name"]]
    path = tmp / "bench-site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def measure(path: Path, naive: bool) -> tuple[float, float, int]:
    site = load_site(path)
    acq = Acquisition(site, lambda r: None)
    (worker,) = acq.modbus_workers
    for d in worker.devices:
        if naive:
            d.decoder.plan = one_request_per_item(d.decoder.profile)
    requests = [r for d in worker.devices for r in d.decoder.plan]
    bus = site.bus(worker.bus.name)
    assert isinstance(bus, RtuBus)
    bits = 1 + bus.bytesize + (bus.parity != "N") + bus.stopbits
    theory = rtu_wire_time_s(requests, bus.baudrate, bits_per_char=bits)
    cycles: list[float] = []
    async with Simulator(site, pace=True):
        for d in worker.devices:  # warm up: open the port, first transaction
            await worker.poll(d, d.retries)
        for _ in range(CYCLES):
            t0 = time.perf_counter()
            for d in worker.devices:
                reading = await worker.poll(d, d.retries)
                assert reading.ok, reading.error
            cycles.append(time.perf_counter() - t0)
        worker.link.close()
    return statistics.median(cycles), theory, len(requests)


def report(tmp: Path) -> list[str]:
    lines = [f"RTU poll cycle, example site rs485-1 (dust-1 cwt-dust-weather + stack-1 cems-analyzer), 9600 baud, "
             f"median of {CYCLES} cycles"]
    lines.append(f"{'line':<6}{'plan':<26}{'requests':>9}{'wire ms':>10}{'achieved ms':>13}{'overhead':>10}")
    # Modbus RTU characters are 11 bits (8E1 or 8N2); a pty refuses parity settings, so 8N2 stands for them.
    for stopbits, framing in ((2, "8N2"), (1, "8N1")):
        path = example_rtu_site(tmp, stopbits)
        for label, naive in (("coalesced (plume plan)", False), ("one request per register", True)):
            achieved, theory, n = asyncio.run(measure(path, naive))
            lines.append(f"{framing:<6}{label:<26}{n:>9}{theory * 1000:>10.1f}{achieved * 1000:>13.1f}"
                         f"{(achieved / theory - 1) * 100:>9.1f}%")
    lines.append("wire ms = bytes x bits per character (11 for 8N2, 10 for 8N1) / baud + 3.5 characters after "
                 "each frame")
    return lines


def test_rtu_cycle_time_against_wire_time(tmp_path: Path) -> None:
    print()
    print("\n".join(report(tmp_path)))


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print("\n".join(report(Path(d))))
    sys.exit(0)
