"""Helpers of the pipeline tests: readings built by hand, child processes (plume run, plume-sim)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.core.clock import SPEEDUP_ENV, speedup_value
from gateway.core.model import ChannelValue, DeviceReading, Flag

from .servers import wait_for

CI = os.environ.get("CI") == "true"
PACKAGES = {"mosquitto": "mosquitto", "mosquitto_passwd": "mosquitto", "influxd": "influxdb",
            "victoria-metrics": "victoria-metrics", "openssl": "openssl"}


def need(binary: str) -> None:
    """Skip (locally) or fail (CI=true) when a server binary is missing."""
    if shutil.which(binary) is None:
        msg = f"{binary} is not installed (apt-get install {PACKAGES.get(binary, binary)})"
        if CI:
            pytest.fail(msg)
        pytest.skip(msg)


def reading(device: str, ts: int, values: dict[str, float | str | None] | None = None, *, kind: str = "dust",
            site: str = "test-site", flag: Flag = Flag.N, unit: str = "ug/m3") -> DeviceReading:
    """A DeviceReading as acquisition would emit it (default: three dust channels derived from ts)."""
    if values is None:
        values = {"pm10": float(ts % 997), "pm25": float(ts % 499) / 2, "tsp": float(ts % 1999)}
    cvs = {ch: ChannelValue(v, unit, flag if v is not None else Flag.B) for ch, v in values.items()}
    return DeviceReading(site, device, kind, ts, cvs)


class FastClock:
    """Fast motion for a child `plume run` (PLUME_CLOCK_SPEEDUP): its clock runs `factor` times as fast from now on,
    poll intervals shrink alike, and the test reads the same clock with `now_ms()`. Windows of a minute then close
    every 60/factor real seconds while I/O timeouts and retries stay real."""

    def __init__(self, factor: float):
        self.factor = factor
        self.anchor_ms = time.time_ns() // 1_000_000

    def env(self) -> dict[str, str]:
        return {SPEEDUP_ENV: speedup_value(self.factor, self.anchor_ms)}

    def now_ms(self) -> int:
        """The child's clock, by its formula (`gateway.core.clock.base_ms`: nanoseconds scaled, then whole ms):
        scaling whole real milliseconds instead lags it by up to `factor` ms, and a time the child took just
        before this reading would look later than it."""
        anchor_ns = self.anchor_ms * 1_000_000
        return (anchor_ns + int((time.time_ns() - anchor_ns) * self.factor)) // 1_000_000

    def real_s(self, seconds: float) -> float:
        """Real seconds for `seconds` on the fast clock."""
        return seconds / self.factor


class Proc:
    """A child process (plume run, plume-sim) with its output in a file; stopped by pid."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.args = args
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self) -> Proc:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, start_new_session=True)
        return self

    def output(self, since_start: bool = True) -> str:
        text = self.log_path.read_bytes().decode(errors="replace") if self.log_path.exists() else ""
        return text[self._offset:] if since_start else text

    def wait_output(self, needle: str, timeout: float = 20.0) -> None:
        def found() -> bool:
            if self.proc is not None and self.proc.poll() is not None and needle not in self.output():
                raise AssertionError(f"{self.args[0]} exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            return needle in self.output()

        try:
            wait_for(found, timeout, f"{needle!r} in the output of {' '.join(self.args[:3])}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- output ---\n{self.output()[-3000:]}") from None

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"{self.args[0]} did not stop within {timeout} s after SIGTERM") from None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def script(name: str) -> str:
    """A console script of this environment (next to the interpreter running the tests)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def gateway_cmd(site_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli_run", str(site_file), *extra]


def sim_cmd(site_file: Path, truth: Path, *extra: str) -> list[str]:
    return [script("plume-sim"), str(site_file), "--truth", str(truth), "--quiet", *extra]


# --- end to end: the simulator's truth against what arrived -------------------------------------------------

def sim_control(port: int, device: str, fault: str | None) -> None:
    """Set (or clear) a fault through plume-sim's control port."""
    import json
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(json.dumps({"device": device, "fault": fault}).encode() + b"\n")
        answer = json.loads(s.makefile("rb").readline())
    assert answer.get("ok"), answer


def read_truth(path: Path) -> dict[str, dict[str, list[tuple[int, object]]]]:
    """device -> channel -> [(ts, value)] in serve order (write records left out)."""
    import json

    out: dict[str, dict[str, list[tuple[int, object]]]] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "channel" in rec:
            out.setdefault(rec["device"], {}).setdefault(rec["channel"], []).append((rec["ts"], rec["value"]))
    return out


def match_truth(truth: dict[str, dict[str, list[tuple[int, object]]]],
                points: dict[str, list[dict[str, object]]], max_lag_ms: int = 1500
                ) -> tuple[list[tuple[str, str, int, object]], list[tuple[str, str, int, object]]]:
    """Pair every stored value with the value the simulator served for it (same device and channel, served at
    most max_lag_ms after the poll started, equal value), in order. Returns (served but not stored,
    stored but never served)."""
    missing: list[tuple[str, str, int, object]] = []
    extra: list[tuple[str, str, int, object]] = []
    for device, channels in truth.items():
        rows = points.get(device, [])
        for channel, served in channels.items():
            stored = [(int(r["time"]), r[channel]) for r in rows if r.get(channel) is not None]  # type: ignore[arg-type]
            j = 0
            for t, v in stored:
                while j < len(served) and served[j][0] < t:
                    missing.append((device, channel, *served[j]))
                    j += 1
                if j < len(served) and served[j][0] - t <= max_lag_ms and served[j][1] == v:
                    j += 1
                else:
                    extra.append((device, channel, t, v))
            missing.extend((device, channel, *s) for s in served[j:])
    for device in points:
        if device not in truth:
            extra.append((device, "*", 0, None))
    return missing, extra


def log_records(path: Path) -> list[tuple[int, int, DeviceReading]]:
    """Everything a durable log file holds: (id, seq, reading), read without changing it."""
    from gateway.store.codec import decode
    from gateway.store.db import LogDb

    db = LogDb(path)
    state = db.open()
    try:
        return [(rid, seq, decode(state.schemas[sid], ts, flags, vals, extra))
                for rid, ts, seq, sid, flags, vals, extra in db.read(0, 1 << 62)]
    finally:
        db.close()
