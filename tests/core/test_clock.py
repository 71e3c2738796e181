"""The fast-motion clock the end-to-end tests give `plume run` and `plume-sim` (PLUME_CLOCK_SPEEDUP)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from gateway.core import clock


@pytest.fixture(autouse=True)
def real_time_again():
    yield
    clock.set_speedup(1.0, 0)


def test_two_processes_given_the_same_value_agree_on_the_fast_time():
    anchor = time.time_ns() // 1_000_000 - 60_000  # a minute ago
    assert clock.speedup_from_environment({clock.SPEEDUP_ENV: clock.speedup_value(10, anchor)}) == 10
    child = subprocess.run(
        [sys.executable, "-c", "from gateway.core import clock; clock.speedup_from_environment(); "
                               "print(clock.now_ms())"],
        env={clock.SPEEDUP_ENV: clock.speedup_value(10, anchor)}, capture_output=True, text=True, check=True)
    mine = clock.now_ms()
    # ten minutes have passed on the fast clock since the anchor, in this process and in the child alike
    assert mine - anchor >= 600_000 and abs(int(child.stdout) - mine) < 600_000 // 10
    assert clock.speedup() == 10


def test_unset_means_real_time():
    assert clock.speedup_from_environment({}) == 1.0
    assert abs(clock.now_ms() - time.time_ns() // 1_000_000) < 1_000


@pytest.mark.parametrize("raw", ["fast", "0@1", "-2@1", "10@soon"])
def test_a_malformed_value_stops_plume_run_with_the_expected_form(raw, tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("site: {id: s}\nbuses: []\ndevices: []\n")
    r = subprocess.run([sys.executable, "-m", "gateway.cli_run", str(site)], capture_output=True, text=True,
                       env={clock.SPEEDUP_ENV: raw}, timeout=60)
    assert r.returncode == 2 and "expected FACTOR@ANCHOR_MS" in r.stderr, r.stderr


def test_the_tests_fast_clock_never_reads_earlier_than_the_child_it_drives():
    """A test brackets a child's fast time between two readings of `FastClock.now_ms`: a reading taken after the
    child's must never be earlier (it was by up to `factor` ms when whole real milliseconds were scaled; a flaky
    `before <= at <= after` at -n 8)."""
    from tests.pipeline.helpers import FastClock

    fast = FastClock(60)
    clock.set_speedup(60, fast.anchor_ms)
    for _ in range(2000):
        child = clock.base_ms()
        assert child <= fast.now_ms()


def test_asking_whether_the_system_clock_is_synchronised_starts_no_process():
    """Every health snapshot asks (adjtimex); finding libc with ctypes.util.find_library ran `ldconfig -p` each
    time: a process per snapshot (~1 ms of CPU each on this machine, more on a Pi)."""
    import resource

    clock.system_unsynchronised()  # the first call may load what it needs
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(20):
        clock.system_unsynchronised()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert (after.ru_utime + after.ru_stime) == (before.ru_utime + before.ru_stime)
    assert after.ru_minflt == before.ru_minflt  # no child waited for at all (its page faults would count here)
