"""A cancellation (Ctrl-C, shutdown) that pymodbus loses must not be lost by the link: pymodbus awaits its answer
with `asyncio.wait_for`, which on Python 3.11 can swallow a cancellation that races the answer; the read then
returns and the caller (plume discover's sweep, a poller being stopped) goes on as if nothing happened (seen as
`plume discover` sweeping on for tens of seconds after Ctrl-C)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path
from typing import Any

import pytest

from gateway.acquisition.link import ModbusLink
from gateway.config import RtuBus


class _Answer:
    def isError(self) -> bool:  # pymodbus' name
        return False


async def _answer_that_swallows_the_cancellation(client: Any) -> _Answer:
    with contextlib.suppress(asyncio.CancelledError):  # what wait_for does on 3.11 when the answer races it
        await asyncio.sleep(5)
    return _Answer()


async def test_a_cancellation_swallowed_under_the_link_still_cancels_the_read(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    port = tmp_path / "ttyGW"
    port.symlink_to(os.ttyname(slave))
    link = ModbusLink(RtuBus(name="rs485", type="rtu", port=str(port), baudrate=9600))
    try:
        task = asyncio.create_task(link._transact(_answer_that_swallows_the_cancellation, 10.0, 1))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
    finally:
        link.close()
        os.close(master)
        os.close(slave)
