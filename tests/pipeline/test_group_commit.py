"""Group commit: the committer starts the next transaction as soon as the previous one finished, with everything
that arrived meanwhile, instead of waiting out a fixed interval (a reading waits at most one commit, not 250 ms).

The event loop's clock is frozen here, so no timer ever fires: whatever the committer does, it does without
waiting for time to pass. Commits are held at a gate on the log's worker thread, so the test decides when each
one finishes; the test waits for them in real time on another thread."""

from __future__ import annotations

import asyncio
import queue
import threading
from pathlib import Path
from typing import Any

from gateway.store.config import StoreConfig
from gateway.store.db import Batch
from gateway.store.log import DurableLog

from .helpers import reading

T0 = 1_767_225_600_000


class GatedCommits:
    """Wraps LogDb.commit: reports each commit's reading count, then holds it until released."""

    def __init__(self, commit: Any):
        self._commit = commit
        self.started: queue.Queue[int] = queue.Queue()
        self.release = [threading.Event() for _ in range(20)]
        self._n = 0

    def __call__(self, batch: Batch) -> None:
        i = self._n
        self._n += 1
        self.started.put(len(batch.rows))
        if not self.release[i].wait(20):
            raise RuntimeError("commit never released")
        self._commit(batch)


def run_with_frozen_clock(coro: Any) -> Any:
    loop = asyncio.new_event_loop()
    frozen = loop.time()
    loop.time = lambda: frozen  # type: ignore[method-assign]
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_the_next_commit_starts_when_the_previous_one_finishes_with_what_arrived_meanwhile(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int | None, list[int]]:
        loop = asyncio.get_running_loop()
        log = DurableLog(tmp_path / "log.sqlite", StoreConfig())  # the default configuration
        await log.open(["mqtt"])
        gate = GatedCommits(log._db.commit)
        log._db.commit = gate  # type: ignore[method-assign]
        for ev in gate.release[2:]:
            ev.set()  # only the first two commits are held

        def next_commit() -> int | None:
            try:
                return gate.started.get(timeout=10)  # real time, on another thread
            except queue.Empty:
                return None

        committer = asyncio.create_task(log.run())
        try:
            log.append(reading("d1", T0))
            first = await loop.run_in_executor(None, next_commit)
            assert first == 1
            for i in range(1, 6):  # arrive while the first commit is still on the disk
                log.append(reading("d1", T0 + i))
            gate.release[0].set()
            second = await loop.run_in_executor(None, next_commit)
            gate.release[1].set()
            got: list[int] = []
            if second is not None:
                while len(got) < 6:
                    got += [r.id for r in await log.read(len(got), 10)]
            return first, second, got
        finally:
            for ev in gate.release:
                ev.set()
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
            await log.close()

    first, second, ids = run_with_frozen_clock(scenario())
    assert first == 1
    assert second == 5, "the readings that arrived during a commit go into the very next one, without a timer"
    assert ids == [1, 2, 3, 4, 5, 6]
