"""SMS notifications end to end: `plume-sim`, `plume run` and a fake SMS provider process (an HTTP server on
loopback answering like an SMS API: 200 with a code). A device goes silent (its offline alarm is raised), then
answers again (cleared)."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.alarms.sms_text import sms_length
from gateway.localservers import loopback_http
from tests.pipeline.helpers import FastClock, Proc, gateway_cmd, script, sim_control
from tests.pipeline.servers import free_port, wait_for

HERE = Path(__file__).parent
PW = "s3cret-sms-pw"
KEY = "K3Yabc123456"
SITE = """
site: {{id: sms-site, name: 河畔工地, timezone: Asia/Shanghai}}
store: {{dir: "{tmp}/log", commit_interval_ms: 100}}
buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}]
devices:
  - {{name: dust-1, bus: lan, address: 1, kind: dust, poll_interval_s: {poll_s}, timeout_s: 0.3, retries: 0,
     backoff_max_s: {backoff_s},
     registers: [{{channel: pm10, address: 0, function: 3, type: u16, unit: ug/m3, sim: {{constant: 60}}}}]}}
rules:
  - {{id: offline, type: offline, after_s: {after_s}, severity: critical, title: 监测仪离线,
     escalate_after_s: {escalate_after_s}}}
cockpit: {{enabled: true, port: {cockpit_port}}}
notify:
  sms:
    - name: phones
      url: http://127.0.0.1:{sms_port}/sms/send?apikey={key}
      auth: {{type: basic, username: plume, password_env: PLUME_SMS_PW}}
      form_fields: {{mobile: "{{phones}}", text: "{{text}}", uid: "{{ref}}", event: "{{event}}", alarm: "{{alarm_id}}"}}
      to: [13800000001, 13800000002]
      escalate_to: [13900000009]
      success: {{field: code, equals: 0, retry_values: [33]}}
      retry: {{initial_s: 0.5, max_s: 1}}
