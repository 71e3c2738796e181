"""Camera snapshots with e-mail, end to end: the camera simulator (`python -m plume_sim.camera`, digest auth, or one
that hangs), `plume-sim`, `plume run` and a real SMTP server process (aiosmtpd, STARTTLS and a login) on loopback.
A device goes silent (its offline alarm is raised), then answers again (cleared)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.alarms.pictures import Picture
from gateway.localservers import loopback_http, make_tls
from gateway.store.log import DurableLog
from tests.alarms.test_email import HERE, PW, kinds
from tests.pipeline.helpers import Proc, gateway_cmd, script, sim_control
from tests.pipeline.servers import free_port, wait_for

CAM_PW = "cam-s3cret-9"
SITE = """
site: {{id: cam-site, name: Riverside Tower, timezone: Asia/Shanghai}}
store: {{dir: "{tmp}/log", commit_interval_ms: 100}}
buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}]
devices:
  - {{name: dust-1, bus: lan, address: 1, kind: dust, poll_interval_s: 1, timeout_s: 0.3, backoff_max_s: 1,
     registers: [{{channel: pm10, address: 0, function: 3, type: u16, unit: ug/m3, sim: {{constant: 60}}}}]}}
rules:
  - {{id: offline, type: offline, after_s: 3, severity: critical}}
cameras:
{cameras}
notify:
  email:
    - name: officers
      host: 127.0.0.1
      port: {smtp_port}
      ca_file: {ca}
      username: plume
      password_env: PLUME_SMTP_PW
      sender: plume@site.example
      to: [officer@city.example]
      events: [raised, cleared]
      retry: {{initial_s: 0.5, max_s: 1}}
"""


CAMERA = """\
  - {{name: {name}, url: "http://127.0.0.1:{port}/onvif/snapshot", auth: digest, username: admin,
     password: {password}, devices: [dust-1], timeout_s: {timeout}, attempts: 2}}
