"""Camera snapshots on alarm: fetch a picture from each camera watching the alarm's device, keep it next to the log,
and link it to the alarm event with a `snapshot` record in the log.

Why a record of its own rather than a field of the event: the `raised` event is logged (and judged, and sent to
MQTT) the moment the rule decides, and a picture takes up to the camera's time box to arrive, or never does. So the
event stays as it was and a `snapshot` record written after it names the event (`event_id`, `alarm_id`), the camera
and the file, or why there is none (timeout, authentication, HTTP error, not a JPEG). Notifications, the cockpit and
a restart read the link from there.

The fetch never holds anything up: the regulatory stage does not know about it, and a notification waits for a
picture at most the camera's time box (`CameraConfig.time_box_s`), then goes out saying it has none. `CameraService`
is a log consumer (cursor `_cameras`, a name no site file can take) so a raised alarm gets its picture even when no
notification route wants it; notification routes ask it for an event's pictures and start the fetch themselves if
they read the event first. Pictures are kept with their own retention and disk budget (`SnapshotStore`: oldest
removed first, counted and logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from gateway.alarms.cameras import RETRY_PAUSE_S, CameraConfig, SnapshotsConfig
from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.pictures import Picture, Shot
from gateway.alarms.records import AlarmRecord
from gateway.core.clock import now_ms
from gateway.core.secrets import redact, safe_url
from gateway.sinks.base import HealthProvider, SinkStatus
from gateway.store.records import ALARM, SNAPSHOT, Encoded, PayloadRecord, RecordType, register

if TYPE_CHECKING:
    import httpx

    from gateway.store.log import DurableLog

log = logging.getLogger("plume.camera")
CURSOR = "_cameras"
REMEMBERED = 5000  # alarm events whose pictures are kept in memory (for notifications and the cockpit)
STALE_MS = 600_000  # an alarm older than this when first seen (the gateway was down): no picture of a later moment
FILE = re.compile(r"^[0-9]{13}-[A-Za-z0-9][A-Za-z0-9_.-]*-[0-9a-f]{12}\.jpg$")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(slots=True)
class SnapshotRecord(PayloadRecord[Picture]):
    """The link between an alarm event and its picture (or the reason there is none)."""

    kind: ClassVar[str] = SNAPSHOT


def _encode(p: Picture, ts: int) -> Encoded:
    return Encoded(ts, "" if p.ok else "M", _dumps(asdict(p)))


_FIELDS = frozenset(Picture.__dataclass_fields__)


def _decode(layout: Any, ts: int, flags: str, vals: str) -> Picture:
    body = json.loads(vals)  # fields a later version adds are ignored, missing ones take their defaults
    return Picture(**{k: v for k, v in body.items() if k in _FIELDS})


register(RecordType(SNAPSHOT, SnapshotRecord, _encode, _decode, lambda p: p.site))


# --- the folder ----------------------------------------------------------------------------------------------------
class SnapshotStore:
    """The JPEG files: `<taken ms>-<camera>-<key>.jpg`, so the name sorts by age. Kept `retention_days`; over
    `max_mb` the oldest go first."""

    def __init__(self, folder: Path, cfg: SnapshotsConfig):
        self.folder = folder
        self.cfg = cfg
        self.removed_for_budget = 0
        self.removed_for_age = 0

    @staticmethod
    def name_for(ev: AlarmEvent, camera: str, taken_at: int) -> str:
        return f"{taken_at:013d}-{camera}-{ev.idempotency_key[:12]}.jpg"

    def path(self, name: str) -> Path | None:
        """The file of a picture name, or None for a name that is not one (no path ever leaves the folder)."""
        return self.folder / name if FILE.match(name) else None

    def save(self, name: str, data: bytes, now: int) -> None:
        """Write atomically (a reader never sees half a picture), then keep the folder within its limits."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.folder / name)
        self.enforce(now)

    def files(self) -> list[tuple[str, int]]:
        """(name, size) oldest first."""
        if not self.folder.is_dir():
            return []
        out = []
        for p in self.folder.iterdir():
            if FILE.match(p.name):
                with contextlib.suppress(OSError):
                    out.append((p.name, p.stat().st_size))
        return sorted(out)

    def enforce(self, now: int) -> list[str]:
        """Remove pictures older than the retention, then the oldest until the folder fits its budget."""
        files = self.files()
        cutoff = now - int(self.cfg.retention_days * 86_400_000)
        aged = [n for n, _ in files if int(n[:13]) < cutoff]
        budget = int(self.cfg.max_mb * 1_000_000)
        rest = [(n, s) for n, s in files if n not in set(aged)]
        total = sum(s for _, s in rest)
        over = []
        while rest and total > budget:
            n, s = rest.pop(0)
            over.append(n)
            total -= s
        for n in [*aged, *over]:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / n).unlink()
        self.removed_for_age += len(aged)
        self.removed_for_budget += len(over)
        if aged:
            log.info("snapshots: removed %d pictures older than %g days (%d so far)", len(aged),
                     self.cfg.retention_days, self.removed_for_age)
        if over:
            log.info("snapshots: removed the %d oldest pictures to stay within %g MB (%d so far; %s)", len(over),
                     self.cfg.max_mb, self.removed_for_budget, ", ".join(over))
        return [*aged, *over]


