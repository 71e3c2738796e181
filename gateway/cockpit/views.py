"""What the cockpit shows, as JSON built from the running gateway (the same data for the page, the live stream
and the `plume status` CLI). Nothing here runs per reading except `LiveState.on_commit`, which keeps the latest
reading of each device and the last alarm events; everything else is computed when somebody looks."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from gateway.alarms.events import AlarmEvent
from gateway.alarms.records import AlarmRecord
from gateway.cockpit.charts import line_chart
from gateway.cockpit.hints import explain
from gateway.core.clock import Clock, now_ms
from gateway.core.model import DeviceReading
from gateway.site.model import Site
from gateway.store.log import DurableLog
from gateway.store.records import ALARM, LogRecord, ReadingRecord

FLAGS = ("N", "B", "D", "T", "C", "M", "F", "S")
EVENTS_KEPT = 50
HOUR_MS = 3_600_000


class GatewayView(Protocol):
    """What the cockpit reads from the running gateway (gateway.pipeline.gateway.Gateway has all of it)."""

    @property
    def site(self) -> Site: ...

    @property
    def log(self) -> DurableLog | None: ...

    @property
    def stage(self) -> Any: ...  # the regulatory stage: `.alarms` is the AlarmEngine

    @property
    def source(self) -> Any: ...  # the acquisition: `.health()` -> {device: DeviceHealth}

    @property
    def sinks(self) -> Sequence[Any]: ...  # each with .name, .status (SinkStatus), .consumer

    def command(self, cmd: dict[str, Any]) -> str | None: ...

    def on_commit(self, callback: Callable[[list[LogRecord]], None]) -> None: ...

    async def health(self) -> dict[str, Any]: ...


class LocalClock:
    """Times as a person at the site reads them: the site's zone, always marked."""

    def __init__(self, zone: str):
        self.zone = zone
        self.tz = ZoneInfo(zone)

    def dt(self, ts_ms: int) -> datetime:
        return datetime.fromtimestamp(ts_ms / 1000, self.tz)

    def full(self, ts_ms: int | None) -> str:
        return "" if ts_ms is None else self.dt(ts_ms).strftime("%Y-%m-%d %H:%M:%S")

    def short(self, ts_ms: int | None) -> str:
        return "" if ts_ms is None else self.dt(ts_ms).strftime("%H:%M:%S")

    def offset(self, ts_ms: int) -> str:
        s = self.dt(ts_ms).strftime("%z")
        return f"UTC{s[:3]}:{s[3:]}"

    def mark(self, ts_ms: int) -> str:
        """The zone marker shown beside every time: `Asia/Shanghai UTC+08:00`."""
        return f"{self.zone} {self.offset(ts_ms)}"


class LiveState:
    """The latest reading per device and the last alarm events, kept from the log's commits; `changed` wakes the
    live streams (they coalesce, so a busy site does not cause a storm)."""

    def __init__(self) -> None:
        self.latest: dict[str, DeviceReading] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.version = 0
        self.alarm_version = 0
        self.changed = asyncio.Event()

    def on_commit(self, records: list[LogRecord]) -> None:
        touched = False
        for rec in records:
            if isinstance(rec, ReadingRecord):
                self.latest[rec.reading.device] = rec.reading
                touched = True
            elif isinstance(rec, AlarmRecord) and not rec.payload.checkpoint:
                self._event(rec.payload.event)
                self.alarm_version += 1
                touched = True
        if touched:
            self.version += 1
            self.changed.set()

    def _event(self, ev: AlarmEvent) -> None:
        if any(e["event_id"] == ev.event_id for e in self.events):
            return
        self.events.append(ev.to_json())

    async def seed(self, lg: DurableLog, now_ms: int, devices: Sequence[str]) -> None:
        """What the log already holds: the alarm events of the last week, each device's latest reading of the last
        hour (read once at start, newest records first, stopping when every device was seen)."""
        for rec in await lg.records_of_kind(ALARM, now_ms - 7 * 24 * HOUR_MS):
            if isinstance(rec, AlarmRecord) and not rec.payload.checkpoint:
                self._event(rec.payload.event)
        st = lg.stats()
        upto, wanted = st.committed_id, set(devices)
        while upto > 0 and wanted:
            chunk = await lg.read(max(0, upto - 2000), 2000)
            for rec in reversed(chunk):
                if isinstance(rec, ReadingRecord) and rec.reading.device in wanted:
                    if rec.ts < now_ms - HOUR_MS:
                        wanted.clear()
                        break
                    self.latest.setdefault(rec.reading.device, rec.reading)
                    wanted.discard(rec.reading.device)
            if not chunk or chunk[0].id <= max(1, st.first_id):
                break
            upto = chunk[0].id - 1


