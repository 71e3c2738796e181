"""E-mail notifications: which alarm events go to whom, what the mail says, and what the SMTP server's answer means.

An officer reads the mail on a phone: the subject is the headline (site, what, value against limit), the body the
same lines as the chat robots' (text and HTML alternatives) in the site's language, times in the site's zone with
the zone named. Recipients may depend on the rule's severity (`to` for every event, `to_by_severity` added for the
severities it names). The Message-ID comes from the event's idempotency key, so a mail sent twice (a crash between
the server's 250 and the log's cursor commit) is the same message to a mail client. Only `send` does I/O
(stdlib smtplib, in a worker thread; STARTTLS or TLS, optional login).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, model_validator

from gateway.alarms.events import AlarmEvent, EventType
from gateway.alarms.pictures import Shot, picture_lines
from gateway.alarms.rules import NAME, Severity
from gateway.alarms.webhooks import LABELS, Outcome, RetryConfig, lines
from gateway.core.localtime import local
from gateway.core.strict import Strict

if TYPE_CHECKING:  # smtplib, ssl and email are imported where mail is made or sent, not by the site schema
    import ssl
    from email.message import EmailMessage

Security = Literal["starttls", "tls", "none"]
ADDRESS = r"^[^@\s<>]+@[^@\s<>]+$"


class EmailConfig(Strict):
    """One mail route for alarm notifications (site-file section `notify.email`)."""

    name: str = Field(pattern=NAME, description="Its cursor in the log and its metrics.")
    host: str = Field(description="SMTP server (the site's relay or the provider's submission server).")
    port: int | None = Field(None, ge=1, le=65535, description="Default 587 (starttls), 465 (tls), 25 (none).")
    security: Security = Field("starttls", description="starttls (submission), tls (implicit, port 465) or none.")
    ca_file: str | None = Field(None, description="CA bundle for the server's certificate (default: the system's).")
    username: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: str | None = Field(None, description="File whose first line is the password.")
    sender: str = Field(pattern=ADDRESS, description="From address.")
    to: list[str] = Field(default_factory=list, description="Recipients of every event this route takes.")
    to_by_severity: dict[Severity, list[str]] = Field(
        default_factory=dict, description="Recipients added for events of these rule severities.")
    escalate_to: list[str] = Field(
        default_factory=list, description="Recipients of the escalated events (alarms nobody acknowledged within "
        "the rule's escalate_after_s), instead of `to`.")
    language: Literal["en", "zh", "zh+en"] = Field("zh+en", description="Language of the mail (zh+en: both).")
    events: list[EventType] = Field(
        default_factory=lambda: [EventType.RAISED, EventType.CLEARED, EventType.RENOTIFY])
    rules: list[str] = Field(default_factory=lambda: ["*"], description="Rule id patterns.")
    min_severity: Severity = "info"
    timeout_s: float = Field(20.0, gt=0, le=300)
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @model_validator(mode="after")
    def _check(self) -> EmailConfig:
        if sum(x is not None for x in (self.password, self.password_env, self.password_file)) > 1:
            raise ValueError("give password, password_env or password_file: one of them")
        if not self.to and not self.to_by_severity and not self.escalate_to:
            raise ValueError("name the recipients: to, to_by_severity, escalate_to")
        import re

        every = [*self.to, *(x for v in self.to_by_severity.values() for x in v), *self.escalate_to]
        bad = [a for a in every if not re.match(ADDRESS, a)]
        if bad:
            raise ValueError(f"not an e-mail address: {', '.join(bad)}")
        if self.escalate_to and EventType.ESCALATED not in self.events:
            self.events = [*self.events, EventType.ESCALATED]  # escalate_to is what escalated events are for
        return self

    def takes(self, ev: AlarmEvent) -> bool:
        """Beyond events/rules/severity: an event nobody's address is for is not this route's."""
        return bool(recipients(self, ev))

    @property
    def server_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


def recipients(cfg: EmailConfig, ev: AlarmEvent) -> list[str]:
    """Who gets this event: `to`, plus the list for the rule's severity; each address once, in order. An escalated
    event goes to `escalate_to` when the route has one."""
    if ev.type is EventType.ESCALATED and cfg.escalate_to:
        return list(dict.fromkeys(cfg.escalate_to))
    extra = cfg.to_by_severity.get(ev.severity, [])  # type: ignore[call-overload]
    return list(dict.fromkeys([*cfg.to, *extra]))


def zone_note(ts: int, tz: ZoneInfo) -> str:
    t = local(ts, tz)
    return f"{tz.key} (UTC{t.strftime('%z')[:3]}:{t.strftime('%z')[3:]})"


def _parts(ev: AlarmEvent, tz: ZoneInfo, language: str, site_name: str,
           shots: Sequence[Shot] = ()) -> list[tuple[str, list[str]]]:
    langs = ["zh", "en"] if language == "zh+en" else [language]
    zone = zone_note(ev.start, tz)
    note = {"en": f"Times in {zone}", "zh": f"时间为 {zone}"}
    out = []
    for lang in langs:
        head, detail = lines(ev, tz, lang, site_name)
        out.append((head, [*detail, *picture_lines(list(shots), lang, "attached"), note[lang]]))
    return out


def subject(ev: AlarmEvent, language: str, site_name: str) -> str:
    """One line a phone shows in full: the label, the site, the title and value against limit."""
    labels = [LABELS[lang][ev.type.value] for lang in (["zh", "en"] if language == "zh+en" else [language])]
    value = ""
    if ev.value is not None and ev.limit is not None:
        unit = f" {ev.unit}" if ev.unit else ""
        value = f" {ev.value:.4g}{unit} > {ev.limit:.4g}{unit}" if ev.type is EventType.RAISED else ""
    return f"[{' / '.join(labels)}] {site_name or ev.site}: {ev.title or ev.rule}{value}"


def render(cfg: EmailConfig, ev: AlarmEvent, *, tz: ZoneInfo, site_name: str = "",
           shots: Sequence[Shot] = ()) -> EmailMessage:
    """The mail for one event: text and HTML alternatives, Message-ID from the idempotency key; the cameras'
    pictures (gateway.alarms.pictures) attached as JPEG files, shown inline in the HTML, and a line per camera
    saying so, or that its picture is missing and why."""
    from email.message import EmailMessage
    from email.utils import format_datetime

    msg = EmailMessage()
    msg["Subject"] = subject(ev, cfg.language, site_name)
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(recipients(cfg, ev))
    msg["Date"] = format_datetime(local(ev.ts, tz))
    msg["Message-ID"] = f"<{ev.idempotency_key.replace('/', '.')}@plume.{ev.site}>"
    msg["X-Plume-Idempotency-Key"] = ev.idempotency_key
    msg["X-Plume-Event"] = ev.type.value
    parts = _parts(ev, tz, cfg.language, site_name, shots)
    taken = [(pic, data) for pic, data in shots if data is not None]
    if shots:
        msg["X-Plume-Pictures"] = ", ".join(
            f"{pic.camera}: {'attached' if data is not None else 'missing (' + pic.reason + ')'}"
            for pic, data in shots)
    msg.set_content("\n\n".join("\n".join([head, "", *detail]) for head, detail in parts))
    color = "#1a7f37" if ev.type is EventType.CLEARED else "#c62828"
    blocks = "".join(
        f'<h2 style="color:{color};margin:0 0 8px">{html.escape(head)}</h2>'
        + "<table>" + "".join(_row(x) for x in detail) + "</table>"
        for head, detail in parts)
    images = "".join(f'<p><img src="cid:{_cid(pic.file or "")}" alt="{html.escape(pic.camera)}" '
                     'style="max-width:100%"></p>' for pic, _ in taken)
    msg.add_alternative(f'<!doctype html><html><body style="font-family:sans-serif">{blocks}{images}</body></html>',
                        subtype="html")
    for pic, data in taken:
        msg.add_attachment(data, maintype="image", subtype="jpeg", filename=pic.file, cid=f"<{_cid(pic.file or '')}>")
    return msg


def _cid(file: str) -> str:
    return f"{file.removesuffix('.jpg')}@plume"


def _row(line: str) -> str:
    key, sep, value = line.partition(": ")
    if not sep:
        return f'<tr><td colspan="2">{html.escape(line)}</td></tr>'
    return f'<tr><td style="color:#555;padding-right:12px">{html.escape(key)}</td><td>{html.escape(value)}</td></tr>'


def classify(exc: BaseException) -> Outcome:
    """What a failed attempt means: a 5xx answer will not change by retrying (wrong address, refused sender,
    authentication), everything else (4xx, network, TLS handshake, timeout) is retried."""
    import smtplib

    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = {code for code, _ in exc.recipients.values()}
        kind: Literal["retry", "failed"] = "failed" if all(c >= 500 for c in codes) else "retry"
        return Outcome(kind, f"recipients refused: {', '.join(f'{a} ({c})' for a, (c, _) in exc.recipients.items())}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return Outcome("failed", f"SMTP {exc.smtp_code}: authentication failed (check username and password)")
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        kind = "failed" if exc.smtp_code >= 500 else "retry"
        return Outcome(kind, f"SMTP {exc.smtp_code}: {' '.join(text.split())[:200]}")
    return Outcome("retry", f"{type(exc).__name__}: {exc}"[:300])


def send(cfg: EmailConfig, msg: EmailMessage, password: str | None, tls: ssl.SSLContext | None) -> Outcome:
    """Send one mail (blocking: run it in a thread). Every failure becomes an Outcome."""
    import smtplib
    import ssl

    try:
        if cfg.security == "tls":
            server: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.server_port, timeout=cfg.timeout_s, context=tls)
        else:
            server = smtplib.SMTP(cfg.host, cfg.server_port, timeout=cfg.timeout_s)
        with server:
            if cfg.security == "starttls":
                server.starttls(context=tls)
            if cfg.username:
                server.login(cfg.username, password or "")
            server.send_message(msg)
    except (TimeoutError, smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return classify(exc)
    return Outcome("sent")


def tls_context(cfg: EmailConfig, base: Path | None = None) -> ssl.SSLContext | None:
    """The client's TLS context (None without TLS); the server's certificate is always verified."""
    if cfg.security == "none":
        return None
    ca = cfg.ca_file
    if ca is not None and base is not None and not Path(ca).is_absolute():
        ca = str(Path(base) / ca)
    import ssl

    return ssl.create_default_context(cafile=ca)

