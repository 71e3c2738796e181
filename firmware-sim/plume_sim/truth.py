"""The truth log: one JSON line per value served, so a test can compare what the gateway stored with what the
devices said. Values are the gateway's own decoding of the served words; NaN becomes null. Flushed per line,
because tests tail the file while the simulator runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, Any

from plume_sim.device import Served


def _clean(v: float | str | None) -> float | str | None:
    return None if isinstance(v, float) and not math.isfinite(v) else v


class TruthLog:
    """Appends to PATH; a None path logs nothing (and costs nothing)."""

    def __init__(self, path: Path | str | None):
        self.path = Path(path) if path is not None else None
        self._fh: IO[str] | None = None

    def open(self) -> None:
        if self.path is not None and self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _line(self, obj: dict[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
            self._fh.flush()

    def served(self, ts_ms: int, device: str, values: Served) -> None:
        if self._fh is None:
            return
        for channel, value in values.items():
            self._line({"ts": ts_ms, "device": device, "channel": channel, "value": _clean(value)})

    def write(self, ts_ms: int, device: str, record: dict[str, Any]) -> None:
        channels = {k: _clean(v) for k, v in record.get("channels", {}).items()}
        self._line({"ts": ts_ms, "device": device, "write": {**record, "channels": channels}})
