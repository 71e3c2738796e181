"""SMS through an HTTP SMS gateway, without the network: the message as a phone counts it, the request a provider
gets, what its answers mean, and the route's config errors."""

from __future__ import annotations

import base64
import dataclasses
import json
import urllib.parse
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.sms import SmsConfig, SmsSuccess, classify, message, recipients, render
from gateway.alarms.sms_text import fit, sms_length
from gateway.alarms.webhooks import wants
from tests.alarms.helpers import T

TZ = ZoneInfo("Asia/Shanghai")
EV = AlarmEvent(EventType.RAISED, "riverside", "pm10-15m", "dust-1", "pm10", "15m", T + 150 * 60_000,
                T + 165 * 60_000, 182.4, 150.0, "ug/m3", "warning", "PM10 15-minute average over 150 ug/m3", "",
                "msg")


def route(**kw):
    return SmsConfig.model_validate({"name": "phones", "url": "https://sms.example/send?key=K3Y", "to": ["13800000000"],
                                     **kw})


# --- counting and fitting --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("A" * 160, (160, 160)),
    ("PM10 > 150 {since}", (20, 160)),  # 18 characters; braces are GSM-7 extension characters: two each
    ("é and ü are GSM-7", (17, 160)),
    ("超标", (2, 70)),
    ("ALARM 超标", (8, 70)),  # one Chinese character: the whole message is UCS-2
    ("PM10 ≥ 150", (10, 70)),  # so is a math sign
    ("dust 😷", (7, 70)),  # an emoji is two UTF-16 units
])
def test_length_is_counted_the_way_sms_counts_it(text, expected):
    assert sms_length(text) == expected


def test_the_default_message_is_one_sms_with_the_zone_marked():
    sms = message(route(), EV, TZ, "河畔工地")
    assert sms.text == "超标告警ALARM 河畔工地 dust-1 pm10 15m 182.4>150ug/m3 自10:30 UTC+8起"
    assert not sms.cut and sms.limit == 70 and sms.length == len(sms.text)
    en = message(route(language="en"), EV, TZ, "Riverside Tower")
    assert en.text == "ALARM Riverside Tower: dust-1 pm10 15m 182.4>150ug/m3 since 10:30 UTC+8"
    assert en.limit == 160
    cleared = dataclasses.replace(EV, type=EventType.CLEARED, value=90.0)
    zh_clear = message(route(language="zh"), cleared, TZ, "河畔工地")
    assert zh_clear.text == "告警解除 河畔工地 dust-1 pm10 15m 90ug/m3 自10:30 UTC+8起"


def test_a_start_on_an_earlier_day_carries_its_date():
    late = dataclasses.replace(EV, type=EventType.ESCALATED, ts=EV.start + 16 * 3_600_000)
    assert "自03-02 10:30 UTC+8起" in message(route(), late, TZ, "河畔工地").text
    assert message(route(), late, TZ, "河畔工地").text.startswith("无人确认升级ESCALATED ")


def test_a_message_that_would_overflow_shrinks_the_site_name_first_then_is_cut():
    sms = message(route(), EV, TZ, "Riverside Tower Phase II (north gate)")
    assert sms.cut and sms.length > 70
    assert sms_length(sms.text)[0] <= 70
    assert sms.text.startswith("超标告警ALARM Riverside Tow") and "…" in sms.text
    assert sms.text.endswith("182.4>150ug/m3 自10:30 UTC+8起"), "the value and the time are kept"
    # a template with nothing to shrink is cut at the end
    long = fit("{label} " + "x" * 200, {"label": "ALARM"})
    assert long.cut and sms_length(long.text) == (160, 160) and long.text.endswith(".")


# --- the request -----------------------------------------------------------------------------------------------
def test_a_form_post_with_basic_auth_and_all_numbers_in_one_request():
    cfg = route(auth={"type": "basic", "username": "plume", "password": "pw-123"}, to=["13800000000", "13900000000"],
                form_fields={"mobile": "{phones}", "text": "{text}", "uid": "{ref}"})
    (req,) = render(cfg, EV, url="https://sms.example/send", tz=TZ, site_name="河畔工地", password="pw-123")
    assert req.method == "POST" and req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"plume:pw-123").decode()
    form = dict(urllib.parse.parse_qsl(req.body.decode()))
    assert form["mobile"] == "13800000000,13900000000"
    assert form["text"].startswith("超标告警ALARM 河畔工地")
    assert form["uid"] == EV.idempotency_key == req.headers["Idempotency-Key"]


