"""The regulatory stage around the log, without servers: CEMS channels and quality flags are in the readings the log
commits (so every sink gets them); the maintenance switch is a logged command; an alarm active for longer than half
the retention is checkpointed, so a restart still knows it when retention took its first events."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.pipeline.gateway import Gateway
from gateway.pipeline.stage import RegulatoryStage
from gateway.site.model import Site
from gateway.store.log import DurableLog
from gateway.store.records import ALARM, READING, LogRecord

T0 = (int(time.time()) // 3600 + 24) * 3_600_000  # tomorrow: the timer never closes these windows early

STACK_SITE = """
    site: {{id: s, timezone: Asia/Shanghai}}
    store: {{dir: "{tmp}/log", commit_interval_ms: 20}}
    buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: 1}}]
    devices: [{{name: stack-1, bus: lan, address: 2, profile: cems-analyzer}}]
    stuck:
      - {{channels: [particulate], count: 3}}
    stacks:
      - {{device: stack-1, boiler: coal, o2: o2, moisture: flue_humidity, temperature: flue_temperature,
          static_pressure: flue_pressure, ambient_pressure: 101.325, velocity: flue_velocity, area_m2: 1.2,
          pollutants: {{so2: {{channel: so2}}}}}}
    rules:
      - {{id: so2-zs, type: threshold, channel: so2_zs, limit: 100, unit: mg/m3}}
"""


def stack(ts: int) -> DeviceReading:
    return DeviceReading("s", "stack-1", "cems", ts, {
        "so2": ChannelValue(100.0, "mg/m3"), "o2": ChannelValue(12.0, "%"), "particulate": ChannelValue(5.0, "mg/m3"),
        "flue_humidity": ChannelValue(8.0, "%"), "flue_temperature": ChannelValue(120.0, "C"),
        "flue_pressure": ChannelValue(0.2, "kPa"), "flue_velocity": ChannelValue(12.0, "m/s")})


class Stack:
    """Five stack readings; the gateway's test switches maintenance on in between (`gate`)."""

    gate: asyncio.Event

    def __init__(self, site: Site, emit: Callable[[DeviceReading], None]):
        self.emit = emit

    async def run(self) -> None:
        for i in range(4):
            self.emit(stack(T0 + i * 1000))
        await self.gate.wait()
        self.emit(stack(T0 + 4000))

    def health(self) -> Mapping[str, Any]:
        return {}


async def test_cems_channels_and_flags_are_in_the_committed_readings(tmp_path: Path,
                                                                     make_site: Callable[..., Site]) -> None:
    site = make_site(STACK_SITE)
    Stack.gate = asyncio.Event()
    gw = Gateway(site, with_sinks=False, source=Stack)
    seen: list[LogRecord] = []
    gw.on_commit(seen.extend)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        while len([r for r in seen if r.kind == READING]) < 4:
            await asyncio.sleep(0.02)
        assert gw.command({"type": "maintenance", "on": True, "device": "stack-1", "by": "li"}) is None
        assert gw.command({"type": "maintenance", "on": "yes"}) is not None, "a bad command is refused"
        while not any(r.kind == "command" for r in seen):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0)  # the command is applied when committed: the next reading is under maintenance
        Stack.gate.set()
        while len([r for r in seen if r.kind == READING]) < 5:
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    readings = [r.reading for r in seen if r.kind == READING]
    first = readings[0].values
    # SO2 100 mg/m3 dry at 12 % O2, coal (9 %): 100 * 12 / 9
    assert round(first["so2_zs"].value, 3) == round(100 * 12 / 9, 3) and first["so2_zs"].flag is Flag.N  # type: ignore[arg-type]
    assert {"so2_std", "so2_rate", "flow_std"} <= set(first)
    assert [r.values["particulate"].flag for r in readings[:4]] == [Flag.N, Flag.N, Flag.D, Flag.D], "stuck: 3rd"
    last = readings[4].values
    assert last["so2"].flag is Flag.M and last["so2_zs"].flag is Flag.M, "maintenance, carried into derived values"
    assert last["particulate"].flag is Flag.D, "a fault is never hidden by maintenance"


async def test_a_long_alarm_is_checkpointed_and_restored_when_retention_took_its_first_events(
        tmp_path: Path, make_site: Callable[..., Site]) -> None:
    site = make_site(STACK_SITE)
    path = tmp_path / "log" / "log.sqlite"
    lg = DurableLog(path, site.config.store)
    await lg.open([])
    clock = [T0]
    stage = RegulatoryStage(site, clock=lambda: clock[0])
    lg.on_commit(stage.on_commit)
    await stage.restore(lg)
    for i in range(3):
        r = stack(T0 + i * 1000)
        stage.prepare(r)
        lg.append(r)
    await lg.flush()
    (raised,) = stage.alarms.active()
    clock[0] = T0 + 16 * 86_400_000  # retention 30 days: checkpoint after 15
    assert stage.checkpoint(clock[0]) == 1
    assert stage.checkpoint(clock[0] + 1000) == 0, "not again until another half retention passed"
    await lg.flush()
    await lg.close()
    conn = sqlite3.connect(path)  # what retention would do: every record before the checkpoint is gone
    conn.execute("DELETE FROM readings WHERE id < (SELECT max(id) FROM readings)")
    conn.commit()
    conn.close()

    lg = DurableLog(path, site.config.store)
    await lg.open([])
    try:
        again = RegulatoryStage(site, clock=lambda: clock[0])
        await again.restore(lg)
        assert [a.alarm_id for a in again.alarms.active()] == [raised.alarm_id]
        held = await lg.records_of_kind(ALARM, 0)
        assert [(r.payload.checkpoint, r.payload.event.type.value) for r in held] == [(True, "raised")]
    finally:
        await lg.close()
