"""SMS notifications through an HTTP SMS gateway: a templated webhook the user fills in for the provider.

An officer in the field gets one SMS: label, site, place, value against limit, since when (the site's local time,
zone marked); sms_text.py makes it fit one SMS, and `plume config check` says which rules' messages are cut
(`overflow_warning`).

The request is the provider's: URL, method, JSON body or form fields and query parameters, all templates with
placeholders (`PLACEHOLDERS`), plus HTTP basic or a token header, the phone numbers (one request for all, joined,
or one request per number) and what the provider's answer means: HTTP status and optionally a JSON field and its
value (SMS APIs answer 200 with an error code), values meaning "try later", or a pattern for plain-text answers.
Secrets (URL, password, token) are resolved by the wiring and redacted in every log line. Only `send` does I/O.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import string
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.rules import NAME, Rule, Severity, ThresholdRule
from gateway.alarms.sms_text import DEFAULT_TEXT, UCS2_LIMIT, SmsText, fit, values
from gateway.alarms.webhooks import RETRY_STATUS, Outcome, RetryConfig, redact, wants
from gateway.core.patterns import matches
from gateway.core.secrets import cut
from gateway.core.secrets import redact as redact_text
from gateway.core.strict import Strict

if TYPE_CHECKING:
    import httpx

PHONE = r"^\+?[0-9]{5,15}$"
Language = Literal["zh+en", "zh", "en"]
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

# --- configuration -----------------------------------------------------------------------------------------------
PLACEHOLDERS = {
    "text": "the SMS message (the `text` template, cut to one SMS)",
    "label": "what happened: 超标告警ALARM, 告警解除CLEARED, ... (in the route's language)",
    "site": "the site's name (its id when it has none)", "site_id": "the site's id",
    "where": "device, channel and window, e.g. dust-1 pm10 15m", "what": "value against limit, e.g. 182.4>150ug/m3",
    "device": "", "channel": "", "window": "", "rule": "the rule id", "title": "the rule's title",
    "severity": "info, warning or critical", "event": "raised, cleared, renotify, acknowledged, escalated",
    "value": "", "limit": "", "unit": "", "peak": "the worst value so far",
    "since": "local time the condition began, zone marked (10:30 UTC+8; with the date when not today)",
    "time": "local time of the event, zone marked", "by": "who acknowledged",
    "ref": "the request's idempotency key", "alarm_id": "",
    "phone": "the phone number (one request per number)", "phones": "the numbers joined by phone_separator",
    "phone_list": "the numbers as a JSON list (alone in a JSON string value)",
    "password": "auth.password", "token": "auth.token",
}
TEXT_PLACEHOLDERS = set(PLACEHOLDERS) - {"text", "phone", "phones", "phone_list", "password", "token", "ref"}
class SmsAuth(Strict):
    """How the gateway proves who it is: HTTP basic, a token header, or (`none`) secrets only used as placeholders
    ({password}, {token}) in the fields of the request."""

    type: Literal["none", "basic", "header"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: str | None = Field(None, description="File whose first line is the password.")
    header: str = Field("Authorization", description="The header carrying the token (type header).")
    scheme: str = Field("", description="Written before the token in the header, e.g. Bearer.")
    token: SecretStr | None = None
    token_env: str | None = None
    token_file: str | None = Field(None, description="File whose first line is the token.")

    @model_validator(mode="after")
    def _check(self) -> SmsAuth:
        passwords = sum(x is not None for x in (self.password, self.password_env, self.password_file))
        tokens = sum(x is not None for x in (self.token, self.token_env, self.token_file))
        if passwords > 1:
            raise ValueError("give password, password_env or password_file: one of them")
        if tokens > 1:
            raise ValueError("give token, token_env or token_file: one of them")
        if self.type == "basic" and (not self.username or not passwords):
            raise ValueError("basic auth needs username and a password (password, password_env or password_file)")
        if self.type == "header" and not tokens:
            raise ValueError("header auth needs a token (token, token_env or token_file)")
        return self


class SmsSuccess(Strict):
    """How the provider says an SMS was accepted."""

    status: list[int] = Field(default_factory=list, description="HTTP statuses of success (default: any 2xx).")
    field: str | None = Field(None, description="JSON field of the answer, dotted (Code, Response.Error.Code, "
                              "data.0.code).")
    equals: str | int | float | bool | None = Field(None, description="The field's value on success.")
    retry_values: list[str | int] = Field(default_factory=list,
                                          description="Values of the field that mean: try later (rate limits).")
    matches: str | None = Field(None, description="A regular expression a plain-text answer matches on success.")

    @model_validator(mode="after")
    def _check(self) -> SmsSuccess:
        if (self.field is None) != (self.equals is None):
            raise ValueError("field and equals go together: the answer's field and its value on success")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ValueError(f"matches: not a regular expression: {exc}") from None
        return self


class SmsConfig(Strict):
    """One SMS route for alarm notifications (site-file section `notify.sms`)."""

    name: str = Field(pattern=NAME, description="Its cursor in the log and its metrics.")
    url: SecretStr | None = Field(None, description="The provider's endpoint (it may hold a key).")
    url_env: str | None = None
    url_file: str | None = Field(None, description="File whose first line is the URL.")
    method: Literal["POST", "GET"] = "POST"
    query: dict[str, str] = Field(default_factory=dict, description="Query parameters (templates).")
    form_fields: dict[str, str] | None = Field(
        None, description="Form fields (application/x-www-form-urlencoded).")
    body: Any = Field(None, description="A JSON body: any document whose strings are templates.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers (templates).")
    auth: SmsAuth = Field(default_factory=SmsAuth)
    to: list[str] = Field(default_factory=list, description="Phone numbers for every event this route takes.")
    to_by_severity: dict[Severity, list[str]] = Field(
        default_factory=dict, description="Numbers added for events of these rule severities.")
    escalate_to: list[str] = Field(
        default_factory=list, description="Numbers that get the escalated events (alarms nobody acknowledged "
        "within the rule's escalate_after_s), instead of `to`.")
    per_phone: bool = Field(False, description="One request per number (the provider takes one number each).")
    phone_separator: str = Field(",", description="Between the numbers of {phones}.")
    language: Language = Field("zh+en", description="Language of the message: zh+en, zh or en.")
    text: str | None = Field(None, description="Template of the message (default: a short one per language).")
    success: SmsSuccess = Field(default_factory=SmsSuccess)
    events: list[EventType] = Field(default_factory=lambda: [EventType.RAISED, EventType.CLEARED])
    rules: list[str] = Field(default_factory=lambda: ["*"], description="Rule id patterns.")
    min_severity: Severity = "info"
    timeout_s: float = Field(10.0, gt=0, le=120)
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @field_validator("to", "escalate_to", mode="before")
    @classmethod
    def _numbers(cls, v: Any) -> Any:
        """13800000000 unquoted in YAML is an int: a phone number all the same."""
        return [str(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in v] if isinstance(
            v, list) else v

    @field_validator("to_by_severity", mode="before")
    @classmethod
    def _numbers_by_severity(cls, v: Any) -> Any:
        return {k: cls._numbers(x) for k, x in v.items()} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _check(self) -> SmsConfig:
        if sum(x is not None for x in (self.url, self.url_env, self.url_file)) != 1:
            raise ValueError("give url, url_env or url_file: one of them")
        if not self.to and not self.to_by_severity and not self.escalate_to:
            raise ValueError("name the phone numbers: to, to_by_severity, escalate_to")
        bad = [p for p in self.all_phones() if not re.match(PHONE, p)]
        if bad:
            raise ValueError(f"not a phone number (digits, optionally a leading +): {', '.join(bad)}")
        if self.form_fields is not None and self.body is not None:
            raise ValueError("give form_fields or body (JSON), not both")
        if self.method == "GET" and (self.form_fields is not None or self.body is not None):
            raise ValueError("a GET request has no body: put the fields in query")
        for where, template in self.templates():
            problem = template_problem(template, TEXT_PLACEHOLDERS if where == "text" else set(PLACEHOLDERS))
            if problem:
                raise ValueError(f"{where}: {problem}")
        if self.escalate_to and EventType.ESCALATED not in self.events:
            self.events = [*self.events, EventType.ESCALATED]  # escalate_to is what escalated events are for
        return self

    def all_phones(self) -> list[str]:
        return [*self.to, *(p for v in self.to_by_severity.values() for p in v), *self.escalate_to]

    def templates(self) -> list[tuple[str, str]]:
        """(field, template) of every string the request is built from."""
        out = [("text", self.text)] if self.text is not None else []
        out += [(f"query.{k}", v) for k, v in self.query.items()]
        out += [(f"form_fields.{k}", v) for k, v in (self.form_fields or {}).items()]
        out += [(f"headers.{k}", v) for k, v in self.headers.items()]
        out += [(f"body{path}", v) for path, v in _strings(self.body, "")]
        return out

    def takes(self, ev: AlarmEvent) -> bool:
        """Beyond events/rules/severity: an event nobody's number is for is not this route's."""
        return bool(recipients(self, ev))


def _strings(doc: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(doc, str):
        return [(path, doc)]
    if isinstance(doc, dict):
        return [x for k, v in doc.items() for x in _strings(v, f"{path}.{k}")]
    if isinstance(doc, list):
        return [x for i, v in enumerate(doc) for x in _strings(v, f"{path}[{i}]")]
    return []


def template_problem(template: str, known: set[str]) -> str | None:
    """What is wrong with a template (an unknown placeholder, a stray brace), or None."""
    try:
        names = [name for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return f"{exc} (write {{{{ and }}}} for literal braces)"
    for name in names:
        if name not in known:
            return f"unknown placeholder {{{name}}} (known: {', '.join(sorted(known))})"
    return None


def recipients(cfg: SmsConfig, ev: AlarmEvent) -> list[str]:
    """The numbers for this event, each once: escalate_to for an escalated event (when given), else `to` plus the
    list for the rule's severity."""
    if ev.type is EventType.ESCALATED and cfg.escalate_to:
        return list(dict.fromkeys(cfg.escalate_to))
    extra = cfg.to_by_severity.get(ev.severity, [])  # type: ignore[call-overload]
    return list(dict.fromkeys([*cfg.to, *extra]))