def test_a_json_body_per_number_with_a_token_header_and_a_query_key():
    cfg = route(to=["13800000000", "+8613900000000"], per_phone=True, query={"sdkappid": "1400"},
                auth={"type": "header", "scheme": "Bearer", "token": "tok-9"},
                body={"PhoneNumberSet": "{phone_list}", "TemplateParamSet": ["{site}", "{value}", "{since}"],
                      "SessionContext": "{ref}"})
    reqs = render(cfg, EV, url="https://sms.example/v3?x=1", tz=TZ, site_name="河畔工地", token="tok-9")
    assert [r.phones for r in reqs] == [("13800000000",), ("+8613900000000",)]
    first = json.loads(reqs[0].body)
    assert first == {"PhoneNumberSet": ["13800000000"], "TemplateParamSet": ["河畔工地", "182.4", "10:30 UTC+8"],
                     "SessionContext": reqs[0].key}
    assert reqs[0].key != reqs[1].key, "each number its own idempotency key"
    assert reqs[0].url == "https://sms.example/v3?x=1&sdkappid=1400"
    assert reqs[0].headers["Authorization"] == "Bearer tok-9"


def test_a_get_request_with_the_key_as_a_query_placeholder():
    cfg = route(method="GET", auth={"token": "k-77"}, query={"u": "plume", "p": "{token}", "m": "{phones}",
                                                           "c": "{text}"})
    (req,) = render(cfg, EV, url="http://api.sms.example/sms", tz=TZ, token="k-77")
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(req.url).query))
    assert q["p"] == "k-77" and q["m"] == "13800000000" and req.body is None
    assert "Authorization" not in req.headers


def test_numbers_written_without_quotes_in_yaml_are_numbers_all_the_same():
    cfg = route(to=[13800000000], to_by_severity={"critical": [13700000000]}, escalate_to=[13600000000])
    assert cfg.all_phones() == ["13800000000", "13700000000", "13600000000"]


def test_recipients_by_severity_and_the_escalation_list():
    cfg = route(to=["13800000000"], to_by_severity={"critical": ["13700000000", "13800000000"]},
                escalate_to=["13600000000"])
    assert recipients(cfg, EV) == ["13800000000"]
    assert recipients(cfg, dataclasses.replace(EV, severity="critical")) == ["13800000000", "13700000000"]
    escalated = dataclasses.replace(EV, type=EventType.ESCALATED)
    assert recipients(cfg, escalated) == ["13600000000"]
    assert wants(cfg, escalated), "escalate_to takes the escalated events"
    assert not wants(route(), escalated), "a route without escalate_to does not (unless its events say so)"
    only_critical = route(to=[], to_by_severity={"critical": ["13700000000"]})
    assert not wants(only_critical, EV) and wants(only_critical, dataclasses.replace(EV, severity="critical"))


# --- the answer ------------------------------------------------------------------------------------------------
ALIYUN = SmsSuccess(field="Code", equals="OK", retry_values=["isv.BUSINESS_LIMIT_CONTROL"])
YUNPIAN = SmsSuccess(field="code", equals=0, retry_values=[8, 9, 33])
TENCENT = SmsSuccess(field="Response.SendStatusSet.0.Code", equals="Ok")


@pytest.mark.parametrize(("ok", "status", "body", "expected"), [
    (SmsSuccess(), 200, "", "sent"),
    (SmsSuccess(), 503, "", "retry"),
    (SmsSuccess(), 429, "", "retry"),
    (SmsSuccess(), 401, "bad key", "failed"),
    (SmsSuccess(status=[201]), 200, "", "failed"),
    (ALIYUN, 200, '{"Code":"OK","Message":"OK"}', "sent"),
    (ALIYUN, 200, '{"Code":"isv.BUSINESS_LIMIT_CONTROL","Message":"触发分钟级流控"}', "retry"),
    (ALIYUN, 200, '{"Code":"isv.MOBILE_NUMBER_ILLEGAL"}', "failed"),
    (YUNPIAN, 200, '{"code":0,"msg":"发送成功"}', "sent"),
    (YUNPIAN, 200, '{"code":"0"}', "sent"),
    (YUNPIAN, 200, '{"code":33,"msg":"too often"}', "retry"),
    (YUNPIAN, 200, '{"msg":"no code"}', "failed"),
    (YUNPIAN, 200, "<html>", "failed"),
    (TENCENT, 200, '{"Response":{"SendStatusSet":[{"Code":"Ok"}]}}', "sent"),
    (TENCENT, 200, '{"Response":{"SendStatusSet":[{"Code":"LimitExceeded.PhoneNumberDailyLimit"}]}}', "failed"),
    (SmsSuccess(matches=r"^0$"), 200, "0", "sent"),
    (SmsSuccess(matches=r"^0$"), 200, "41", "failed"),
])
def test_what_a_providers_answer_means(ok, status, body, expected):
    assert classify(ok, status, body).kind == expected


