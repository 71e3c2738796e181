"""Webhooks: which alarm events go where, what the POST looks like, and what the answer means.

Templates (`template`): generic (the event as JSON), wecom (WeCom group robot), dingtalk (DingTalk custom robot,
optionally signed), slack (Slack-style incoming webhook: Slack, Mattermost, Rocket.Chat). Every request carries the
event's idempotency key: in the JSON (generic), in the message text (chat robots, which reject unknown fields), and
as the `Idempotency-Key` header. A receiver that deduplicates on it sees each event once even when the gateway had
to send it twice (a crash between the receiver's 200 and the log's cursor commit).

Chat robots answer HTTP 200 with an error code in the body: `classify` reads it, so a rate limit is retried and a
wrong key is reported instead of counted as delivered. The URL often contains the robot's key: it is a secret,
never logged (`redact`). Only `post` does I/O (httpx, imported when first used).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, model_validator

from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.pictures import Shot, picture_lines
from gateway.alarms.rules import NAME, SEVERITY_RANK, Severity
from gateway.core.localtime import local_stamp
from gateway.core.patterns import matches
from gateway.core.secrets import cut, safe_url
from gateway.core.secrets import redact as redact_text
from gateway.core.strict import Strict

if TYPE_CHECKING:
    import httpx

Template = Literal["generic", "wecom", "dingtalk", "slack"]
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class RetryConfig(Strict):
    """Delivery retries: exponential backoff with jitter; by default an event is retried until it is delivered."""

    initial_s: float = Field(5.0, gt=0, le=3600)
    max_s: float = Field(600.0, gt=0, le=86_400)
    factor: float = Field(2.0, ge=1, le=10)
    max_attempts: int | None = Field(None, ge=1, description="Give up after this many attempts (None: never).")
    max_age_s: float | None = Field(None, gt=0, description="Give up on events older than this (None: never).")


class WebhookConfig(Strict):
    """One receiver of alarm notifications (site-file section `notify.webhooks`)."""

    name: str = Field(pattern=NAME, description="Its cursor in the log and its metrics.")
    url: SecretStr | None = Field(None, description="The endpoint, usually ${ENV_VAR} (robot URLs hold a key).")
    url_env: str | None = Field(None, description="Environment variable holding the URL.")
    url_file: str | None = Field(None, description="File whose first line is the URL (relative to the site file).")
    template: Template = "generic"
    language: Literal["en", "zh"] = Field("en", description="Language of chat-robot messages.")
    secret: SecretStr | None = Field(None, description="DingTalk signing secret (SEC...).")
    secret_env: str | None = None
    secret_file: str | None = Field(None, description="File whose first line is the signing secret.")
    events: list[EventType] = Field(
        default_factory=lambda: [EventType.RAISED, EventType.CLEARED, EventType.RENOTIFY])
    rules: list[str] = Field(default_factory=lambda: ["*"], description="Rule id patterns.")
    min_severity: Severity = "info"
    mention: list[str] = Field(default_factory=list, description="Mobile numbers to @ (WeCom, DingTalk).")
    headers: dict[str, str] = Field(default_factory=dict)
    picture_url: str | None = Field(
        None, pattern=r"^https?://.*\{file\}",
        description="Where a phone can load a camera picture by its file name (DingTalk and Slack show pictures "
                    "only by URL), e.g. https://files.example/plume/{file}; without it they get a line instead.")
    timeout_s: float = Field(10.0, gt=0, le=120)
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @model_validator(mode="after")
    def _source(self) -> WebhookConfig:
        if sum(x is not None for x in (self.url, self.url_env, self.url_file)) != 1:
            raise ValueError("give url (e.g. ${WECOM_URL}), url_env or url_file: one of them")
        signed = sum(x is not None for x in (self.secret, self.secret_env, self.secret_file))
        if signed > 1:
            raise ValueError("give secret, secret_env or secret_file: one of them")
        if signed and self.template != "dingtalk":
            raise ValueError("secret signs DingTalk requests: template dingtalk")
        return self


class Route(Protocol):
    """What a notification route (a webhook, an e-mail route) says about which events it takes and its retries."""

    @property
    def name(self) -> str: ...
    @property
    def events(self) -> list[EventType]: ...
    @property
    def rules(self) -> list[str]: ...
    @property
    def min_severity(self) -> Severity: ...
    @property
    def retry(self) -> RetryConfig: ...


def wants(cfg: Route, ev: AlarmEvent) -> bool:
    """Does this route take this event? (A route with a `takes(event)` method may also say no: an SMS route with no
    number for the event's severity.)"""
    takes = getattr(cfg, "takes", None)
    return (ev.type in cfg.events and matches(ev.rule, cfg.rules)
            and SEVERITY_RANK.get(ev.severity, 1) >= SEVERITY_RANK[cfg.min_severity]
            and (takes is None or bool(takes(ev))))


def redact(url: str) -> str:
    """scheme://host/path without query or credentials, key-like path segments masked: what a log line may
    show (gateway.core.secrets.safe_url)."""
    return safe_url(url, query=False)


def dingtalk_sign(secret: str, ts_ms: int) -> str:
    """DingTalk robot signature: base64(HmacSHA256(secret, "<ts>\\n<secret>")), URL-encoded."""
    digest = hmac.new(secret.encode(), f"{ts_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


# --- message text ------------------------------------------------------------------------------------------------
LABELS = {
    "en": {"raised": "ALARM", "cleared": "CLEARED", "renotify": "STILL ACTIVE", "acknowledged": "ACKNOWLEDGED",
           "escalated": "ESCALATED: NOT ACKNOWLEDGED",
           "site": "Site", "where": "Where", "value": "Value", "limit": "Limit", "since": "Since", "window": "Window",
           "standard": "Standard", "peak": "Peak", "count": "Exceedances today", "by": "By", "ref": "Ref",
           "raw": "each reading"},
    "zh": {"raised": "超标告警", "cleared": "告警解除", "renotify": "告警持续", "acknowledged": "告警已确认",
           "escalated": "告警升级:无人确认",
           "site": "站点", "where": "位置", "value": "数值", "limit": "限值", "since": "开始时间", "window": "统计周期",
           "standard": "标准", "peak": "峰值", "count": "今日超标次数", "by": "确认人", "ref": "编号",
           "raw": "实时值"},
}


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def lines(ev: AlarmEvent, tz: ZoneInfo, language: str = "en", site_name: str = "") -> tuple[str, list[str]]:
    """(headline, detail lines) of an event for people."""
    lb = LABELS[language]
    head = f"[{lb[ev.type.value]}] {ev.title or ev.rule}"
    unit = f" {ev.unit}" if ev.unit else ""
    out = [f"{lb['site']}: {site_name + ' (' + ev.site + ')' if site_name else ev.site}"]
    where = " / ".join(p for p in (ev.device, ev.channel) if p)
    if where:
        out.append(f"{lb['where']}: {where}")
    if ev.value is not None:
        out.append(f"{lb['value']}: {_num(ev.value)}{unit}")
    if ev.limit is not None:
        out.append(f"{lb['limit']}: {_num(ev.limit)}{unit}")
    if ev.window:
        out.append(f"{lb['window']}: {lb['raw'] if ev.window == 'raw' else ev.window}")
    if ev.peak is not None and ev.type is not EventType.RAISED:
        out.append(f"{lb['peak']}: {_num(ev.peak)}{unit}")
    if ev.count is not None:
        out.append(f"{lb['count']}: {ev.count}")
    out.append(f"{lb['since']}: {local_stamp(ev.start, tz)}")
    if ev.by:
        out.append(f"{lb['by']}: {ev.by}")
    if ev.standard:
        out.append(f"{lb['standard']}: {ev.standard}")
    if ev.note:
        out.append(ev.note)
    out.append(f"{lb['ref']}: {ev.idempotency_key}")
    return head, out


def payload(cfg: WebhookConfig, ev: AlarmEvent, tz: ZoneInfo, site_name: str = "",
            shots: Sequence[Shot] = ()) -> dict[str, object]:
    """The JSON body for `cfg.template`; `shots` are the cameras' pictures (gateway.alarms.pictures): a list in the
    generic body, an image by URL (`picture_url`) in DingTalk and Slack, a line per camera in every chat message."""
    if cfg.template == "generic":
        label = LABELS[cfg.language][ev.type.value]
        generic: dict[str, object] = {"v": 1, "idempotency_key": ev.idempotency_key,
                                      "text": f"[{label}] {ev.message}", "event": ev.to_json()}
        if shots:
            generic["pictures"] = [{"camera": p.camera, "file": p.file if data is not None else None,
                                 "url": _picture_url(cfg, p.file) if data is not None else None,
                                 "missing": "" if data is not None else p.reason, "detail": p.detail}
                                   for p, data in shots]
        return generic
    head, detail = lines(ev, tz, cfg.language, site_name)
    where = "next" if cfg.template == "wecom" else "linked" if cfg.picture_url else "elsewhere"
    detail = [*detail, *picture_lines(list(shots), cfg.language, where)]
    urls = [(p.camera, _picture_url(cfg, p.file)) for p, data in shots if data is not None and cfg.picture_url]
    if cfg.template == "wecom":
        if cfg.mention:  # WeCom @-mentions by mobile only work in text messages
            return {"msgtype": "text", "text": {"content": "\n".join([head, *detail]),
                                                "mentioned_mobile_list": cfg.mention}}
        color = "info" if ev.type is EventType.CLEARED else "warning"
        body = "\n".join([f'**<font color="{color}">{head}</font>**', *(f"> {x}" for x in detail)])
        return {"msgtype": "markdown", "markdown": {"content": body}}
    if cfg.template == "dingtalk":
        text = "\n\n".join([f"### {head}", *detail, *(f"![{cam}]({url})" for cam, url in urls),
                             *(f"@{m}" for m in cfg.mention)])
        return {"msgtype": "markdown", "markdown": {"title": head, "text": text},
                "at": {"atMobiles": cfg.mention, "isAtAll": False}}
    text = "\n".join([f"*{head}*", *detail])
    blocks: list[object] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    blocks += [{"type": "image", "image_url": url, "alt_text": cam} for cam, url in urls]
    return {"text": text, "blocks": blocks}


def _picture_url(cfg: WebhookConfig, file: str | None) -> str | None:
    return cfg.picture_url.replace("{file}", urllib.parse.quote(file)) if cfg.picture_url and file else None


WECOM_IMAGE_MAX = 2 * 1024 * 1024  # the WeCom robot's limit for an image message (before base64)


def image_requests(cfg: WebhookConfig, ev: AlarmEvent, shots: Sequence[Shot], *, url: str) -> list[WebhookRequest]:
    """The image messages that follow an event's message: WeCom robots take a JPEG as `msgtype image` (base64 and
    its MD5, at most 2 MB); the other templates carry no uploaded picture (DingTalk robots have no image message
    for an upload, only a markdown image by URL)."""
    if cfg.template != "wecom":
        return []
    out = []
    for pic, data in shots:
        if data is None or len(data) > WECOM_IMAGE_MAX:
            continue
        body = {"msgtype": "image", "image": {"base64": base64.b64encode(data).decode(),
                                              "md5": hashlib.md5(data).hexdigest()}}  # WeCom checks the MD5
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "plume-gateway", **cfg.headers}
        out.append(WebhookRequest(url, headers, _dumps(body).encode(), f"{ev.event_id}/picture/{pic.camera}",
                                  ev.idempotency_key))
    return out


@dataclass(slots=True, frozen=True)
class WebhookRequest:
    url: str  # secret: never log it (redact)
    headers: dict[str, str]
    body: bytes
    event_id: str
    idempotency_key: str


def render(cfg: WebhookConfig, ev: AlarmEvent, *, url: str, tz: ZoneInfo, now_ms: int, secret: str | None = None,
           site_name: str = "", shots: Sequence[Shot] = ()) -> WebhookRequest:
    """The request for one event (`url`/`secret` resolved from the config by the caller)."""
    if cfg.template == "dingtalk" and secret:
        sep = "&" if "?" in url else "?"
        url = f"{url}{sep}timestamp={now_ms}&sign={dingtalk_sign(secret, now_ms)}"
    headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": ev.idempotency_key,
               "User-Agent": "plume-gateway", **cfg.headers}
    return WebhookRequest(url, headers, _dumps(payload(cfg, ev, tz, site_name, shots)).encode(), ev.event_id,
                          ev.idempotency_key)