# --- one camera ----------------------------------------------------------------------------------------------------
async def fetch(client: httpx.AsyncClient, cam: CameraConfig, password: str | None) -> tuple[bytes | None, str, str]:
    """(JPEG, "", "") or (None, reason, detail): `attempts` tries of `timeout_s` each; a refused login or an answer
    that is not a picture is not retried (it will not change)."""
    import httpx

    auth: httpx.Auth | None = None
    if cam.auth == "digest":
        auth = httpx.DigestAuth(cam.username or "", password or "")
    elif cam.auth == "basic":
        auth = httpx.BasicAuth(cam.username or "", password or "")
    reason, detail = "", ""
    for attempt in range(1, cam.attempts + 1):
        if attempt > 1:
            await asyncio.sleep(RETRY_PAUSE_S)
        try:
            resp = await client.get(cam.url, auth=auth, timeout=cam.timeout_s)
        except httpx.TimeoutException:
            reason, detail = "timeout", f"no answer within {cam.timeout_s:g} s"
            continue
        except httpx.HTTPError as exc:
            reason, detail = "network", redact(f"{type(exc).__name__}: {exc}".replace(cam.url, safe_url(cam.url)))
            continue
        if resp.status_code in (401, 403):
            return None, "auth", f"HTTP {resp.status_code}: login refused (check username and password)"
        if resp.status_code != 200:
            reason, detail = "http", f"HTTP {resp.status_code}"
            if resp.status_code >= 500:
                continue
            return None, reason, detail
        data = resp.content
        if len(data) > cam.max_bytes:
            return None, "too_big", f"{len(data)} bytes, more than max_bytes {cam.max_bytes}"
        if not data.startswith(b"\xff\xd8"):
            return None, "not_jpeg", f"the answer is not a JPEG ({resp.headers.get('content-type', '?')})"
        return data, "", ""
    return None, reason, f"{detail}, {cam.attempts} attempts" if cam.attempts > 1 else detail


