"""Cost per value of each step a poll goes through in `plume run`, for instruction counts (the machine is shared,
so wall-clock figures are noise; callgrind's instruction counts are not):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python tests/bench/bench_hotpath.py STEP POLLS
    (the "Collected" line of the output is the instruction count; run it with POLLS=0 for the start-up to subtract)

STEP is one of decode (registers -> DeviceReading), store (the log's row), mqtt (the data payload), influx (the line
protocol), windows (the 1-minute window engine) or all. A poll is one 50-register u16 device (scale 0.1), as at
load (b) of issue 12; the polls are decoded once before the step is measured (except for `decode`). Prints the
wall time per value as well (rough)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.core.model import DeviceReading  # noqa: E402
from gateway.processing.windows import WindowEngine  # noqa: E402
from gateway.sinks.contract import data_payload  # noqa: E402
from gateway.sinks.lineproto import reading_line  # noqa: E402
from gateway.store.codec import encode  # noqa: E402
from gateway.store.records import ReadingRecord  # noqa: E402
from tests.bench.bench_decode import REGISTERS, decoder  # noqa: E402

T0 = 1_767_225_600_000
STEPS = ("decode", "store", "mqtt", "influx", "windows")


def main() -> None:
    step = sys.argv[1] if len(sys.argv) > 1 else "all"
    polls = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    dec = decoder()
    req = dec.plan[0]
    words = [[(i * 37 + n) % 5000 for i in range(REGISTERS)] for n in range(50)]
    steps = STEPS if step == "all" else (step,)
    readings: list[DeviceReading] = []
    if "decode" not in steps:
        readings = [dec.reading(T0 + n * 100, [(req, words[n % 50])]) for n in range(polls)]
    for s in steps:
        t = time.perf_counter()
        if s == "decode":
            for n in range(polls):
                readings.append(dec.reading(T0 + n * 100, [(req, words[n % 50])]))
        elif s == "store":
            for n, r in enumerate(readings):
                encode(n + 1, n + 1, 1, r)
        elif s == "mqtt":
            for n, r in enumerate(readings):
                data_payload(ReadingRecord(n + 1, r.ts, r.site, n + 1, r))
        elif s == "influx":
            for r in readings:
                reading_line(r)
        elif s == "windows":
            engine = WindowEngine(site="site")
            for r in readings:
                engine.feed(r)
        took = time.perf_counter() - t
        print(f"{s:8s} {polls} polls x {REGISTERS} values: {took / max(polls * REGISTERS, 1) * 1e6:.3f} us a value")


if __name__ == "__main__":
    main()
