"""Logging for `plume run`: one line per event, text or JSON, with secrets redacted.

Redaction happens on the finished line (message, arguments and traceback alike) through the one redaction path,
`gateway.core.secrets`: every secret the gateway loaded is registered there (`add_secret`, `add_url`, ...) in
every form it can take, and credential-looking parts are masked even when nobody registered them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from gateway.core.secrets import add_secret, redact

__all__ = ["JsonFormatter", "TextFormatter", "add_secret", "redact", "setup_logging"]
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = time.gmtime(record.created)
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (ISO UTC), level, logger, msg, and exc when there is a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


def setup_logging(fmt: str = "text", level: str = "info", stream: IO[str] | None = None) -> None:
    """Configure the root logger for a long-running gateway (stderr, so journald or Docker collect it)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r}: use text or json")
    if level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r}: use one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(LEVELS[level.lower()])
    # chatty libraries: their INFO lines repeat ours (httpx logs every request) or are noise
    for name in ("httpx", "httpcore", "pymodbus", "asyncio", "plume.sink.mqtt.client", "mqtt"):
        logging.getLogger(name).setLevel(max(logging.WARNING, LEVELS[level.lower()]))
