"""A pty pair standing in for a serial port: the gateway opens the link path, the simulator owns the master.

The simulator keeps a slave fd open too, so the master never sees EIO while the gateway closes and reopens the
port; and it drops what piles up unread, as a real line loses bytes nobody listens to.

A pty moves bytes at any speed, but it keeps the line settings the gateway asked for in the slave's termios:
`line_settings()` reads them back, so a simulated RS-485 line can stay silent to a master at the wrong baud rate or
parity, as a real slave does (it sees framing errors, never its address). What Linux keeps: the baud rate (stored,
not applied), PARODD and CSTOPB. It clears PARENB and forces CS8, so even parity cannot be told from none; and a
tcsetattr whose only change is PARENB fails with EINVAL (the port "refuses" parity E after the same setting
without it), so pymodbus cannot open a pty with parity at all. Tests that need parity run the gateway with the
shim in tests/ptyparity (termios.tcsetattr on a pty sends the parity as a letter in the unused control character
VEOL2, PARITY_MARK); with that letter the parity is emulated exactly, without it as PARODD (odd, or not odd).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import termios
import tty
from dataclasses import dataclass
from pathlib import Path

BACKLOG_LIMIT = 1024  # unread bytes at the gateway's end beyond which older bytes are dropped


class PtyError(OSError):
    """The pty link cannot be made where the site file says."""


PARITY_MARK = termios.VEOL2  # where tests/ptyparity writes the parity letter the pty would drop


@dataclass(frozen=True, slots=True)
class LineSettings:
    """What a pty can tell of the line settings its far end was set to."""

    speed: int  # a termios B* constant
    parity: str  # N, E, O as marked by tests/ptyparity; "" when unmarked
    odd: bool
    two_stop_bits: bool

    def heard_by(self, baudrate: int, parity: str, stopbits: int) -> bool:
        """Would a slave at these settings understand a master at ours?"""
        same_parity = self.parity == parity if self.parity else self.odd == (parity == "O")
        return self.speed == getattr(termios, f"B{baudrate}", -1) and same_parity and self.two_stop_bits == (
            stopbits == 2)


class PtyPort:
    def __init__(self, path: str | Path, backlog_limit: int = BACKLOG_LIMIT):
        self.path = Path(path)
        self.backlog_limit = backlog_limit
        self.master = -1
        self.slave = -1
        self.slave_name = ""

    def open(self) -> None:
        if self.path.exists() and not self.path.is_symlink():
            raise PtyError(f"{self.path} exists and is not a symlink: not replacing it")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PtyError(f"cannot create {self.path.parent}: {exc.strerror}") from None
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.slave_name = os.ttyname(self.slave)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.slave_name)
            os.replace(tmp, self.path)  # atomically replaces a stale link
        except OSError as exc:
            self.close()
            raise PtyError(f"cannot link {self.path} to {self.slave_name}: {exc.strerror}") from None

    def close(self) -> None:
        """Close both ends and remove the link, unless someone else's link has replaced ours meanwhile."""
        if self.slave_name:
            with contextlib.suppress(OSError):
                if self.path.is_symlink() and os.readlink(self.path) == self.slave_name:
                    self.path.unlink()
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1

    def read(self) -> bytes:
        try:
            return os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError):
            return b""

    def line_settings(self) -> LineSettings | None:
        """The settings the gateway's end was last set to (None when the pty is closed or unreadable)."""
        try:
            _i, _o, cflag, _l, ispeed, _os, cc = termios.tcgetattr(self.slave)
        except (termios.error, OSError):
            return None
        mark = cc[PARITY_MARK]
        letter = mark.decode("latin-1") if isinstance(mark, bytes) and mark in (b"N", b"E", b"O") else ""
        return LineSettings(ispeed, letter, bool(cflag & termios.PARODD), bool(cflag & termios.CSTOPB))

    def unread(self) -> int:
        """Bytes written to the gateway's end that nobody has read yet."""
        buf = fcntl.ioctl(self.slave, termios.TIOCINQ, b"\0\0\0\0")
        return int(struct.unpack("i", buf)[0])

    def write(self, data: bytes) -> None:
        """Send towards the gateway; what does not fit is lost, as on a line."""
        if self.master < 0:
            return
        with contextlib.suppress(OSError):
            if self.unread() + len(data) > self.backlog_limit:
                termios.tcflush(self.slave, termios.TCIFLUSH)
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.write(self.master, data)
