"""Fixtures for the pipeline tests: real servers on free loopback ports, started here and stopped by pid.

A missing server binary skips the test with the reason locally, and fails it when CI=true.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import Proc, need
from .servers import InfluxDB, Mosquitto, VictoriaMetrics


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    need("mosquitto")
    m = Mosquitto(tmp_path / "mosquitto", persistence=True)
    m.start()
    yield m
    m.stop()


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[InfluxDB]:
    need("influxd")
    db = InfluxDB(tmp_path / "influxdb")
    db.start()
    yield db
    db.stop()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    need("victoria-metrics")
    vm = VictoriaMetrics(tmp_path / "victoria")
    vm.start()
    yield vm
    vm.stop()




@pytest.fixture
def procs() -> Iterator[Callable[..., Proc]]:
    """Start child processes; whatever is still running at the end is killed by pid."""
    started: list[Proc] = []

    def start(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Proc:
        p = Proc(args, log_path, env).start()
        started.append(p)
        return p

    yield start
    for p in started:
        if p.running():
            assert p.proc is not None
            os.kill(p.proc.pid, signal.SIGKILL)
            p.proc.wait()