# --- the message -------------------------------------------------------------------------------------------------
def message(cfg: SmsConfig, ev: AlarmEvent, tz: ZoneInfo, site_name: str = "") -> SmsText:
    return fit(cfg.text or DEFAULT_TEXT[cfg.language], values(ev, tz, cfg.language, site_name))


# --- the request -------------------------------------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class SmsRequest:
    method: str
    url: str  # secret: never log it (redact)
    headers: dict[str, str]
    body: bytes | None
    phones: tuple[str, ...]
    key: str  # idempotency key of this request


def _fill(doc: Any, vals: dict[str, Any]) -> Any:
    if isinstance(doc, str):
        if doc.strip() == "{phone_list}":
            return vals["phone_list"]
        return doc.format_map(vals)
    if isinstance(doc, dict):
        return {k: _fill(v, vals) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_fill(v, vals) for v in doc]
    return doc


def render(cfg: SmsConfig, ev: AlarmEvent, *, url: str, tz: ZoneInfo, site_name: str = "",
           password: str | None = None, token: str | None = None) -> list[SmsRequest]:
    """The requests for one event: one for all its numbers, or one per number (`per_phone`)."""
    phones = recipients(cfg, ev)
    vals: dict[str, Any] = values(ev, tz, cfg.language, site_name)
    vals["text"] = message(cfg, ev, tz, site_name).text
    vals.update(password=password or "", token=token or "")
    groups = [[p] for p in phones] if cfg.per_phone else [phones]
    out = []
    for group in groups:
        key = ev.idempotency_key if not cfg.per_phone else hashlib.sha256(
            f"{ev.idempotency_key}\n{group[0]}".encode()).hexdigest()[:32]
        vals.update(phone=group[0] if group else "", phones=cfg.phone_separator.join(group), phone_list=group,
                    ref=key)
        headers = {"User-Agent": "plume-gateway", "Idempotency-Key": key}
        if cfg.auth.type == "basic":
            cred = base64.b64encode(f"{cfg.auth.username}:{password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {cred}"
        elif cfg.auth.type == "header":
            headers[cfg.auth.header] = f"{cfg.auth.scheme} {token or ''}".strip()
        headers.update({k: v.format_map(vals) for k, v in cfg.headers.items()})
        target = url
        if cfg.query:
            q = urllib.parse.urlencode({k: v.format_map(vals) for k, v in cfg.query.items()})
            target = f"{url}{'&' if '?' in url else '?'}{q}"
        body: bytes | None = None
        if cfg.form_fields is not None:
            body = urllib.parse.urlencode({k: v.format_map(vals) for k, v in cfg.form_fields.items()}).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif cfg.body is not None:
            body = _dumps(_fill(cfg.body, vals)).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        out.append(SmsRequest(cfg.method, target, headers, body, tuple(group), key))
    return out


# --- the answer --------------------------------------------------------------------------------------------------
def _field(doc: Any, path: str) -> tuple[bool, Any]:
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return False, None
    return True, doc


def _same(a: Any) -> str:
    return a if isinstance(a, str) else json.dumps(a)


def classify(ok: SmsSuccess, status: int, body: str, retry_after: str | None = None) -> Outcome:
    """What the provider's answer means: sent, retry (408/425/429, 5xx, a `retry_values` code) or failed."""
    after: float | None = None
    if retry_after:
        try:
            after = max(0.0, float(retry_after))
        except ValueError:
            after = None
    good_status = status in ok.status if ok.status else 200 <= status < 300
    if not good_status:
        if status in RETRY_STATUS or status >= 500:
            return Outcome("retry", f"HTTP {status}", after)
        return Outcome("failed", f"HTTP {status}: {cut(body)}")
    if ok.field is not None:
        try:
            found, got = _field(json.loads(body), ok.field)
        except ValueError:
            return Outcome("failed", f"the answer is not JSON (no field {ok.field}): {cut(body)}")
        if not found:
            return Outcome("failed", f"the answer has no field {ok.field}: {cut(body)}")
        if _same(got) != _same(ok.equals):
            retry = _same(got) in {_same(v) for v in ok.retry_values}
            return Outcome("retry" if retry else "failed", f"{ok.field}={_same(got)}: {cut(body)}", after)
    if ok.matches is not None and not re.search(ok.matches, body):
        return Outcome("failed", f"the answer does not match {ok.matches!r}: {cut(body)}")
    return Outcome("sent")


def masked(phone: str) -> str:
    """A number as a log line may show it: the last four digits."""
    return "*" * max(0, len(phone) - 4) + phone[-4:]


async def send(client: httpx.AsyncClient, req: SmsRequest, cfg: SmsConfig) -> Outcome:
    """Send one request; every failure becomes an Outcome."""
    import httpx

    try:
        resp = await client.request(req.method, req.url, content=req.body, headers=req.headers,
                                    timeout=cfg.timeout_s)
    except httpx.HTTPError as exc:
        detail = redact_text(f"{type(exc).__name__}: {exc}".replace(req.url, redact(req.url)))
        return Outcome("retry", detail)
    return classify(cfg.success, resp.status_code, resp.text, resp.headers.get("Retry-After"))


# --- what `plume config check` says ------------------------------------------------------------------------------
def sample_events(rule: Rule, site_id: str, devices: list[str], types: list[EventType], ts: int,
                  ) -> list[AlarmEvent]:
    """Events like the ones `rule` will give, for the longest device name it applies to (the worst case)."""
    patterns: list[str] = list(getattr(rule, "devices", []) or [])
    matching = [d for d in devices if matches(d, patterns)] if patterns else [""]
    device = max(matching or [""], key=len)
    channel, window, unit, limit = "", "", "", None
    if isinstance(rule, ThresholdRule):
        channel, window, unit = rule.channel, rule.window, rule.unit or ""
        limit = rule.limit if rule.limit is not None else max(e.limit for e in rule.schedule)
    value = None if limit is None else float(f"{limit * 1.234:.4g}")
    return [AlarmEvent(t, site_id, rule.id, device, channel, window, ts, ts, value, limit, unit, rule.severity,
                       rule.title, rule.standard, "") for t in types]


def overflow_warning(where: str, cfg: SmsConfig, rules: list[Rule], site_id: str, site_name: str, tz: ZoneInfo,
                     devices: list[str], ts: int) -> str | None:
    """`where.text: ...` when a message of a rule this route takes would not fit one SMS (it is then cut)."""
    long: list[tuple[SmsText, AlarmEvent]] = []
    total = 0
    for rule in rules:
        for ev in sample_events(rule, site_id, devices, list(cfg.events), ts):
            if not wants(cfg, ev):
                continue
            total += 1
            sms = message(cfg, ev, tz, site_name)
            if sms.cut:
                long.append((sms, ev))
    if not long:
        return None
    sms, ev = max(long, key=lambda x: x[0].length)
    why = " (the text is not all GSM-7, e.g. Chinese: 70 UCS-2 characters)" if sms.limit == UCS2_LIMIT else ""
    return (f"{where}.text: {len(long)} of {total} messages would not fit one SMS, e.g. the {ev.type.value} message "
            f"of rule {ev.rule} is {sms.length} characters and one SMS holds {sms.limit}{why}; they are cut to fit: "
            f"{sms.text!r}. Shorten the template or the site name to keep all of it")
