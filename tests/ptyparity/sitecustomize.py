"""Test support: a pty that keeps its parity bit, so plume-sim can emulate an RS-485 line's parity.

Linux ptys clear PARENB from every tcsetattr, and refuse (EINVAL) one whose only change is PARENB; pyserial sets
the termios twice when pymodbus opens a port, so a port with parity E or O cannot even be opened on a pty, and the
simulator could never tell even parity from none. Real USB-RS485 adapters keep the bit. This shim, put first on
the PYTHONPATH of a process that opens the ports (`plume discover`, `plume read` in tests/cli/test_discover.py),
wraps termios.tcsetattr: on a pty it asks for no PARENB (what the pty will keep anyway) and writes the requested
parity as a letter into the unused control character VEOL2 instead (no effect in raw mode). plume-sim reads that
letter back (plume_sim.ptys.PARITY_MARK); without the shim it sees only PARODD. Only the simulator and the tests
know this channel; the gateway's code is not changed by it.
"""

from __future__ import annotations

import os
import termios
from typing import Any

PARITY_MARK = termios.VEOL2
_real_tcsetattr = termios.tcsetattr


def tcsetattr(fd: Any, when: int, attributes: list[Any]) -> None:
    try:
        on_pty = os.ttyname(fd).startswith("/dev/pts/")
    except (OSError, TypeError):
        on_pty = False
    if on_pty:
        iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attributes
        cc = list(cc)
        cc[PARITY_MARK] = (b"O" if cflag & termios.PARODD else b"E") if cflag & termios.PARENB else b"N"
        attributes = [iflag, oflag, cflag & ~termios.PARENB, lflag, ispeed, ospeed, cc]
    _real_tcsetattr(fd, when, attributes)


if __name__ == "sitecustomize":  # started with this folder on PYTHONPATH; imported by a test, it changes nothing
    termios.tcsetattr = tcsetattr
