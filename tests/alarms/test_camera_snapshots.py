"""Camera snapshots inside one event loop, against real parts: the camera simulator as a process (digest auth), a
real HTTP webhook receiver, the durable log. The WeCom robot gets the picture as an image message; the snapshot
folder keeps its budget; a site file naming a camera for a device it lacks does not load."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.alarms.cameras import CameraConfig, SnapshotsConfig
from gateway.alarms.delivery import WebhookSink
from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.records import AlarmEntry
from gateway.alarms.snapshots import CURSOR, CameraService, SnapshotStore
from gateway.alarms.webhooks import WebhookConfig, payload
from gateway.config import ConfigError
from gateway.core.clock import now_ms
from gateway.store.log import DurableLog
from gateway.store.records import ALARM
from tests.pipeline.helpers import Proc
from tests.pipeline.servers import free_port
from tests.scenarios.receiver import WebhookReceiver

TZ = ZoneInfo("Asia/Shanghai")


def event(ts: int, device: str = "dust-1", kind: EventType = EventType.RAISED) -> AlarmEvent:
    return AlarmEvent(kind, "s1", "pm10-15m", device, "pm10", "15m", ts - 900_000, ts, 182.0, 150.0, "ug/m3",
                      "warning", "PM10 15-minute average over 150 ug/m3")


@pytest.fixture
def camera(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = Proc([sys.executable, "-m", "plume_sim.camera", "--port", str(port), "--user", "admin:pw"],
                tmp_path / "camera.out").start()
    proc.wait_output("ready")
    yield f"http://127.0.0.1:{port}/onvif/snapshot"
    proc.kill9()


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[DurableLog]:
    lg = DurableLog(tmp_path / "log.sqlite")
    await lg.open([CURSOR, "officers"])
    task = asyncio.create_task(lg.run())
    yield lg
    lg.begin_close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await lg.close()


async def test_a_wecom_robot_gets_the_alarm_then_its_picture_as_an_image_message(tmp_path, camera, log):
    receiver = WebhookReceiver(free_port())
    await receiver.start()
    cam = CameraConfig(name="gate-east", url=camera, username="admin", devices=["dust-1"], timeout_s=2)
    store = SnapshotStore(tmp_path / "snapshots", SnapshotsConfig())
    service = CameraService([cam], {"gate-east": "pw"}, store, "s1", log)
    cfg = WebhookConfig(name="officers", template="wecom", language="zh", url=receiver.url)  # type: ignore[arg-type]
    hook = WebhookSink(cfg, "s1", "Riverside Tower", TZ, log, url=receiver.url)
    hook.cameras = service
    tasks = [asyncio.create_task(service.run()), asyncio.create_task(hook.run())]
    try:
        ev = event(now_ms())
        log.append_record(ALARM, AlarmEntry(ev), ev.ts, site="s1")
        text, image = await receiver.wait_for(lambda reqs: len(reqs) >= 2, 20)
        assert text.body["msgtype"] == "markdown"
        assert "现场照片: 摄像头 gate-east, 见下一条消息" in text.body["markdown"]["content"]
        assert image.body["msgtype"] == "image"
        data = base64.b64decode(image.body["image"]["base64"])
        assert hashlib.md5(data).hexdigest() == image.body["image"]["md5"], "WeCom checks the MD5"
        ((name, _),) = store.files()
        assert data.startswith(b"\xff\xd8") and (tmp_path / "snapshots" / name).read_bytes() == data
        for _ in range(100):  # the receiver records the request before it answers
            if hook.pictures_sent:
                break
            await asyncio.sleep(0.05)
        assert hook.pictures_sent == 1 and service.taken["gate-east"] == 1
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await receiver.stop()


async def test_dingtalk_shows_the_picture_only_by_url_and_says_so_without_one(tmp_path, camera, log):
    cam = CameraConfig(name="gate-east", url=camera, username="admin", devices=["dust-1"], timeout_s=2)
    service = CameraService([cam], {"gate-east": "pw"}, SnapshotStore(tmp_path / "s", SnapshotsConfig()), "s1", log)
    service._ready.set()
    ev = event(now_ms())
    from gateway.alarms.snapshots import evidence

    shots = await evidence(service, ev)
    (pic, data), = shots
    assert data is not None
    plain = WebhookConfig(name="d", template="dingtalk", url="https://x.example/robot/send")  # type: ignore[arg-type]
    text = payload(plain, ev, TZ, shots=shots)["markdown"]["text"]  # type: ignore[index]
    assert "Picture: camera gate-east, taken (in the e-mail and the cockpit)" in text and "![" not in text
    linked = WebhookConfig(name="d", template="dingtalk", url="https://x.example/robot/send",  # type: ignore[arg-type]
                           picture_url="https://files.example/plume/{file}")
    text = payload(linked, ev, TZ, shots=shots)["markdown"]["text"]  # type: ignore[index]
    assert f"![gate-east](https://files.example/plume/{pic.file})" in text
    assert "ok" not in str(await service.pictures(event(ev.ts, kind=EventType.CLEARED))), "a cleared alarm: none"


def test_the_snapshot_budget_removes_the_oldest_pictures_first_and_counts_them(tmp_path, caplog):
    store = SnapshotStore(tmp_path / "snapshots", SnapshotsConfig(max_mb=0.0025, retention_days=1))  # 2500 bytes
    t = now_ms()
    ev = event(t)
    caplog.set_level(logging.INFO, logger="plume.camera")
    for i in range(4):
        store.save(store.name_for(ev, "gate-east", t + i), b"\xff\xd8" + bytes(998), t + i)
    kept = [n for n, _ in store.files()]
    assert kept == [store.name_for(ev, "gate-east", t + i) for i in (2, 3)], "the two newest fit 2500 bytes"
    assert store.removed_for_budget == 2
    assert "removed the 1 oldest pictures to stay within 0.0025 MB (2 so far" in caplog.text
    store.enforce(t + 2 * 86_400_000)
    assert store.files() == [] and store.removed_for_age == 2, "older than the retention"
    assert store.path("../log.sqlite") is None, "no name leaves the folder"


def test_a_camera_watching_a_device_the_site_lacks_is_a_config_error(make_site):
    site = """
    site: {{id: s1, timezone: Asia/Shanghai}}
    buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: 1502}}]
    devices:
      - {{name: dust-1, bus: lan, address: 1, kind: dust,
         registers: [{{channel: pm10, address: 0, function: 3, type: u16, unit: ug/m3}}]}}
    cameras:
      - {{name: gate-east, url: "http://127.0.0.1:1/snap", username: admin, password: pw, devices: [dust-1, dust-9]}}
      - {{name: gate-east, url: "http://127.0.0.1:1/snap", auth: none, devices: [dust-1]}}
    """
    with pytest.raises(ConfigError) as err:
        make_site(site)
    text = "\n".join(err.value.problems)
    assert "cameras[0].devices: no device named 'dust-9' (devices: dust-1)" in text
    assert "cameras[1].name: duplicate camera 'gate-east'" in text
    with pytest.raises(ValueError, match="needs a username"):
        CameraConfig(name="c", url="http://h/snap", devices=["d"])


async def test_after_a_restart_the_event_keeps_its_picture_from_the_log_and_the_camera_is_not_asked_again(
        tmp_path, camera):
    cam = CameraConfig(name="gate-east", url=camera, username="admin", devices=["dust-1"], timeout_s=2)
    ev = event(now_ms())
    shots = []
    for _ in range(2):  # the gateway, then the gateway after a restart
        lg = DurableLog(tmp_path / "log.sqlite")
        await lg.open([CURSOR])
        committer = asyncio.create_task(lg.run())
        service = CameraService([cam], {"gate-east": "pw"}, SnapshotStore(tmp_path / "s", SnapshotsConfig()), "s1",
                                lg)
        await service.restore()
        service._ready.set()
        shots.append(await service.pictures(ev))
        await lg.flush()
        lg.begin_close()
        committer.cancel()
        await asyncio.gather(committer, return_exceptions=True)
        await lg.close()
    assert shots[0] == shots[1] and shots[0][0].file is not None
    assert (tmp_path / "camera.out").read_text().count(": 200 frame") == 1, "one picture taken, not two"


def test_a_camera_url_names_the_camera_in_logs_but_not_the_credentials_it_carries():
    from gateway.core.secrets import add_url_credentials, redact

    url = "http://viewer:pw-in-url-7@192.0.2.10/cgi-bin/snapshot.cgi?channel=1&token=tok-in-query-8"
    add_url_credentials(url)
    shown = redact(f"camera gate-east ({url}) did not answer")
    assert "pw-in-url-7" not in shown and "tok-in-query-8" not in shown
    assert "192.0.2.10/cgi-bin/snapshot.cgi" in shown
