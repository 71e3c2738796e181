"""What every sink shares: its status for health, and the shape the app drives."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.clock import now_ms
from gateway.store.log import Consumer
from gateway.store.records import LogRecord

# The most channel values a sink takes from the log at once (besides its batch of records): what it holds while it
# delivers a batch stays a few MB (~150 bytes a value in memory) however wide the devices, and a sink that lingers
# for a fuller batch sends once this many have come (at 40,000 values/s: every 0.5 s)
BATCH_VALUES = 20_000

HealthProvider = Callable[[], Awaitable[dict[str, Any]]]
DeliveredHook = Callable[[list[LogRecord]], None]


@dataclass(slots=True)
class SinkStatus:
    """Live state of one sink (counters since start; `dropped`/`rejected` totals live in the log's Consumer)."""

    name: str
    type: str
    target: str  # host:port or URL, never with credentials
    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    failures: int = 0
    last_error: str = ""
    problem: str = ""  # a standing problem the user must fix (e.g. every point refused); "" when none
    last_delivery_ms: int | None = None
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=4096))

    def delivered(self, records: list[LogRecord]) -> None:
        """Records confirmed by the target now: remember poll-to-confirmation latencies."""
        now = now_ms()
        self.last_delivery_ms = int(now)
        lat = self.latencies_ms
        for r in records:
            lat.append(now - r.ts)

    def latency_summary(self) -> tuple[float | None, float | None, float | None, float | None]:
        """p50, p95, p99 and max of the recent poll-to-confirmation latencies (ms)."""
        if not self.latencies_ms:
            return None, None, None, None
        s = sorted(self.latencies_ms)
        n = len(s)
        return s[n // 2], s[min(n - 1, int(n * 0.95))], s[min(n - 1, int(n * 0.99))], s[-1]


class Sink(Protocol):
    name: str
    status: SinkStatus
    consumer: Consumer

    async def run(self) -> None:
        """Deliver the log until it is closing and everything committed was delivered (or until cancelled)."""
        ...

    def set_health(self, provider: HealthProvider, interval_s: float | None = None) -> None:
        """Where to get the health snapshot this sink publishes."""
        ...
