"""Cost of the CEMS stage per stack reading (the derived standard-condition, reference-O2 and rate channels), for
instruction counts (the machine is shared, so wall-clock figures are noise; callgrind's counts are not):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python tests/bench/bench_cems.py READINGS
    (the "Collected" line is the instruction count; run it with READINGS=0 for the start-up to subtract)

A reading is one `cems-analyzer` poll (every channel of the built-in profile), the stack configured as a coal-fired
boiler with O2, moisture, temperature, pressure and velocity, and SO2, NOx and particulate (in-situ, wet). Prints
the wall time per reading as well (rough)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.core.model import ChannelValue, DeviceReading, Flag  # noqa: E402
from gateway.processing.cems import StackConfig, StackDeriver  # noqa: E402
from gateway.profile import load_profile  # noqa: E402

T0 = 1_767_225_600_000
STACK = {"device": "stack-1", "boiler": "coal_power", "o2": "o2", "moisture": "flue_humidity",
         "temperature": "flue_temperature", "static_pressure": "flue_pressure", "velocity": "flue_velocity",
         "area_m2": 1.2, "pollutants": {"so2": {"channel": "so2"}, "nox": {"channel": "nox"},
                                        "particulate": {"channel": "particulate", "conditions": "actual",
                                                        "basis": "wet"}}}


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    units = {r.channel: r.unit for r in load_profile("cems-analyzer").registers}
    readings = [DeviceReading("site", "stack-1", "cems", T0 + n * 5000,
                              {ch: ChannelValue(12.5 + n % 7, u, Flag.N) for ch, u in units.items()})
                for n in range(count)]
    deriver = StackDeriver([StackConfig.model_validate(STACK)])
    t = time.perf_counter()
    for r in readings:
        deriver.apply(r)
    took = time.perf_counter() - t
    added = len(readings[0].values) - len(units) if readings else 0
    print(f"cems: {count} readings of {len(units)} channels (+{added} derived): "
          f"{took / max(count, 1) * 1e6:.1f} us a reading")


if __name__ == "__main__":
    main()
