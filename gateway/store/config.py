"""Site-file section `store`: where the durable log lives, how long it keeps data and how much disk it may use.

Defaults fit a 16 GB SD card: 2 GB for the log keeps about 3 weeks of a heavy site (10 devices x 10 channels at
1 s, ~100 bytes a poll) and years of a typical one (5 devices at 10 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LOG_FILE = "log.sqlite"


class StoreConfig(BaseModel):
    """The durable log (SQLite, WAL)."""

    model_config = ConfigDict(extra="forbid")

    dir: str = Field(
        "/var/lib/plume",
        description="Folder holding the log (log.sqlite); relative paths are relative to the site file.",
    )
    retention_days: float = Field(
        30, gt=0, le=3650, description="Delivered readings older than this are deleted (local history)."
    )
    max_disk_mb: float = Field(
        2048,
        gt=0,
        description="Disk cap of the log. When reached, the oldest readings are dropped even if undelivered; "
        "every drop is counted per sink, logged and shown in health.",
    )
    min_free_mb: float = Field(
        32,
        gt=0,
        description="Free space the log leaves on its file system. Below it, the log stops growing: the oldest 5% "
        "of the readings are dropped (counted per sink when undelivered) and their space reused.",
    )
    max_buffered: int = Field(
        10_000,
        ge=100,
        description="At most this many readings wait in memory while commits fail (a full or failing disk); "
        "newer ones are refused, counted (`lost` in health) and logged, until commits work again.",
    )
    durability: Literal["full", "normal"] = Field(
        "full",
        description="full: every commit is fsynced (survives power loss; one fsync per commit). "
        "normal: survives a crash of the process but may lose the last commits at a power cut.",
    )
    commit_interval_ms: int = Field(
        0,
        ge=0,
        le=10_000,
        description="0 (group commit): a transaction starts as soon as the previous one finished and takes "
        "everything that arrived meanwhile, so a reading waits at most about one commit (one fsync) and a slow "
        "card simply gets larger transactions. N > 0: in addition at most one transaction every N ms (fewer "
        "fsyncs, more latency). A crash or power cut can lose only readings not yet committed.",
    )

    def log_path(self, site_file: Path | None) -> Path:
        """The log file, with a relative `dir` taken from the site file's folder."""
        folder = Path(self.dir).expanduser()
        if not folder.is_absolute() and site_file is not None:
            folder = site_file.resolve().parent / folder
        return folder / LOG_FILE
