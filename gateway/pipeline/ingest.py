"""The ingest path, named: what happens to a reading between the poll that made it and the durable log.

    poll (acquisition) -> quality flags (M, stuck) and CEMS derived channels, in place -> DurableLog.append

Nothing else sees a reading before it is in the log; the log commits it within its commit interval, then every
consumer and the regulatory stage read it from there.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.core.model import DeviceReading

Emit = Callable[[DeviceReading], None]


def ingest_path(prepare: Callable[[DeviceReading], None], append: Callable[[DeviceReading], object]) -> Emit:
    """The callback the acquisition calls with each reading: `prepare` (the stage's quality and CEMS step), then
    `append` (the durable log)."""

    def ingest(reading: DeviceReading) -> None:
        prepare(reading)
        append(reading)

    return ingest