def test_a_refusal_names_the_field_and_the_answer():
    got = classify(ALIYUN, 200, '{"Code":"isv.MOBILE_NUMBER_ILLEGAL","Message":"非法手机号"}')
    assert got.detail.startswith('Code=isv.MOBILE_NUMBER_ILLEGAL: {"Code"')


# --- config errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kw", "error"), [
    ({"url": None}, "give url, url_env or url_file"),
    ({"to": []}, "name the phone numbers"),
    ({"to": ["officer"]}, "not a phone number"),
    ({"form_fields": {"text": "{txet}"}}, r"form_fields.text: unknown placeholder \{txet\}"),
    ({"text": "{phone} {label}"}, r"text: unknown placeholder \{phone\}"),
    ({"body": {"a": ["{oops"]}}, r"body.a\[0\]: .*literal braces"),
    ({"method": "GET", "form_fields": {"a": "b"}}, "a GET request has no body"),
    ({"form_fields": {"a": "b"}, "body": {"a": "b"}}, "not both"),
    ({"auth": {"type": "basic", "username": "u"}}, "basic auth needs username and a password"),
    ({"auth": {"type": "header"}}, "header auth needs a token"),
    ({"success": {"field": "code"}}, "field and equals go together"),
])
def test_sms_config_errors(kw, error):
    with pytest.raises(ValidationError, match=error):
        route(**kw)


# --- plume config check ----------------------------------------------------------------------------------------
CHECKED = """
site: {{id: s1, name: {name}, timezone: Asia/Shanghai}}
buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: 502}}]
devices:
  - {{name: dust-1, bus: lan, address: 1, kind: dust,
     registers: [{{channel: pm10, address: 0, function: 3, type: u16, unit: ug/m3}}]}}
rules:
  - {{id: pm10-15m, type: threshold, channel: pm10, window: 15m, limit: 150, unit: ug/m3, title: PM10 over 150}}
notify:
  sms:
    - {{name: phones, url: "https://sms.example/send", to: [13800000000], escalate_to: [13900000000],
       form_fields: {{m: "{{phones}}", t: "{{text}}"}}}}
"""


def test_config_check_says_which_messages_are_cut_to_fit_one_sms(make_site):
    site = make_site(CHECKED, name="Riverside Tower Phase II north gate")
    (cut, esc) = [w for w in site.warnings if w.startswith("notify.sms")]
    assert cut.startswith("notify.sms[0].text: 3 of 3 messages would not fit one SMS, e.g. the escalated message "
                          "of rule pm10-15m is 96 characters"), cut
    assert "one SMS holds 70 (the text is not all GSM-7, e.g. Chinese: 70 UCS-2 characters); they are cut" in cut
    assert "'无人确认升级ESCALATED Riversid… dust-1 pm10 15m 185.1>150ug/m3 自" in cut
    assert esc.startswith("notify.sms[0].escalate_to: no rule this route takes has escalate_after_s")
    short = make_site(CHECKED, name="河畔工地")
    assert [w for w in short.warnings if w.startswith("notify.sms[0].text")] == []


def test_the_readme_examples_of_sms_and_escalation_are_valid_and_the_message_is_the_one_shown():
    import re as re_
    from pathlib import Path

    from pydantic import TypeAdapter

    from gateway.alarms.notify import NotifyConfig
    from gateway.alarms.rules import Rule, RulePackRef, resolve_rules
    from gateway.yamlio import load_yaml_text

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    part = readme.split("### What an enforcement officer receives: SMS", 1)[1].split("### Data for inspections")[0]
    yamls = [load_yaml_text(b) for b in re_.findall(r"```yaml\n(.*?)```", part, re_.S)]
    assert len(yamls) == 2
    sms = NotifyConfig.model_validate(yamls[0]["notify"]).sms[0]
    assert sms.escalate_to == ["13700000000"]
    rules = TypeAdapter(list[Rule]).validate_python(yamls[1]["rules"])
    packs = TypeAdapter(list[RulePackRef]).validate_python(yamls[1]["rule_packs"])
    resolved, problems = resolve_rules(rules, packs)
    assert problems == [] and {r.id: r.escalate_after_s for r in resolved} == {
        "pm10-15m": 1800, "dust-shaanxi-earthworks.tsp-1h": 3600}
    NotifyConfig.model_validate(yamls[1]["notify"])
    assert message(sms, EV, TZ, "河畔工地").text in part


# --- wiring: secrets ---------------------------------------------------------------------------------------------
WIRED = """
site: {{id: s1, timezone: Asia/Shanghai}}
buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: 502}}]
devices: [{{name: d1, bus: lan, address: 1, profile: dust-monitor}}]
rules: [{{id: offline, type: offline, after_s: 300}}]
notify:
  sms:
    - {{name: phones, url_env: {url_env}, to: [13800000000], auth: {{type: basic, username: plume,
       password_file: secrets/sms-pw}}, form_fields: {{m: "{{phones}}", t: "{{text}}"}}}}
    - {{name: tokens, url: "https://sms.example/send", to: [13800000000],
       auth: {{type: header, scheme: Bearer, token_env: {token_env}}}}}
"""


