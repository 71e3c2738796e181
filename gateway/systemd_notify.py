"""sd_notify for `Type=notify` units: tell systemd the gateway is ready, alive, stopping, and what it is doing.

The protocol (man sd_notify): newline-separated `KEY=VALUE` assignments in one datagram to the unix socket named
by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). systemd sets that variable for a unit with
`Type=notify` (and `NotifyAccess=`), and `$WATCHDOG_USEC` (with `$WATCHDOG_PID`) when the unit has `WatchdogSec=`;
the service must then send `WATCHDOG=1` more often than that, and systemd kills and restarts it otherwise.

Outside systemd (no `$NOTIFY_SOCKET`) every call is a no-op, so `plume run` behaves the same in a terminal, in
Docker and under a supervisor. A failed send is logged once and never raised: a notification must not take the
gateway down. Written here rather than depending on a package: the protocol is one `sendto()`, and the small
libraries that wrap it are unmaintained (sdnotify, last release 2017) or need libsystemd (cysystemd).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger("plume.systemd")


class Notifier:
    """One service's channel to systemd. `Notifier.from_env()` reads the variables systemd set."""

    def __init__(self, socket_path: str | None, watchdog_usec: int | None = None):
        self.socket_path = socket_path or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, pid: int | None = None) -> Notifier:
        """The notifier systemd asked for: `$NOTIFY_SOCKET`, and `$WATCHDOG_USEC` unless `$WATCHDOG_PID` names
        another process (the watchdog is then not ours to ping)."""
        env = os.environ if env is None else env
        usec: int | None = None
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            usec = None
        owner = env.get("WATCHDOG_PID", "")
        if owner and owner != str(os.getpid() if pid is None else pid):
            usec = None
        return cls(env.get("NOTIFY_SOCKET"), usec)

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half the timeout systemd set (its own advice), None without one."""
        if not self.enabled or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` assignments in one datagram. True when sent; False without systemd or on failure."""
        if self.socket_path is None or not assignments:
            return False
        address = self.socket_path
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(assignments).encode(), address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("systemd: cannot notify %s: %s", self.socket_path, exc.strerror or exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        return self.notify(*_status(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    async def watchdog_loop(self, alive: Callable[[], bool] | None = None) -> None:
        """Ping the watchdog every `watchdog_interval_s` while `alive()` says the gateway is healthy (default:
        the event loop runs, which is what a hung process would not do). Returns at once without a watchdog."""
        interval = self.watchdog_interval_s
        if interval is None:
            return
        while True:
            if alive is None or alive():
                self.watchdog()
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return ("STATUS=" + " ".join(text.split()),)  # one line: a newline would start a new assignment
