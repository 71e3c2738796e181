"""Webhook payloads as receivers get them, what their answers mean, and the POST itself."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import urllib.parse
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError

from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.webhooks import WebhookConfig, classify, post, redact, render, wants
from gateway.localservers import free_port
from tests.alarms.helpers import T

TZ = ZoneInfo("Asia/Shanghai")
EV = AlarmEvent(EventType.RAISED, "riverside", "dust-shanghai.particulate-15m", "dust-1", "tsp", "15m", T,
                T + 900_000, 0.85, 0.8, "mg/m3", "critical", "Particulate 15-minute average over the Shanghai limit",
                "DB31/964-2016", "msg")


def hook(**kw):
    return WebhookConfig.model_validate({"name": "h", "url": "https://example.org/hook?key=SECRET", **kw})


def body(cfg, ev=EV, **kw):
    req = render(cfg, ev, url=cfg.url.get_secret_value(), tz=TZ, now_ms=T, site_name="Riverside Tower", **kw)
    return req, json.loads(req.body)


def test_generic_payload_carries_the_event_and_its_idempotency_key():
    req, b = body(hook())
    assert b["v"] == 1 and b["idempotency_key"] == EV.idempotency_key and b["text"] == "[ALARM] msg"
    assert b["event"]["alarm_id"] == f"dust-shanghai.particulate-15m/dust-1/tsp/{T}"
    assert (b["event"]["value"], b["event"]["limit"], b["event"]["window"], b["event"]["start"]) == (
        0.85, 0.8, "15m", T)
    assert req.headers["Idempotency-Key"] == EV.idempotency_key
    assert req.headers["Content-Type"].startswith("application/json")


def test_wecom_markdown_has_what_an_officer_needs():
    _, b = body(hook(template="wecom"))
    assert b["msgtype"] == "markdown"
    text = b["markdown"]["content"]
    for part in ("[ALARM] Particulate 15-minute average over the Shanghai limit", "Riverside Tower (riverside)",
                 "dust-1 / tsp", "Value: 0.85 mg/m3", "Limit: 0.8 mg/m3", "Window: 15m",
                 "Since: 2026-03-02 08:00 UTC+08:00", "DB31/964-2016", f"Ref: {EV.idempotency_key}"):
        assert part in text
    _, b = body(hook(template="wecom", mention=["13800000000"]))
    assert b["msgtype"] == "text" and b["text"]["mentioned_mobile_list"] == ["13800000000"]


def test_dingtalk_markdown_in_chinese_and_signed_url():
    cfg = hook(template="dingtalk", language="zh", secret="SECabc", mention=["13800000000"])
    req, b = body(cfg, secret="SECabc")
    assert b["msgtype"] == "markdown" and b["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
    assert b["markdown"]["title"].startswith("[超标告警]")
    assert "限值: 0.8 mg/m3" in b["markdown"]["text"] and "@13800000000" in b["markdown"]["text"]
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(req.url).query)
    assert q["timestamp"] == [str(T)]
    # DingTalk: sign = base64(HmacSHA256(key=secret, msg="<timestamp>\n<secret>"))
    expected = base64.b64encode(hmac.new(b"SECabc", f"{T}\nSECabc".encode(), hashlib.sha256).digest()).decode()
    assert q["sign"] == [expected]


def test_slack_style():
    cleared = dataclasses.replace(EV, type=EventType.CLEARED)
    _, b = body(hook(template="slack"), cleared)
    assert b["text"].startswith("*[CLEARED] Particulate") and b["blocks"][0]["text"]["text"] == b["text"]


def test_which_events_a_webhook_takes():
    assert wants(hook(), EV)
    assert not wants(hook(rules=["gb13271-*"]), EV)
    assert not wants(hook(events=["cleared"]), EV)
    assert wants(hook(min_severity="critical"), EV)
    info = dataclasses.replace(EV, severity="info")
    assert not wants(hook(min_severity="warning"), info)


def test_webhook_config_errors():
    with pytest.raises(ValidationError, match="give url"):
        WebhookConfig.model_validate({"name": "h"})
    with pytest.raises(ValidationError, match="template dingtalk"):
        hook(secret="x")


@pytest.mark.parametrize(
    ("template", "status", "answer", "retry_after", "expected"),
    [
        ("generic", 200, "", None, ("sent", None)),
        ("generic", 204, "", None, ("sent", None)),
        ("generic", 503, "", None, ("retry", None)),
        ("generic", 429, "", "30", ("retry", 30.0)),
        ("generic", 404, "not found", None, ("failed", None)),
        ("generic", 301, "", None, ("failed", None)),
        ("wecom", 200, '{"errcode":0,"errmsg":"ok"}', None, ("sent", None)),
        ("wecom", 200, '{"errcode":45009,"errmsg":"api freq out of limit"}', None, ("retry", None)),
        ("wecom", 200, '{"errcode":93000,"errmsg":"invalid webhook url"}', None, ("failed", None)),
        ("dingtalk", 200, '{"errcode":130101,"errmsg":"send too fast"}', None, ("retry", None)),
        ("dingtalk", 200, '{"errcode":310000,"errmsg":"sign not match"}', None, ("failed", None)),
        ("slack", 200, "ok", None, ("sent", None)),
    ],
)
def test_what_an_answer_means(template, status, answer, retry_after, expected):
    got = classify(template, status, answer, retry_after)
    assert (got.kind, got.retry_after_s) == expected


def test_robot_error_is_reported_with_its_message():
    assert classify("wecom", 200, '{"errcode":93000,"errmsg":"invalid webhook url"}').detail == (
        "errcode 93000: invalid webhook url")


def test_redact_drops_the_key():
    assert redact("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET") == (
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send")


async def test_post_sends_the_body_and_reads_the_answer():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers["Idempotency-Key"], json.loads(request.content)))
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    cfg = hook(template="wecom")
    req, _ = body(cfg)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        outcome = await post(client, req, cfg)
    assert outcome.kind == "sent"
    assert seen[0][0] == EV.idempotency_key and seen[0][1]["msgtype"] == "markdown"


async def test_post_to_a_receiver_that_is_down_is_a_retry_without_the_key_in_the_message():
    port = free_port()  # nothing listens there
    cfg = WebhookConfig.model_validate({"name": "h", "url": f"http://127.0.0.1:{port}/hook?key=SECRET"})
    req, _ = body(cfg)
    async with httpx.AsyncClient() as client:
        outcome = await post(client, req, cfg)
    assert outcome.kind == "retry" and "SECRET" not in outcome.detail and "ConnectError" in outcome.detail
