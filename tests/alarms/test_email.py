"""E-mail notifications end to end: `plume-sim`, `plume run` and a real SMTP server process (aiosmtpd, STARTTLS and
a login) on loopback. A device goes silent (its offline alarm is raised), then answers again (cleared)."""

from __future__ import annotations

import email
import email.policy
import sys
import textwrap
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.mail import EmailConfig, recipients, render
from gateway.localservers import make_tls
from tests.pipeline.helpers import Proc, gateway_cmd, script, sim_control
from tests.pipeline.servers import free_port, wait_for

HERE = Path(__file__).parent
PW = "s3cret-smtp"
SITE = """
site: {{id: mail-site, name: Riverside Tower, timezone: Asia/Shanghai}}
store: {{dir: "{tmp}/log"}}
buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}]
devices:
  - {{name: dust-1, bus: lan, address: 1, kind: dust, poll_interval_s: 1, timeout_s: 0.3,
     registers: [{{channel: pm10, address: 0, function: 3, type: u16, unit: ug/m3, sim: {{constant: 60}}}}]}}
rules:
  - {{id: offline, type: offline, after_s: 3, severity: critical}}
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
      to_by_severity: {{critical: [chief@city.example]}}
      events: [raised, cleared]
      retry: {{initial_s: 0.5, max_s: 1}}
"""


