"""A commit cancelled while SQLite writes it (the committer task cancelled at shutdown) still happened in the
worker thread: the log must count it as committed, not put the records back and write them a second time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.audit import Actor, audit
from gateway.store.log import DurableLog


async def test_a_cancelled_flush_is_not_committed_twice(tmp_path: Path) -> None:
    lg = DurableLog(tmp_path / "log.sqlite")
    await lg.open(["a"])
    for i in range(3000):
        audit(lg, Actor("local", "t"), f"step {i}", {"n": i})
    flush = asyncio.create_task(lg.flush())
    await asyncio.sleep(0)  # the commit is now running on the worker thread
    flush.cancel()
    await asyncio.gather(flush, return_exceptions=True)
    audit(lg, Actor("local", "t"), "after")
    await lg.close()  # raised IntegrityError (UNIQUE readings.id) when the cancelled batch was put back
    again = DurableLog(tmp_path / "log.sqlite")
    await again.open(["a"])
    assert again.committed_id == 3001
    await again.close()


async def test_a_flush_cancelled_twice_is_not_committed_twice(tmp_path: Path) -> None:
    """Shutdown cancels the committer, and a caller giving up on the shutdown (a timeout, a second Ctrl-C) cancels it
    again while the first cancellation still waits for the thread: the batch is still committed once."""
    lg = DurableLog(tmp_path / "log.sqlite")
    await lg.open(["a"])
    for i in range(3000):
        audit(lg, Actor("local", "t"), f"step {i}", {"n": i})
    flush = asyncio.create_task(lg.flush())
    await asyncio.sleep(0)  # the commit is now running on the worker thread
    flush.cancel()
    await asyncio.sleep(0)  # the flush now waits for the thread to end
    flush.cancel()
    await asyncio.gather(flush, return_exceptions=True)
    assert flush.cancelled()
    audit(lg, Actor("local", "t"), "after")
    await lg.close()  # raised IntegrityError (UNIQUE readings.id) when the twice-cancelled batch was put back
    again = DurableLog(tmp_path / "log.sqlite")
    await again.open(["a"])
    assert again.committed_id == 3001
    await again.close()
