"""Benchmark: how long a raised alarm's e-mail takes with no camera, a camera that answers, and a camera that hangs
(for two time boxes). Prints figures; asserts nothing about time.

Run: .venv/bin/python tests/bench/bench_camera_delay.py [--alarms 5]

Real parts on loopback: the aiosmtpd server process of the e-mail tests (STARTTLS and a login), the camera
simulator processes (digest auth; `--mode hang`), a durable log, the `_cameras` consumer and an e-mail route, in
one event loop. Each alarm is appended to the log and timed until its mail is in the server's folder; the
alarms go one after the other. The hanging camera's figure minus the no-camera one is what the hang costs; it
should stay at or under the camera's time box.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway.alarms.cameras import CameraConfig, SnapshotsConfig  # noqa: E402
from gateway.alarms.delivery import EmailSink  # noqa: E402
from gateway.alarms.events import AlarmEvent, EventType  # noqa: E402
from gateway.alarms.mail import EmailConfig, tls_context  # noqa: E402
from gateway.alarms.records import AlarmEntry  # noqa: E402
from gateway.alarms.snapshots import CURSOR, CameraService, SnapshotStore  # noqa: E402
from gateway.core.clock import now_ms  # noqa: E402
from gateway.localservers import make_tls  # noqa: E402
from gateway.store.log import DurableLog  # noqa: E402
from gateway.store.records import ALARM  # noqa: E402
from tests.pipeline.helpers import Proc  # noqa: E402
from tests.pipeline.servers import free_port  # noqa: E402

PW = "bench-smtp"


async def one_case(tmp: Path, label: str, smtp_port: int, ca: Path, out: Path, camera: CameraConfig | None,
                   alarms: int) -> list[float]:
    folder = tmp / label
    folder.mkdir()
    lg = DurableLog(folder / "log.sqlite")
    await lg.open([CURSOR, "officers"])
    committer = asyncio.create_task(lg.run())
    cfg = EmailConfig(name="officers", host="127.0.0.1", port=smtp_port, ca_file=str(ca), username="plume",
                      sender="plume@site.example", to=["duty@city.example"], events=[EventType.RAISED])
    from zoneinfo import ZoneInfo

    mail = EmailSink(cfg, "s1", "Bench", ZoneInfo("Asia/Shanghai"), lg, password=PW, tls=tls_context(cfg))
    tasks = [asyncio.create_task(mail.run())]
    if camera is not None:
        service = CameraService([camera], {camera.name: "pw"}, SnapshotStore(folder / "snapshots",
                                                                              SnapshotsConfig()), "s1", lg)
        mail.cameras = service
        tasks.append(asyncio.create_task(service.run()))
    times = []
    for i in range(alarms):
        before = len(list(out.glob("[0-9]*.eml")))
        t = now_ms()
        ev = AlarmEvent(EventType.RAISED, "s1", f"bench-{label}", "dust-1", "pm10", "15m", t - 900_000 + i, t,
                        182.0, 150.0, "ug/m3", "warning", "PM10 15-minute average over 150 ug/m3")
        start = time.perf_counter()
        lg.append_record(ALARM, AlarmEntry(ev), ev.ts, site="s1")
        while len(list(out.glob("[0-9]*.eml"))) <= before:
            await asyncio.sleep(0.005)
        times.append(time.perf_counter() - start)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lg.begin_close()
    committer.cancel()
    await asyncio.gather(committer, return_exceptions=True)
    await lg.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alarms", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tls = make_tls(tmp / "tls")
        smtp_port, ok_port, hang_port = free_port(), free_port(), free_port()
        out = tmp / "mail"
        procs = [Proc([sys.executable, str(ROOT / "tests/alarms/smtp_server.py"), "--port", str(smtp_port),
                       "--cert", str(tls.cert), "--key", str(tls.key), "--out", str(out), "--user", f"plume:{PW}"],
                      tmp / "smtp.out").start()]
        for port, mode in ((ok_port, "ok"), (hang_port, "hang")):
            procs.append(Proc([sys.executable, "-m", "plume_sim.camera", "--port", str(port), "--user", "admin:pw",
                               "--mode", mode, "--quiet"], tmp / f"camera-{mode}.out").start())
        try:
            for p in procs:
                p.wait_output("ready")

            def cam(port: int, timeout_s: float, attempts: int) -> CameraConfig:
                return CameraConfig(name="gate-east", url=f"http://127.0.0.1:{port}/onvif/snapshot",
                                    username="admin", devices=["dust-1"], timeout_s=timeout_s, attempts=attempts)

            cases: list[tuple[str, CameraConfig | None]] = [
                ("no-camera", None), ("camera-answers", cam(ok_port, 5, 2)),
                ("camera-hangs-1x1s", cam(hang_port, 1, 1)), ("camera-hangs-2x2s", cam(hang_port, 2, 2))]
            print(f"{'case':20} {'time box s':>10} {'median s':>9} {'max s':>7}  (alarm appended -> mail at the "
                  f"server, {a.alarms} alarms each)")
            for label, camera in cases:
                times = asyncio.run(one_case(tmp, label, smtp_port, tls.ca, out, camera, a.alarms))
                box = f"{camera.time_box_s:g}" if camera is not None else "-"
                print(f"{label:20} {box:>10} {statistics.median(times):9.3f} {max(times):7.3f}", flush=True)
        finally:
            for p in procs:
                p.kill9()


if __name__ == "__main__":
    main()