def test_the_providers_url_password_and_token_are_resolved_once_and_never_shown(make_site, tmp_path, monkeypatch):
    from gateway.config import ConfigError
    from gateway.core.secrets import redact
    from gateway.pipeline.consumers import build_consumers

    monkeypatch.setenv("T_SMS_URL", "https://sms.example/send?apikey=URLKEY-9f8e7d")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/sms-pw").write_text("pw-from-file-77\n")
    site = make_site(WIRED, url_env="T_SMS_URL", token_env="T_SMS_UNSET")
    with pytest.raises(ConfigError) as exc:
        build_consumers(site)
    assert exc.value.problems == ["notify.sms[1].auth.token_env: environment variable T_SMS_UNSET is not set"]
    monkeypatch.setenv("T_SMS_TOKEN", "tok-abcdef-123")
    site = make_site(WIRED, url_env="T_SMS_URL", token_env="T_SMS_TOKEN")
    plans = build_consumers(site)
    assert [(p.name, p.section) for p in plans] == [("phones", "notify.sms"), ("tokens", "notify.sms")]
    basic = base64.b64encode(b"plume:pw-from-file-77").decode()
    line = f"GET https://sms.example/send?apikey=URLKEY-9f8e7d Authorization: Basic {basic} pw-from-file-77 " \
           "Bearer tok-abcdef-123"
    shown = redact(line)
    for secret in ("URLKEY-9f8e7d", basic, "pw-from-file-77", "tok-abcdef-123"):
        assert secret not in shown


# --- one request per number, against the provider process -----------------------------------------------------
@pytest.fixture
def provider(tmp_path):
    import sys
    from pathlib import Path

    from tests.pipeline.helpers import Proc
    from tests.pipeline.servers import free_port

    procs = []

    def start(*args):
        port = free_port()
        out = tmp_path / f"sms-{port}.jsonl"
        p = Proc([sys.executable, str(Path(__file__).parent / "sms_server.py"), "--port", str(port), "--out",
                  str(out), *args], tmp_path / f"provider-{port}.out").start()
        procs.append(p)
        p.wait_output("ready")
        return f"http://127.0.0.1:{port}/send", out

    yield start
    for p in procs:
        p.kill9()


async def test_one_request_per_number_retries_only_the_numbers_not_yet_taken(provider, tmp_path):
    import httpx

    from gateway.alarms.delivery import SmsSink
    from gateway.store.log import DurableLog

    url, out = provider("--busy", "1", "--refuse-phone", "13700000003")
    cfg = route(to=["13800000001", "13900000002", "13700000003"], per_phone=True,
                form_fields={"m": "{phone}", "t": "{text}", "uid": "{ref}"},
                success={"field": "code", "equals": 0, "retry_values": [33]})
    lg = DurableLog(tmp_path / "log.sqlite")
    await lg.open(["phones"])
    try:
        sink = SmsSink(cfg, "riverside", "河畔工地", TZ, lg, url=url)
        async with httpx.AsyncClient() as client:
            first = await sink.attempt(client, EV, T)
            second = await sink.attempt(client, EV, T)
    finally:
        await lg.close()
    assert first.kind == "retry" and "code=33" in first.detail
    asked = [(r["body"]["m"], r["answer"]["code"]) for r in map(json.loads, out.read_text().splitlines())]
    assert asked == [("13800000001", 33), ("13900000002", 0), ("13700000003", 2), ("13800000001", 0)], (
        "the retry asks only for the number the provider did not take yet")
    assert second.kind == "failed" and second.detail.startswith("*******0003: code=2: ")
    assert "13700000003" not in second.detail


def test_every_placeholder_the_docs_name_renders():
    from gateway.alarms.sms import PLACEHOLDERS, TEXT_PLACEHOLDERS

    cfg = route(form_fields={name: f"{{{name}}}" for name in PLACEHOLDERS if name != "phone_list"},
                text=" ".join(f"{{{name}}}" for name in sorted(TEXT_PLACEHOLDERS)))
    (req,) = render(cfg, EV, url="https://sms.example/send", tz=TZ, site_name="河畔工地", token="t0k")
    form = dict(urllib.parse.parse_qsl(req.body.decode()))
    assert form["site"] == "河畔工地" and form["token"] == "t0k" and form["since"] == "10:30 UTC+8"
    assert form["alarm_id"] == EV.alarm_id and form["phone"] == "13800000000"
