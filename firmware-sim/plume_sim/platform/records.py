"""What the platform simulator keeps: every packet received (good or bad) and every command exchange."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gateway.hj212.codec import Packet


@dataclass(slots=True)
class Received:
    """One packet (or one fault in the byte stream) from a logger, in arrival order."""

    at_ms: int
    peer: str
    raw: bytes
    packet: Packet | None = None
    error: str | None = None  # the codec's or the content check's message
    reason: str | None = None  # codec reason (crc, length, ...) or "content"
    answered: str | None = None  # "9014", "9014 late", "garbage", ...

    @property
    def ok(self) -> bool:
        return self.packet is not None and self.error is None

    @property
    def cn(self) -> str | None:
        return self.packet.cn if self.packet is not None else None

    @property
    def qn(self) -> str | None:
        return self.packet.qn if self.packet is not None else None

    def as_json(self) -> dict[str, Any]:
        p = self.packet
        return {
            "at": self.at_ms, "peer": self.peer, "raw": self.raw.decode("utf-8", "backslashreplace").rstrip("\r\n"),
            "cn": p.cn if p else None, "qn": p.qn if p else None, "mn": p.mn if p else None,
            "error": self.error, "reason": self.reason, "answered": self.answered,
        }


@dataclass(slots=True)
class Exchange:
    """A command the platform sent and what came back: 9011 (QnRtn), data packets with its QN, 9012 (ExeRtn) or
    9013 for a notice."""

    qn: str
    cn: str
    request: Packet
    qn_rtn: int | None = None
    exe_rtn: int | None = None
    notice_answered: bool = False
    data: list[Packet] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        if self.notice_answered or self.exe_rtn is not None:
            return True
        return self.qn_rtn is not None and self.qn_rtn != 1  # refused: no 9012 follows

    def values(self) -> dict[str, str]:
        """Every CP field of the data packets (e.g. {"SystemTime": "20240101120000"})."""
        return {k: v for p in self.data for g in p.cp.groups for k, v in g}


class Recorder:
    """Appends one JSON line per packet received (flushed per line) when a path is given."""

    def __init__(self, path: Path | None):
        self._file: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, rec: Received) -> None:
        if self._file is not None:
            self._file.write(json.dumps(rec.as_json(), ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
