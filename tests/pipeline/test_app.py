"""The Gateway as other commands use it in process (plume demo: no sinks, a temp log, readings as committed),
and the logging of `plume run` (secrets redacted, JSON lines)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.audit import AuditRecord
from gateway.core.model import DeviceReading
from gateway.logsetup import add_secret, redact, setup_logging
from gateway.pipeline.gateway import Gateway
from gateway.site.model import Site
from gateway.store.records import LogRecord, ReadingRecord

from .helpers import log_records, reading


class Three:
    """Emits three readings, then has nothing more to poll."""

    def __init__(self, site: Site, emit: Callable[[DeviceReading], None]):
        self.emit = emit

    async def run(self) -> None:
        for i in range(3):
            self.emit(reading("dust-1", 1_767_225_600_000 + i * 1000, site="demo"))
            await asyncio.sleep(0)

    def health(self) -> Mapping[str, Any]:
        return {}


async def test_gateway_without_sinks_commits_and_shows_each_reading(tmp_path: Path,
                                                                    make_site: Callable[..., Site]) -> None:
    site = make_site("""
        site: {{id: demo}}
        sinks:
          - {{type: mqtt, host: 127.0.0.1, port: 1}}
    """)
    log_path = tmp_path / "demo" / "log.sqlite"
    gw = Gateway(site, log_path=log_path, with_sinks=False, source=Three)
    seen: list[LogRecord] = []
    gw.on_commit(seen.extend)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    deadline = asyncio.get_running_loop().time() + 10
    while len(seen) < 5 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    assert gw.sinks == [], "with_sinks=False: the configured sink is not started"
    stop.set()
    await asyncio.wait_for(task, 5)
    # ids 1 and 2 are the audit records of the configuration load and the start, the last one the stop's
    assert [r.payload["action"] for r in seen if isinstance(r, AuditRecord)] == ["config load", "gateway start",
                                                                                 "gateway stop"]
    readings = [r for r in seen if isinstance(r, ReadingRecord)]
    assert [(r.id, r.seq, r.reading.device) for r in readings] == [(3, 1, "dust-1"), (4, 2, "dust-1"),
                                                                   (5, 3, "dust-1")]
    assert [rid for rid, _, _ in log_records(log_path)] == [3, 4, 5], "committed to the log given, not the site's"


def test_secrets_never_reach_a_log_line() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    setup_logging("json", "debug", stream)
    try:
        add_secret("hunter2-secret")
        log = logging.getLogger("plume.test")
        log.info("connecting with %s", "hunter2-secret")
        log.info("url http://plume:pa55w0rd@db:8086/write token=abc123 password: 'x y'")
        try:
            raise ValueError("bad hunter2-secret")
        except ValueError:
            log.exception("failed")
    finally:
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["msg"] == "connecting with ***"
    assert lines[1]["msg"] == "url http://plume:***@db:8086/write token=*** password: ***"
    assert "hunter2" not in lines[2]["exc"] and lines[2]["level"] == "error"
    assert redact("Authorization: Bearer eyJhbGciOi") == "Authorization: Bearer ***"