def device_state(health: Any, latest: DeviceReading | None) -> str:
    """online | errors (answers, but with errors) | offline (stopped answering) | backed_off (offline, and its
    scheduled polls are skipped until the next probe) | unknown (not polled yet)."""
    if health is None or (getattr(health, "polls", 0) == 0 and latest is None):
        return "unknown"
    if not getattr(health, "online", True):
        if latest is not None and not latest.ok and latest.error.startswith("offline, next probe"):
            return "backed_off"
        return "offline"
    if getattr(health, "consecutive_failures", 0) > 0 or (latest is not None and (latest.error or not latest.ok)):
        return "errors"
    return "online"


def _value(v: Any) -> Any:
    if isinstance(v, float) and v != v:  # NaN never leaves the gateway
        return None
    return v


class Views:
    """The JSON of each page."""

    def __init__(self, gw: GatewayView, state: LiveState, clock: Clock = now_ms):
        self.gw = gw
        self.state = state
        self._clock = clock
        info = gw.site.config.site
        self.time = LocalClock(info.timezone)
        self.devices = [d for d in gw.site.devices if d.config.enabled]

    def now_ms(self) -> int:
        return self._clock()

    def _health(self) -> Mapping[str, Any]:
        src = self.gw.source
        return src.health() if src is not None else {}

    def site(self) -> dict[str, Any]:
        info = self.gw.site.config.site
        now = self.now_ms()
        return {"id": info.id, "name": info.name or info.id, "timezone": info.timezone,
                "offset": self.time.offset(now), "zone": self.time.mark(now), "now": now,
                "now_local": self.time.full(now)}

    def device_rows(self) -> list[dict[str, Any]]:
        health = self._health()
        rows = []
        for d in self.devices:
            h = health.get(d.name)
            latest = self.state.latest.get(d.name)
            polls = int(getattr(h, "polls", 0)) if h is not None else 0
            ok = int(getattr(h, "ok", 0)) if h is not None else 0
            values = []
            if latest is not None:
                values = [{"channel": ch, "value": _value(cv.value), "unit": cv.unit, "flag": cv.flag.value,
                           "note": cv.note} for ch, cv in latest.values.items()]
            rows.append({
                "name": d.name, "bus": d.config.bus, "kind": d.profile.kind, "profile": d.profile.name,
                "state": device_state(h, latest),
                "last_poll": latest.ts if latest is not None else None,
                "last_poll_local": self.time.full(latest.ts) if latest is not None else "",
                "polls": polls, "success_rate": round(ok / polls, 4) if polls else None,
                "last_error": (latest.error if latest is not None and latest.error else
                               str(getattr(h, "last_error", "") or "")),
                "values": values,
            })
        return rows

    def overview(self) -> dict[str, Any]:
        active = self.gw.stage.alarms.active() if self.gw.stage is not None else []
        return {"site": self.site(), "devices": self.device_rows(), "flags": list(FLAGS),
                "alarms": {"active": len(active), "version": self.state.alarm_version}}

    def alarms(self) -> dict[str, Any]:
        t = self.time
        active = []
        for a in (self.gw.stage.alarms.active() if self.gw.stage is not None else []):
            j = a.to_json()
            j["start_local"] = t.full(j["start"])
            j["raised_local"] = t.full(j["raised_at"])
            j["pictures"] = self.pictures(j["alarm_id"])
            active.append(j)
        events = []
        for e in reversed(self.state.events):
            pics = self.pictures(e["alarm_id"]) if e["type"] == "raised" else []
            events.append({**e, "ts_local": t.full(e["ts"]), "pictures": pics})
        return {"site": self.site(), "active": active, "events": events}

    def pictures(self, alarm_id: str) -> list[dict[str, Any]]:
        """The camera pictures of an alarm (gateway.alarms.snapshots): each with its URL on this page, or why there
        is none (zh and en: the page switches language by itself)."""
        from gateway.alarms.pictures import why
        from gateway.alarms.snapshots import CameraService

        cams = next((s for s in self.gw.sinks if isinstance(s, CameraService)), None)
        if cams is None:
            return []
        out = []
        for p in cams.by_alarm.get(alarm_id, []):
            path = cams.store.path(p.file) if p.file else None
            reason = p.reason if path is None or path.exists() else "removed"
            out.append({"camera": p.camera, "taken_local": self.time.full(p.taken_at),
                        "url": f"/snapshots/{p.file}" if not reason else None,
                        "why": {lang: why(reason, lang) for lang in ("zh", "en")} if reason else None,
                        "detail": p.detail})
        return out

    def acknowledge(self, alarm_id: str, by: str, comment: str, where: str = "") -> str | None:
        """The same command path as an MQTT acknowledgement (written to the log, applied once committed; the
        audit trail, where the gateway keeps one, records it there with `source` = cockpit:<client address>)."""
        if not by.strip():
            return "a name is required (who acknowledges)"
        if self.gw.stage is None or not any(a.alarm_id == alarm_id for a in self.gw.stage.alarms.active()):
            return f"no active alarm {alarm_id!r} (cleared already?)"
        return self.gw.command({"type": "ack", "alarm_id": alarm_id, "by": by.strip(), "note": comment.strip(),
                                "source": f"cockpit:{where}"})

    async def delivery(self) -> dict[str, Any]:
        snap = await self.gw.health()
        t = self.time
        sinks = []
        by_name = {s.name: s for s in self.gw.sinks}
        for name, s in (snap.get("sinks") or {}).items():
            status = getattr(by_name.get(name), "status", None)
            last = getattr(status, "last_delivery_ms", None)
            sinks.append({"name": name, "type": s["type"], "target": s["target"], "connected": s["connected"],
                          "depth": s["depth"], "age_s": s["age_s"], "last_error": s["last_error"],
                          "delivered": s["delivered"], "dropped": s["dropped"],
                          "last_delivered": last, "last_delivered_local": t.full(last)})
        lg = snap.get("log") or {}
        cap_mb = self.gw.site.config.store.max_disk_mb
        return {"site": self.site(), "sinks": sinks,
                "log": {**lg, "max_disk_mb": cap_mb, "used_mb": round(lg.get("bytes", 0) / 1e6, 2),
                        "used_ratio": round(lg.get("bytes", 0) / (cap_mb * 1e6), 4) if cap_mb else None}}

    async def device(self, name: str) -> dict[str, Any] | None:
        dev = next((d for d in self.devices if d.name == name), None)
        if dev is None:
            return None
        lg = self.gw.log
        now = self.now_ms()
        t0 = now - HOUR_MS
        readings: list[DeviceReading] = []
        if lg is not None:
            async for batch in lg.readings_since(t0):
                readings.extend(r.reading for r in batch
                                if isinstance(r, ReadingRecord) and r.reading.device == name and r.reading.ts >= t0)
        readings.sort(key=lambda r: r.ts)
        channels: dict[str, list[tuple[int, float | None, str]]] = {}
        units: dict[str, str] = {}
        for r in readings:
            for ch, cv in r.values.items():
                v = cv.value if isinstance(cv.value, int | float) and not isinstance(cv.value, bool) else None
                if v is not None and v != v:
                    v = None
                channels.setdefault(ch, []).append((r.ts, None if v is None else float(v), cv.flag.value))
                units[ch] = cv.unit
        charts = [{"channel": ch, "unit": units[ch],
                   "svg": line_chart(pts, t0, now, units[ch], self.time.short)}
                  for ch, pts in channels.items() if any(v is not None for _, v, _ in pts)]
        errors: dict[str, dict[str, Any]] = {}
        for r in readings:
            if r.error:
                key = r.error.split(":", 1)[0] if r.error.startswith("offline") else r.error
                e = errors.setdefault(key, {"error": r.error, "count": 0, "first": r.ts, **explain(r.error)})
                e["count"] += 1
                e["last"] = r.ts
                e["last_local"] = self.time.full(r.ts)
                e["first_local"] = self.time.full(e["first"])
        row = next(r for r in self.device_rows() if r["name"] == name)
        return {"site": self.site(), "device": row, "address": dev.config.address,
                "interval_s": dev.config.poll_interval_s, "timeout_s": dev.config.timeout_s,
                "charts": charts, "errors": sorted(errors.values(), key=lambda e: -e["last"]),
                "plan": self.plan(name), "readings_last_hour": len(readings)}

    def plan(self, name: str) -> dict[str, Any]:
        """The device's requests and what they cost on the wire (as `plume plan` shows)."""
        from gateway.acquisition.planner import plan_profile, rtu_bytes, rtu_wire_time_s, tcp_bytes
        from gateway.config import RtuBus, RtuOverTcpBus, TcpBus

        dev = next(d for d in self.devices if d.name == name)
        bus = self.gw.site.bus(dev.config.bus)
        if not isinstance(bus, RtuBus | TcpBus | RtuOverTcpBus):
            return {"frames": True, "requests": [], "bytes": 0, "wire_ms": None}
        reqs = plan_profile(dev.profile)
        framing = tcp_bytes if isinstance(bus, TcpBus) else rtu_bytes
        wire_ms = None
        if not isinstance(bus, TcpBus):
            bits = 11 if isinstance(bus, RtuOverTcpBus) else 1 + bus.bytesize + (bus.parity != "N") + bus.stopbits
            wire_ms = round(rtu_wire_time_s(reqs, bus.baudrate, bits) * 1000, 1)
        return {"frames": False, "bytes": sum(sum(framing(r)) for r in reqs), "wire_ms": wire_ms,
                "requests": [{"function": r.function, "address": r.address, "count": r.count,
                              "channels": [getattr(it, "channel", f"status@{it.address}") for it in r.items]}
                             for r in reqs]}

    async def log_tail(self, device: str | None, n: int) -> list[dict[str, Any]]:
        lg = self.gw.log
        if lg is None:
            return []
        out: list[dict[str, Any]] = []
        st = lg.stats()
        upto = st.committed_id
        while upto > 0 and len(out) < n:
            chunk = await lg.read(max(0, upto - 500), 500)
            for rec in reversed(chunk):
                if isinstance(rec, ReadingRecord) and device in (None, rec.reading.device):
                    out.append({"id": rec.id, "seq": rec.seq, "ts_local": self.time.full(rec.reading.ts),
                                **rec.reading.as_json(), "ok": rec.reading.ok, "error": rec.reading.error})
                    if len(out) >= n:
                        break
            if not chunk or chunk[0].id <= max(1, st.first_id):
                break
            upto = chunk[0].id - 1
        out.reverse()
        return out

    async def status(self) -> dict[str, Any]:
        delivery = await self.delivery()
        return {"site": self.site(), "devices": self.device_rows(), "sinks": delivery["sinks"],
                "log": delivery["log"], "alarms": self.alarms()["active"]}