class MailRig:
    """The SMTP server, the simulator (with a control port) and the gateway on one site file."""

    def __init__(self, tmp: Path, start: Callable[..., Proc], *server_args: str):
        self.tmp, self.start = tmp, start
        tls = make_tls(tmp / "tls")
        self.smtp_port, self.sim_port, self.control = free_port(), free_port(), free_port()
        self.out = tmp / "mail"
        self.smtp = start([sys.executable, str(HERE / "smtp_server.py"), "--port", str(self.smtp_port), "--cert",
                           str(tls.cert), "--key", str(tls.key), "--out", str(self.out), "--user", f"plume:{PW}",
                           *server_args], tmp / "smtp.out")
        self.smtp.wait_output("ready")
        self.site = tmp / "site.yaml"
        self.site.write_text(textwrap.dedent(SITE).format(tmp=tmp, sim_port=self.sim_port, smtp_port=self.smtp_port,
                                                          ca=tls.ca), encoding="utf-8")
        self.sim = start([script("plume-sim"), str(self.site), "--control", f"127.0.0.1:{self.control}", "--quiet"],
                         tmp / "sim.out")
        self.sim.wait_output("ready")
        self.gateway = self.start_gateway()

    def start_gateway(self) -> Proc:
        gw = self.start(gateway_cmd(self.site), self.tmp / "gateway.out", {"PLUME_SMTP_PW": PW})
        gw.wait_output("running")
        return gw

    def fault(self, fault: str | None) -> None:
        sim_control(self.control, "dust-1", fault)

    def mails(self, prefix: str = "") -> list[EmailMessage]:
        files = sorted(p for p in self.out.glob(f"{prefix}*.eml") if prefix or p.name[0].isdigit())
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
                for p in files]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., MailRig]]:
    started: list[Proc] = []

    def start(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Proc:
        started.append(Proc(args, log_path, env).start())
        return started[-1]

    yield lambda *args: MailRig(tmp_path, start, *args)
    for p in started:
        if p.running():
            p.kill9()


def kinds(mails: list[EmailMessage]) -> list[str]:
    return [m["X-Plume-Event"] for m in mails]


def test_a_raised_and_a_cleared_alarm_each_arrive_once_over_starttls_with_a_login(rig):
    r = rig()
    r.fault("dead")
    wait_for(lambda: r.mails(), 30, "the raised mail")
    r.fault(None)
    wait_for(lambda: len(r.mails()) >= 2, 30, "the cleared mail")
    assert r.gateway.terminate() == 0
    mails = r.mails()
    assert kinds(mails) == ["raised", "cleared"], "each event once, in order"
    raised, cleared = mails
    assert raised["Subject"].startswith("[超标告警 / ALARM] Riverside Tower: ")
    assert cleared["Subject"].startswith("[告警解除 / CLEARED] Riverside Tower: ")
    assert raised["To"] == "officer@city.example, chief@city.example", "the critical rule's list is added"
    assert raised["Message-ID"] != cleared["Message-ID"]
    text = raised.get_body(("plain",)).get_content()
    assert "站点: Riverside Tower (mail-site)" in text and "Site: Riverside Tower (mail-site)" in text
    assert "Asia/Shanghai (UTC+08:00)" in text, "times are the site's, with the zone named"
    assert "<table>" in raised.get_body(("html",)).get_content()
    assert PW not in (r.tmp / "gateway.out").read_text()


def test_a_kill_9_between_sending_and_the_servers_confirmation_does_not_lose_the_mail(rig):
    r = rig("--hold-first", "60")
    r.fault("dead")
    wait_for(lambda: r.mails("held-"), 30, "the raised mail reaching the server (its 250 held back)")
    r.gateway.kill9()
    r.gateway = r.start_gateway()
    (again, *_) = wait_for(lambda: r.mails(), 30, "the raised mail sent again after the restart")
    (held,) = r.mails("held-")
    assert again["Message-ID"] == held["Message-ID"], "the same message: a mail client shows it once"
    assert kinds([again]) == ["raised"]


def test_a_server_that_says_try_later_is_retried_until_it_takes_the_mail(rig):
    r = rig("--refuse", "2", "--code", "451")
    r.fault("dead")
    (mail,) = wait_for(lambda: r.mails(), 30, "the raised mail after two refusals")
    refused = r.mails("refused-")
    assert len(refused) == 2 and {m["Message-ID"] for m in refused} == {mail["Message-ID"]}
    out = (r.tmp / "gateway.out").read_text()
    assert "SMTP 451" in out and "nothing is lost" in out


def test_a_mail_refused_for_good_is_counted_and_the_next_event_still_goes_out(rig):
    r = rig("--refuse", "1", "--code", "550")
    r.fault("dead")
    wait_for(lambda: r.mails("refused-"), 30, "the raised mail refused")
    r.fault(None)
    (mail,) = wait_for(lambda: r.mails(), 30, "the cleared mail")
    assert kinds([mail]) == ["cleared"]
    out = (r.tmp / "gateway.out").read_text()
    assert "gave up on" in out and "SMTP 550" in out


EV = AlarmEvent(type=EventType.RAISED, rule="pm10-15m", site="s1", device="dust-1", channel="pm10", window="15m",
                ts=1_795_968_840_000, start=1_795_968_000_000, value=180.0, limit=150.0, unit="ug/m3",
                severity="warning", title="PM10 15-minute average over 150")


def test_mail_text_names_the_limit_and_the_zone_and_keeps_one_address_once():
    cfg = EmailConfig(name="m", host="h", sender="a@b.c", to=["x@y.z"],
                      to_by_severity={"warning": ["x@y.z", "w@y.z"]}, language="en")
    assert recipients(cfg, EV) == ["x@y.z", "w@y.z"]
    msg = render(cfg, EV, tz=ZoneInfo("Asia/Shanghai"), site_name="Tower")
    assert msg["Subject"] == "[ALARM] Tower: PM10 15-minute average over 150 180 ug/m3 > 150 ug/m3"
    body = msg.get_body(("plain",)).get_content()
    assert "Limit: 150 ug/m3" in body and "Times in Asia/Shanghai (UTC+08:00)" in body


def test_email_config_needs_recipients_and_real_addresses():
    with pytest.raises(ValueError, match="recipients"):
        EmailConfig(name="m", host="h", sender="a@b.c")
    with pytest.raises(ValueError, match="not an e-mail address: nobody"):
        EmailConfig(name="m", host="h", sender="a@b.c", to=["nobody"])