# --- answers -----------------------------------------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class Outcome:
    kind: Literal["sent", "retry", "failed"]
    detail: str = ""
    retry_after_s: float | None = None


RETRY_STATUS = {408, 425, 429}
# robot error codes that are worth retrying: WeCom 45009 (rate limit), -1 (busy); DingTalk 130101 (too fast),
# 410100 (rate limit), -1
RETRY_ERRCODES = {-1, 45009, 130101, 410100}


def classify(template: str, status: int, body: str, retry_after: str | None = None) -> Outcome:
    """What an HTTP answer means for the delivery."""
    after: float | None = None
    if retry_after:
        try:
            after = max(0.0, float(retry_after))
        except ValueError:
            after = None
    if status in RETRY_STATUS or status >= 500:
        return Outcome("retry", f"HTTP {status}", after)
    if not 200 <= status < 300:
        return Outcome("failed", f"HTTP {status}: {cut(body)}")
    if template in ("wecom", "dingtalk"):
        try:
            answer = json.loads(body)
            code = int(answer.get("errcode", 0))
            msg = str(answer.get("errmsg", ""))
        except (ValueError, TypeError, AttributeError):
            return Outcome("sent", "unparsed answer")
        if code == 0:
            return Outcome("sent")
        kind: Literal["retry", "failed"] = "retry" if code in RETRY_ERRCODES else "failed"
        return Outcome(kind, f"errcode {code}: {cut(msg)}", after)
    return Outcome("sent")


async def post(client: httpx.AsyncClient, req: WebhookRequest, cfg: WebhookConfig) -> Outcome:
    """Send one request; every failure becomes an Outcome (no exception escapes for a network problem)."""
    import httpx

    try:
        resp = await client.post(req.url, content=req.body, headers=req.headers, timeout=cfg.timeout_s)
    except httpx.HTTPError as exc:
        detail = redact_text(f"{type(exc).__name__}: {exc}".replace(req.url, redact(req.url)))
        return Outcome("retry", detail)
    return classify(cfg.template, resp.status_code, resp.text, resp.headers.get("Retry-After"))
