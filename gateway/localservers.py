"""Local Mosquitto and InfluxDB 1.x servers as child processes: `plume demo --with-servers`, the tests, the benchmark.

Each runs from its own folder on a free loopback port, is started as a child process and stopped by its pid;
`stop()` + `start()` restarts it on the same port with the same data. Nothing here listens beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx

_http: httpx.Client | None = None


def loopback_http() -> httpx.Client:
    """One HTTP client per process for loopback servers: a new httpx client loads the CA store (~50 ms of CPU),
    which polling loops (readiness, row counts, /metrics) would otherwise pay on every request. It keeps no cookies,
    so each request is as anonymous as one from a fresh client."""
    global _http
    if _http is None:
        _http = httpx.Client(cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))
    return _http


PORTS_FILE = Path(tempfile.gettempdir()) / f"plume-ports-{os.getuid()}"  # ports handed out lately, by any process
PORT_MEMORY_S = 3600.0


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback port nobody listens on, for a server started a moment later (and maybe restarted on it).

    Taken outside the kernel's ephemeral range, which `bind(port 0)` and every outgoing connection draw from: a
    port picked there could be taken again by anyone between the pick and the server's bind, or while a test keeps
    it for a restart. And never one handed out in the last hour by any process of this user (a small registry file
    under a lock): parallel test workers and demos do not pick the same port."""
    low, high = _ephemeral_range()
    ranges = [(p, q) for p, q in ((10_000, low - 1), (high + 1, 65_535)) if q - p > 1000] or [(1024, 65_535)]
    with open(PORTS_FILE, "a+", encoding="ascii") as reg:
        fcntl.flock(reg, fcntl.LOCK_EX)
        reg.seek(0)
        now = time.time()
        recent: dict[int, float] = {}
        for line in reg.read().split():
            number, _, at = line.partition("@")
            with contextlib.suppress(ValueError):
                if now - float(at) < PORT_MEMORY_S:
                    recent[int(number)] = float(at)
        for _ in range(1000):
            lo, hi = random.choice(ranges)
            port = random.randint(lo, hi)
            if port in recent:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            recent[port] = now
            reg.seek(0)
            reg.truncate()
            reg.write("".join(f"{p}@{at:.0f}\n" for p, at in recent.items()))
            return port
    raise RuntimeError("no free loopback port found outside the ephemeral range")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Server:
    """A child process with a name, a port and a folder; stop() kills by pid (SIGTERM, then SIGKILL)."""

    binary = ""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = folder / "server.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return port_open(self.port)

    def start(self, timeout: float = 15.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary} not ready on port {self.port} after {timeout} s: {self.tail()}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        deadline = time.monotonic() + 5
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class Mosquitto(Server):
    binary = "mosquitto"

    def __init__(self, folder: Path, port: int | None = None, *, tls: TlsFiles | None = None,
                 passwd: Path | None = None, persistence: bool = False):
        super().__init__(folder, port)
        self.tls = tls
        self.passwd = passwd
        self.persistence = persistence

    def command(self) -> list[str]:
        # set_tcp_nodelay as the deployment kit's broker (deploy/mosquitto/plume.conf): PUBACKs at once
        lines = [f"listener {self.port} 127.0.0.1", "log_dest stderr", "user root", "set_tcp_nodelay true"]
        if self.passwd is not None:
            lines += ["allow_anonymous false", f"password_file {self.passwd}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}", f"keyfile {self.tls.key}"]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.folder}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        conf = self.folder / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return ["mosquitto", "-c", str(conf)]


@dataclass
class TlsFiles:
    ca: Path  # self-signed: the certificate is its own CA
    cert: Path
    key: Path


def make_tls(folder: Path) -> TlsFiles:
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / "server.key", folder / "server.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
         "-out", str(cert), "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return TlsFiles(cert, cert, key)


def make_passwd(folder: Path, user: str, password: str) -> Path:
    path = folder / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), user, password], check=True, capture_output=True)
    path.chmod(0o600)
    return path


class InfluxDB(Server):
    """InfluxDB 1.6 (Debian `influxdb`): the v1 HTTP API."""

    binary = "influxd"

    def __init__(self, folder: Path, port: int | None = None):
        super().__init__(folder, port)
        self.rpc_port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        d = self.folder
        conf = d / "influxdb.conf"
        conf.write_text(
            f'reporting-enabled = false\nbind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d}/meta"\n[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n'
            '  query-log-enabled = false\n[monitor]\n  store-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
        )
        return ["influxd", "run", "-config", str(conf)]

    def ready(self) -> bool:
        try:
            return loopback_http().get(f"{self.url}/ping", timeout=0.5).status_code == 204
        except httpx.HTTPError:
            return False

    def query(self, q: str, db: str = "plume") -> list[dict[str, Any]]:
        """InfluxQL; the series of the first statement (each: name, tags, columns, values), epoch ms."""
        r = loopback_http().post(f"{self.url}/query", params={"db": db, "epoch": "ms"}, data={"q": q}, timeout=30)
        r.raise_for_status()
        res = r.json()["results"][0]
        if "error" in res:
            raise RuntimeError(res["error"])
        return list(res.get("series", []))

    def create_db(self, db: str = "plume") -> None:
        loopback_http().post(f"{self.url}/query", data={"q": f'CREATE DATABASE "{db}"'}, timeout=10).raise_for_status()