# --- the service ---------------------------------------------------------------------------------------------------
class CameraService:
    """Takes the pictures of raised alarms (a log consumer) and answers the notification routes' `pictures(event)`."""

    type = "camera"

    def __init__(self, cameras: list[CameraConfig], passwords: dict[str, str | None], store: SnapshotStore,
                 site_id: str, log_: DurableLog):
        self.cameras = cameras
        self.passwords = passwords
        self.store = store
        self.site_id = site_id
        self.log = log_
        self.name = CURSOR
        self.consumer = log_.consumer(CURSOR)
        self.status = SinkStatus(CURSOR, self.type, f"{len(cameras)} cameras")
        self.status.connected = True
        self.taken: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.by_event: dict[str, list[Picture]] = {}
        self.by_alarm: dict[str, list[Picture]] = {}
        self._jobs: dict[str, asyncio.Task[list[Picture]]] = {}
        self._ready = asyncio.Event()
        self._client: httpx.AsyncClient | None = None

    def set_health(self, provider: HealthProvider, interval_s: float | None = None) -> None:
        pass

    def watching(self, device: str) -> list[CameraConfig]:
        return [c for c in self.cameras if device in c.devices]

    def wants(self, ev: AlarmEvent) -> bool:
        return ev.type is EventType.RAISED and bool(self.watching(ev.device))

    def time_box_s(self, ev: AlarmEvent) -> float:
        return max((c.time_box_s for c in self.watching(ev.device)), default=0.0)

    async def pictures(self, ev: AlarmEvent) -> list[Picture]:
        """The event's pictures, waiting for them at most the cameras' time box (a raised alarm of a watched device;
        [] for any other event)."""
        if not self.wants(ev):
            return []
        box = self.time_box_s(ev) + 1.0  # the fetch ends itself within the box; this is the backstop
        try:
            async with asyncio.timeout(box):
                await self._ready.wait()
                return list(await asyncio.shield(self._start(ev)))
        except TimeoutError:
            return [Picture(c.name, None, "timeout", f"no picture within {box:g} s", event_id=ev.event_id)
                    for c in self.watching(ev.device)]

    def _start(self, ev: AlarmEvent) -> asyncio.Future[list[Picture]]:
        """The pictures of `ev`: known (taken before, also before a restart), being taken, or taken now."""
        done = self.by_event.get(ev.event_id)
        if done is not None:
            fut: asyncio.Future[list[Picture]] = asyncio.get_running_loop().create_future()
            fut.set_result(done)
            return fut
        job = self._jobs.get(ev.event_id)
        if job is None:
            job = self._jobs[ev.event_id] = asyncio.create_task(self._take(ev), name=f"snapshot[{ev.event_id}]")
        return job

    async def _take(self, ev: AlarmEvent) -> list[Picture]:
        cams = self.watching(ev.device)
        age = now_ms() - ev.ts
        if age > STALE_MS:
            pics = [Picture(c.name, None, "stale", f"the alarm was raised {age // 1000} s before the gateway saw it "
                            "(it was not running); a picture now would show a later moment", now_ms(), 0,
                            ev.event_id, ev.alarm_id, ev.site) for c in cams]
        else:
            pics = list(await asyncio.gather(*(self._one(ev, c) for c in cams)))
        for p in pics:
            self.log.append_record(SNAPSHOT, p, p.taken_at, site=ev.site)
        self._remember(pics)
        self._jobs.pop(ev.event_id, None)
        return pics

    def _remember(self, pics: Iterable[Picture]) -> None:
        for p in pics:
            self.by_event.setdefault(p.event_id, []).append(p)
            self.by_alarm.setdefault(p.alarm_id, []).append(p)
        for kept in (self.by_event, self.by_alarm):  # a long run keeps the newest; the log keeps them all
            while len(kept) > REMEMBERED:
                del kept[next(iter(kept))]

    async def _one(self, ev: AlarmEvent, cam: CameraConfig) -> Picture:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient()
        try:
            async with asyncio.timeout(cam.time_box_s):
                data, reason, detail = await fetch(self._client, cam, self.passwords.get(cam.name))
        except TimeoutError:
            data, reason, detail = None, "timeout", f"cut off at its time box of {cam.time_box_s:g} s"
        except Exception as exc:  # a camera's odd answer must not stop the notification
            log.exception("camera %s: unexpected failure fetching a snapshot", cam.name)
            data, reason, detail = None, "network", redact(f"{type(exc).__name__}: {exc}")[:200]
        taken = now_ms()
        if data is not None:
            name = self.store.name_for(ev, cam.name, taken)
            try:
                await asyncio.to_thread(self.store.save, name, data, taken)
            except OSError as exc:
                data, reason, detail = None, "disk", f"cannot store the picture: {exc.strerror or exc}"
            else:
                self.taken[cam.name] += 1
                log.info("camera %s: snapshot %s for %s (%d bytes)", cam.name, name, ev.alarm_id, len(data))
                return Picture(cam.name, name, "", "", taken, len(data), ev.event_id, ev.alarm_id, ev.site)
        self.failed[cam.name] += 1
        self.status.failures += 1
        self.status.last_error = f"{cam.name}: {detail}"
        log.warning("camera %s (%s): no snapshot for %s: %s; its notifications go out without the picture "
                    "(%d failed snapshots of this camera so far)", cam.name, safe_url(cam.url, query=False),
                    ev.alarm_id, detail, self.failed[cam.name])
        return Picture(cam.name, None, reason, detail, taken, 0, ev.event_id, ev.alarm_id, ev.site)

    async def restore(self) -> None:
        """What the log says was taken (or not) within the pictures' retention: a restart neither fetches an
        event's pictures again nor forgets them."""
        since = now_ms() - int(self.store.cfg.retention_days * 86_400_000)
        for rec in await self.log.records_of_kind(SNAPSHOT, since):
            if isinstance(rec, SnapshotRecord) and rec.payload.event_id not in self._jobs:
                self._remember([rec.payload])

    async def run(self) -> None:
        try:
            if not self._ready.is_set():
                await self.restore()
                self._ready.set()
                await asyncio.to_thread(self.store.enforce, now_ms())
            after = self.consumer.acked
            while True:
                after = max(after, self.consumer.acked)
                records, upto = await self.log.read_kinds(after, (ALARM,), limit=100)
                if not records and upto <= after and self.log.closing:
                    return
                jobs = [self._start(r.payload.event) for r in records
                        if isinstance(r, AlarmRecord) and not r.payload.checkpoint and self.wants(r.payload.event)]
                if jobs:
                    await asyncio.gather(*jobs)
                    self.status.delivered([r for r in records if isinstance(r, AlarmRecord)])
                after = upto
                self.log.ack(self.consumer, after, len(jobs))
        finally:
            self._ready.set()
            if self._client is not None:
                await self._client.aclose()
                self._client = None


async def evidence(service: CameraService | None, ev: AlarmEvent) -> list[Shot]:
    """An event's pictures with their JPEGs, waiting at most the cameras' time box ([] without cameras)."""
    if service is None:
        return []
    out: list[Shot] = []
    for pic in await service.pictures(ev):
        path = service.store.path(pic.file) if pic.file else None
        data = None
        if path is not None:
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError:
                pic = Picture(pic.camera, None, "removed", pic.file or "", pic.taken_at, 0, pic.event_id,
                              pic.alarm_id, pic.site)
        out.append((pic, data))
    return out
