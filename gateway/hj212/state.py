"""The uplink's own small state file, next to the durable log: what the platform acknowledged last (per data
kind) and the settings the platform changed by command (intervals, timeouts, password, clock offset).

Why a file besides the log cursor: a packet is built from several log records, so "acknowledged up to record N"
cannot say which packet came last; the DataTime can. It is written (atomically: temp file, fsync, rename) before
the log cursor moves, so after a crash the file is never behind the cursor and no acknowledged packet is rebuilt.
It holds the platform's password when the platform changed it (1072), so it is created readable by its owner
only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger("plume.hj212")
VERSION = 1


@dataclass(slots=True)
class Settings:
    """What the platform set by command; None: the site file's value."""

    rtd_interval_s: int | None = None
    min_interval_min: int | None = None
    answer_timeout_s: float | None = None
    retries: int | None = None
    pw: str | None = None
    clock_offset_ms: int = 0


@dataclass(slots=True)
class UplinkState:
    last_sent: dict[str, int] = field(default_factory=dict)  # CN -> DataTime (UTC ms) last acknowledged
    settings: Settings = field(default_factory=Settings)


class StateFile:
    def __init__(self, path: Path, *, fsync: bool = True):
        self.path = path
        self.fsync = fsync
        self.writes = 0

    def load(self) -> UplinkState:
        """The saved state; a fresh one when there is none. An unreadable file is logged and replaced (the
        platform may then get some packets twice, which it tolerates better than a gap)."""
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise ValueError("unknown format")
            s = data.get("settings", {})
            return UplinkState({str(k): int(v) for k, v in data.get("last_sent", {}).items()},
                               Settings(**{f.name: s[f.name] for f in fields(Settings) if f.name in s}))
        except FileNotFoundError:
            return UplinkState()
        except (OSError, ValueError, TypeError) as exc:
            log.warning("hj212: state file %s unreadable (%s); starting afresh", self.path, exc)
            return UplinkState()

    def save(self, state: UplinkState) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        text = json.dumps({"version": VERSION, "last_sent": state.last_sent, "settings": asdict(state.settings)})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode("utf-8"))
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        if self.fsync:
            with contextlib.suppress(OSError):
                dfd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        self.writes += 1
