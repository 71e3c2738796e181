"""gateway.systemd_notify against a real unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.systemd_notify import Notifier


class FakeSystemd:
    """A bound AF_UNIX datagram socket, like the one systemd listens on; collects what services send."""

    def __init__(self, address: str):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(2.0)

    def receive(self, timeout: float | None = None) -> list[str]:
        """The assignments of the next datagram (waiting `timeout` s, default: the socket's timeout)."""
        before = self.sock.gettimeout()
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        finally:
            self.sock.settimeout(before)
        return data.decode().split("\n")

    def pending(self) -> list[list[str]]:
        """Every datagram already queued, without waiting."""
        out: list[list[str]] = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode().split("\n"))
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(2.0)
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    s = FakeSystemd(str(tmp_path / "notify.sock"))
    yield s
    s.close()


def test_ready_sends_ready_and_one_line_status(systemd: FakeSystemd) -> None:
    n = Notifier(systemd.address)
    assert n.ready("running: 5 devices,\n2 sinks")
    assert systemd.receive() == ["READY=1", "STATUS=running: 5 devices, 2 sinks"]


def test_stopping_status_and_watchdog_messages(systemd: FakeSystemd) -> None:
    n = Notifier(systemd.address)
    assert n.status("delivering the backlog")
    assert n.watchdog()
    assert n.stopping()
    assert systemd.receive() == ["STATUS=delivering the backlog"]
    assert systemd.receive() == ["WATCHDOG=1"]
    assert systemd.receive() == ["STOPPING=1"]
    n.close()


def test_abstract_namespace_socket_is_reached() -> None:
    address = f"@plume-test-{os.getpid()}-{time.monotonic_ns()}"
    s = FakeSystemd(address)
    try:
        assert Notifier(address).ready()
        assert s.receive() == ["READY=1"]
    finally:
        s.close()


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.watchdog_interval_s is None
    assert not n.ready("x") and not n.watchdog() and not n.stopping()


def test_unreachable_socket_returns_false_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert not n.ready()
    assert not n.watchdog()
    warnings = [r for r in caplog.records if r.name == "plume.systemd"]
    assert len(warnings) == 1 and "cannot notify" in warnings[0].getMessage()


def test_watchdog_interval_is_half_of_watchdog_usec_for_our_pid(systemd: FakeSystemd) -> None:
    env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "4242"}
    assert Notifier.from_env(env, pid=4242).watchdog_interval_s == 10.0
    assert Notifier.from_env({**env, "WATCHDOG_PID": ""}, pid=1).watchdog_interval_s == 10.0
    # WATCHDOG_PID names another process (e.g. a wrapper): not ours to ping.
    assert Notifier.from_env(env, pid=4243).watchdog_interval_s is None
    assert Notifier.from_env({**env, "WATCHDOG_USEC": "soon"}).watchdog_interval_s is None


async def test_watchdog_loop_pings_while_alive_and_stops_when_not(systemd: FakeSystemd) -> None:
    n = Notifier(systemd.address, watchdog_usec=40_000)  # ping every 20 ms
    healthy = True
    task = asyncio.create_task(n.watchdog_loop(lambda: healthy))
    await asyncio.sleep(0.15)
    pings = systemd.pending()
    assert len(pings) >= 3 and all(p == ["WATCHDOG=1"] for p in pings)
    healthy = False  # a stuck gateway stops pinging, so systemd's WatchdogSec kills and restarts it
    await asyncio.sleep(0.03)
    systemd.pending()
    await asyncio.sleep(0.1)
    assert systemd.pending() == []
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_watchdog_loop_returns_at_once_without_a_watchdog(systemd: FakeSystemd) -> None:
    await asyncio.wait_for(Notifier(systemd.address).watchdog_loop(), 1.0)


def test_a_child_process_notifies_through_the_environment(systemd: FakeSystemd) -> None:
    """As under systemd: the variables come from the environment of a fresh process."""
    code = "from gateway.systemd_notify import Notifier; import sys; sys.exit(0 if Notifier.from_env().ready() else 1)"
    env = {**os.environ, "NOTIFY_SOCKET": systemd.address}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)
    assert systemd.receive() == ["READY=1"]


def test_plume_run_is_ready_pings_the_watchdog_and_says_stopping(systemd: FakeSystemd, tmp_path: Path) -> None:
    """`plume run` under a Type=notify unit with WatchdogSec: READY=1, WATCHDOG=1 at half the period, STOPPING=1."""
    import signal

    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {id: t1}\n"
        "buses: [{name: lan, type: tcp, host: 127.0.0.1, port: 1}]\n"
        "devices: [{name: d1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 1, timeout_s: 0.2}]\n"
        f"store: {{dir: {tmp_path}/log}}\n")
    env = {**os.environ, "NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "300000"}
    plume = Path(sys.executable).parent / "plume"
    proc = subprocess.Popen([str(plume), "run", str(site)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        first = systemd.receive(timeout=30)  # start-up (imports, the log) on a loaded machine
        assert first[0] == "READY=1" and first[1].startswith("STATUS=")
        assert systemd.receive() == ["WATCHDOG=1"]
        t0 = time.monotonic()
        assert systemd.receive() == ["WATCHDOG=1"]
        assert 0.05 < time.monotonic() - t0 < 0.3, "every WATCHDOG_USEC/2"
        proc.send_signal(signal.SIGTERM)
        while (msg := systemd.receive()) == ["WATCHDOG=1"]:
            pass
        assert msg[0] == "STOPPING=1"
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_plume_run_on_sighup_says_reloading_then_ready_and_keeps_running(systemd: FakeSystemd,
                                                                         tmp_path: Path) -> None:
    """`systemctl reload plume` (ExecReload sends SIGHUP): RELOADING=1, then READY=1 once the new file runs;
    never STOPPING=1, which would tell systemd the service is going away."""
    import signal

    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {id: t1}\n"
        "buses: [{name: lan, type: tcp, host: 127.0.0.1, port: 1}]\n"
        "devices: [{name: d1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 1, timeout_s: 0.2}]\n"
        f"store: {{dir: {tmp_path}/log}}\n")
    env = {**os.environ, "NOTIFY_SOCKET": systemd.address}
    plume = Path(sys.executable).parent / "plume"
    proc = subprocess.Popen([str(plume), "run", str(site)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    systemd.sock.settimeout(30)  # a loaded machine takes seconds to start a Python process
    try:
        assert systemd.receive()[0] == "READY=1"
        proc.send_signal(signal.SIGHUP)
        assert systemd.receive()[0] == "RELOADING=1"
        assert systemd.receive()[0] == "READY=1"
        assert proc.poll() is None, "still running after the reload"
        proc.send_signal(signal.SIGTERM)
        assert systemd.receive()[0] == "STOPPING=1"
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