"""


class CameraRig:
    """SMTP server, camera simulators (name -> (mode, the password the gateway gives)), the device simulator and
    the gateway on one site file; the processes start side by side."""

    def __init__(self, tmp: Path, start: Callable[..., Proc], cameras: dict[str, tuple[str, str]]):
        self.tmp, self.start = tmp, start
        tls = make_tls(tmp / "tls")
        self.smtp_port, self.sim_port, self.control = free_port(), free_port(), free_port()
        self.out = tmp / "mail"
        self.ports = {name: free_port() for name in cameras}
        # the hanging camera gives up after 1 s a try; one that answers gets longer, which a loaded machine's
        # camera simulator never exceeds (its answer, or its refusal, is what the test is about)
        blocks = "".join(CAMERA.format(name=name, port=self.ports[name], password=pw,
                                       timeout=1 if mode == "hang" else 5)
                         for name, (mode, pw) in cameras.items())
        self.site = tmp / "site.yaml"
        self.site.write_text(textwrap.dedent(SITE).format(tmp=tmp, sim_port=self.sim_port, smtp_port=self.smtp_port,
                                                          ca=tls.ca, cameras=blocks), encoding="utf-8")
        self.smtp = start([sys.executable, str(HERE / "smtp_server.py"), "--port", str(self.smtp_port), "--cert",
                           str(tls.cert), "--key", str(tls.key), "--out", str(self.out), "--user", f"plume:{PW}"],
                          tmp / "smtp.out")
        self.cameras = {name: start([sys.executable, "-m", "plume_sim.camera", "--port", str(self.ports[name]),
                                     "--user", f"admin:{CAM_PW}", "--mode", mode], tmp / f"camera-{name}.out")
                        for name, (mode, _) in cameras.items()}
        self.sim = start([script("plume-sim"), str(self.site), "--control", f"127.0.0.1:{self.control}", "--quiet"],
                         tmp / "sim.out")
        for p in (self.smtp, *self.cameras.values(), self.sim):
            p.wait_output("ready")
        self.gateway = start(gateway_cmd(self.site), tmp / "gateway.out", {"PLUME_SMTP_PW": PW})
        self.gateway.wait_output("running")

    def fault(self, fault: str | None) -> None:
        sim_control(self.control, "dust-1", fault)

    def mails(self) -> list[EmailMessage]:
        import email
        import email.policy

        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
                for p in sorted(self.out.glob("[0-9]*.eml"))]

    def snapshot_records(self) -> list[Picture]:
        async def read() -> list[Picture]:
            async with DurableLog(self.tmp / "log" / "log.sqlite") as lg:
                await lg.open()
                return [r.payload for r in await lg.records_of_kind("snapshot", 0)]  # type: ignore[attr-defined]

        return asyncio.run(read())

    def output(self) -> str:
        return (self.tmp / "gateway.out").read_text()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., CameraRig]]:
    started: list[Proc] = []

    def start(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Proc:
        started.append(Proc(args, log_path, env).start())
        return started[-1]

    yield lambda cameras: CameraRig(tmp_path, start, cameras)
    for p in started:
        if p.running():
            p.kill9()


def jpegs(mail: EmailMessage) -> list[tuple[str, bytes]]:
    return [(str(part.get_filename()), part.get_content()) for part in mail.iter_attachments()
            if part.get_content_type() == "image/jpeg"]


def text_of(mail: EmailMessage) -> str:
    return str(mail.get_body(("plain",)).get_content())  # type: ignore[union-attr]


def test_the_raised_alarm_arrives_once_with_the_cameras_picture_attached_and_the_cleared_once_without(rig):
    r = rig({"gate-east": ("ok", CAM_PW)})
    r.fault("dead")
    wait_for(lambda: r.mails(), 30, "the raised mail")
    r.fault(None)
    wait_for(lambda: len(r.mails()) >= 2, 30, "the cleared mail")
    assert r.gateway.terminate() == 0
    raised, cleared = r.mails()
    assert kinds([raised, cleared]) == ["raised", "cleared"], "each event once, in order"
    ((name, data),) = jpegs(raised)
    assert data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9"), "a JPEG"
    assert (r.tmp / "log" / "snapshots" / name).read_bytes() == data, "kept next to the log"
    assert "现场照片: 摄像头 gate-east, 见附件" in text_of(raised)
    assert "Picture: camera gate-east, attached" in text_of(raised)
    assert f"cid:{name.removesuffix('.jpg')}@plume" in raised.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert jpegs(cleared) == [] and "Picture" not in text_of(cleared)
    (pic,) = r.snapshot_records()
    assert pic.file == name and pic.camera == "gate-east" and pic.event_id.endswith("/raised"), \
        "the log links the event to its picture"
    assert CAM_PW not in r.output()


def test_a_camera_that_hangs_and_one_that_refuses_the_login_do_not_hold_the_mail_which_says_why(rig):
    r = rig({"gate-hang": ("hang", CAM_PW), "gate-east": ("ok", "wrong-password-1")})
    r.fault("dead")
    (mail,) = wait_for(lambda: r.mails(), 30, "the raised mail although one camera never answers")
    hanging = r.cameras["gate-hang"]
    assert hanging.running() and "hanging" in hanging.output(), "that camera is still hanging: the mail did not wait"
    assert jpegs(mail) == []
    assert mail["X-Plume-Pictures"] == "gate-hang: missing (timeout), gate-east: missing (auth)"
    text = text_of(mail)
    assert "No picture: camera gate-hang did not answer" in text and "goes out without it" in text
    assert "无现场照片: 摄像头 gate-hang 无响应" in text
    assert "No picture: camera gate-east refused the login (wrong username or password)" in text
    assert "无现场照片: 摄像头 gate-east 拒绝登录" in text
    assert r.gateway.terminate() == 0
    pics = {p.camera: p for p in r.snapshot_records()}
    assert pics["gate-hang"].file is None and pics["gate-hang"].reason == "timeout", "given up within the time box"
    assert "no answer within 1 s, 2 attempts" in pics["gate-hang"].detail or "time box" in pics["gate-hang"].detail
    assert pics["gate-east"].reason == "auth"
    out = r.output()
    url = f"http://127.0.0.1:{r.ports['gate-east']}/onvif/snapshot"
    assert f"camera gate-east ({url})" in out and "login refused" in out, "said in the log, with the camera's URL"
    assert "1 failed snapshots of this camera" in out, "counted"
    assert "wrong-password-1" not in out
    refused = r.cameras["gate-east"].output().count("401 (refused)")
    assert refused == 1, "the camera saw the wrong login (digest) once: not retried"


def test_the_camera_simulator_serves_decodable_jpegs_with_digest_auth(tmp_path):
    import httpx

    port = free_port()
    cam = Proc([sys.executable, "-m", "plume_sim.camera", "--port", str(port), "--user", "admin:pw"],
               tmp_path / "camera.out").start()
    try:
        cam.wait_output("ready")
        url = f"http://127.0.0.1:{port}/ISAPI/Streaming/channels/101/picture"
        assert loopback_http().get(url).status_code == 401
        assert loopback_http().get(url, auth=httpx.DigestAuth("admin", "nope")).status_code == 401
        a, b = (loopback_http().get(url, auth=httpx.DigestAuth("admin", "pw")) for _ in range(2))
        assert a.status_code == 200 and a.headers["content-type"] == "image/jpeg"
        assert a.content.startswith(b"\xff\xd8") and a.content != b.content, "a new frame each time"
        djpeg = subprocess.run(["djpeg", "-pnm"], input=a.content, capture_output=True, check=False) \
            if Path("/usr/bin/djpeg").exists() else None
        if djpeg is not None:
            assert djpeg.returncode == 0 and djpeg.stdout.startswith(b"P5\n96 64\n"), "a decoder reads it"
    finally:
        cam.kill9()