"""


class SmsRig:
    """The SMS provider, the simulator (with a control port) and the gateway on one site file."""

    def __init__(self, tmp: Path, start: Callable[..., Proc], *server_args: str, speedup: float = 1.0,
                 after_s: float = 1, escalate_after_s: float = 3600):
        self.tmp, self.start = tmp, start
        self.clock = FastClock(speedup)
        self.sms_port, self.sim_port, self.control, self.cockpit = free_port(), free_port(), free_port(), free_port()
        self.out = tmp / "sms.jsonl"
        self.provider = start([sys.executable, str(HERE / "sms_server.py"), "--port", str(self.sms_port), "--out",
                               str(self.out), *server_args], tmp / "provider.out")
        self.provider.wait_output("ready")
        self.site = tmp / "site.yaml"
        self.site.write_text(textwrap.dedent(SITE).format(
            tmp=tmp, sim_port=self.sim_port, sms_port=self.sms_port, key=KEY, cockpit_port=self.cockpit,
            after_s=after_s, escalate_after_s=escalate_after_s, poll_s=speedup * 0.25, backoff_s=speedup * 0.5),
            encoding="utf-8")
        self.sim = start([script("plume-sim"), str(self.site), "--control", f"127.0.0.1:{self.control}", "--quiet"],
                         tmp / "sim.out")
        self.sim.wait_output("ready")
        self.gateway = self.start_gateway()

    def start_gateway(self) -> Proc:
        gw = self.start(gateway_cmd(self.site), self.tmp / "gateway.out", {"PLUME_SMS_PW": PW, **self.clock.env()})
        gw.wait_output("running")
        return gw

    def fault(self, fault: str | None) -> None:
        sim_control(self.control, "dust-1", fault)

    def requests(self, answered: bool | None = True) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        rows = [json.loads(line) for line in self.out.read_text(encoding="utf-8").splitlines() if line]
        return [r for r in rows if answered is None or r["answered"] is answered]

    def delivered(self) -> list[dict[str, Any]]:
        """The requests the provider took (code 0)."""
        return [r for r in self.requests() if r["answer"]["code"] == 0]

    def events(self) -> list[str]:
        """The events the phones got, a request sent again with the same key (after a kill -9) counted once."""
        seen: dict[str, str] = {}
        for x in self.delivered():
            seen.setdefault(x["body"]["uid"], x["body"]["event"])
        return list(seen.values())

    def acknowledge(self, alarm_id: str) -> None:
        r = loopback_http().post(f"http://127.0.0.1:{self.cockpit}/api/alarms/ack",
                                 json={"alarm_id": alarm_id, "by": "王工"}, timeout=10)
        assert r.status_code == 200, r.text


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., SmsRig]]:
    started: list[Proc] = []

    def start(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Proc:
        started.append(Proc(args, log_path, env).start())
        return started[-1]

    yield lambda *args, **kw: SmsRig(tmp_path, start, *args, **kw)
    for p in started:
        if p.running():
            p.kill9()


def test_a_raised_and_a_cleared_alarm_each_reach_the_phones_once_as_one_sms(rig):
    r = rig()
    r.fault("dead")
    wait_for(lambda: r.delivered(), 30, "the raised SMS")
    r.fault(None)
    wait_for(lambda: len(r.delivered()) >= 2, 30, "the cleared SMS")
    assert r.gateway.terminate() == 0
    raised, cleared = r.delivered()
    assert r.events() == ["raised", "cleared"], "each event once, in order"
    assert raised["path"] == "/sms/send" and raised["query"] == {"apikey": KEY}
    assert raised["body"]["mobile"] == "13800000001,13800000002", "every number in one request"
    assert raised["headers"]["authorization"].startswith("Basic ")
    assert raised["body"]["uid"] == raised["headers"]["idempotency-key"] != cleared["body"]["uid"]
    text = raised["body"]["text"]
    assert text.startswith("超标告警ALARM 河畔工地 dust-1 监测仪离线 自") and text.endswith(" UTC+8起"), text
    assert cleared["body"]["text"].startswith("告警解除CLEARED 河畔工地 dust-1 ")
    assert all(sms_length(x["body"]["text"]) <= (70, 70) for x in (raised, cleared)), "one SMS each"
    out = (r.tmp / "gateway.out").read_text()
    assert PW not in out and KEY not in out


def test_a_provider_that_answers_too_often_is_retried_until_it_takes_the_sms(rig):
    r = rig("--busy", "2")
    r.fault("dead")
    (sms,) = wait_for(lambda: r.delivered(), 30, "the raised SMS after two rate-limit answers")
    busy = [x for x in r.requests() if x["answer"]["code"] == 33]
    assert len(busy) == 2 and {x["body"]["uid"] for x in busy} == {sms["body"]["uid"]}
    out = (r.tmp / "gateway.out").read_text()
    assert "code=33" in out and "nothing is lost" in out


def test_a_kill_9_between_the_provider_taking_the_sms_and_its_answer_does_not_lose_it(rig):
    r = rig("--hold-first", "60")
    r.fault("dead")
    (held,) = wait_for(lambda: r.requests(answered=False), 30, "the raised SMS at the provider (answer held)")
    r.gateway.kill9()
    r.gateway = r.start_gateway()
    (again, *_) = wait_for(lambda: r.delivered(), 30, "the raised SMS sent again after the restart")
    assert again["body"]["uid"] == held["body"]["uid"], "the same idempotency key: a provider dedups on it"
    assert again["body"]["event"] == "raised"


# --- escalation, in fast motion: the gateway's clock runs forty times as fast ---------------------------------
SPEEDUP = 40


def test_an_alarm_nobody_acknowledges_is_escalated_once_to_the_second_list(rig):
    r = rig(speedup=SPEEDUP, after_s=30, escalate_after_s=120)  # 3 s real
    r.fault("dead")
    wait_for(lambda: "escalated" in r.events(), 60, "the escalated SMS (120 s on the gateway's clock)")
    r.fault(None)
    wait_for(lambda: "cleared" in r.events(), 60, "the cleared SMS")
    assert r.gateway.terminate() == 0
    assert r.events() == ["raised", "escalated", "cleared"]
    raised, escalated, _ = r.delivered()
    assert raised["body"]["mobile"] == "13800000001,13800000002"
    assert escalated["body"]["mobile"] == "13900000009", "the escalation goes to the second list"
    assert escalated["body"]["text"].startswith("无人确认升级ESCALATED 河畔工地 dust-1 监测仪离线 自")
    assert escalated["body"]["alarm"] == raised["body"]["alarm"]


def test_an_alarm_acknowledged_in_time_is_not_escalated(rig):
    r = rig(speedup=SPEEDUP, after_s=30, escalate_after_s=240)  # 6 s real to acknowledge in
    r.fault("dead")
    (raised,) = wait_for(lambda: r.delivered(), 60, "the raised SMS")
    r.acknowledge(raised["body"]["alarm"])
    deadline = r.clock.now_ms() + 240_000 + 20_000
    wait_for(lambda: r.clock.now_ms() > deadline, 60, "the escalation time passing on the gateway's clock")
    r.fault(None)
    wait_for(lambda: "cleared" in r.events(), 60, "the cleared SMS")
    assert r.events() == ["raised", "cleared"], "acknowledged in time: no escalation"


def test_a_restart_past_the_escalation_time_escalates_exactly_once(rig):
    r = rig(speedup=SPEEDUP, after_s=30, escalate_after_s=120)  # 3 s real
    r.fault("dead")
    wait_for(lambda: r.delivered(), 60, "the raised SMS")
    r.gateway.kill9()  # down before the escalation time ...
    deadline = r.clock.now_ms() + 120_000 + 20_000
    wait_for(lambda: r.clock.now_ms() > deadline, 60, "the escalation time passing while the gateway is down")
    r.gateway = r.start_gateway()  # ... and back after it
    wait_for(lambda: "escalated" in r.events(), 60, "the escalated SMS after the restart")
    r.gateway.kill9()  # once more, with the escalation in the log
    r.gateway = r.start_gateway()
    r.fault(None)
    wait_for(lambda: "cleared" in r.events(), 60, "the cleared SMS")
    assert r.events() == ["raised", "escalated", "cleared"], "escalated exactly once across two restarts"
