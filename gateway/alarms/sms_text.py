"""The text of an alarm SMS: short, in the route's language, and measured the way the network counts it.

One SMS holds 160 GSM-7 characters, or 70 UCS-2 characters as soon as one character is not in the GSM-7 alphabet
(any Chinese); `sms_length` counts like the network (GSM-7 extension characters take two septets, UCS-2 counts
UTF-16 units, so an emoji is two). `fit` fills a template and, when the result would not fit one SMS, shrinks the
site name, the title and the place first (ending in an ellipsis), then cuts the end. Times are the site's local
time with a short zone mark (`10:30 UTC+8`), with the date when it is not the event's local day.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from gateway.alarms.events import AlarmEvent, EventType
from gateway.core.localtime import local, offset_ms

# --- what the network counts -------------------------------------------------------------------------------------
GSM7_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ"
                 "§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENDED = set("^{}\\[~]|€\f")  # two septets each (escape + character)
GSM7_LIMIT, UCS2_LIMIT = 160, 70


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text)


def sms_length(text: str) -> tuple[int, int]:
    """(length, what one SMS holds) as the network counts: GSM-7 septets of 160, or UTF-16 units of 70."""
    if is_gsm7(text):
        return sum(2 if c in GSM7_EXTENDED else 1 for c in text), GSM7_LIMIT
    return len(text.encode("utf-16-le")) // 2, UCS2_LIMIT


def fits(text: str) -> bool:
    n, limit = sms_length(text)
    return n <= limit


ELASTIC = ("site", "title", "where")  # shortened first when a message is too long
LABELS = {
    "zh": {"raised": "超标告警", "cleared": "告警解除", "renotify": "告警持续", "acknowledged": "告警已确认",
           "escalated": "无人确认升级"},
    "en": {"raised": "ALARM", "cleared": "CLEARED", "renotify": "STILL ACTIVE", "acknowledged": "ACKNOWLEDGED",
           "escalated": "ESCALATED"},
}
DEFAULT_TEXT = {
    "zh+en": "{label} {site} {where} {what} 自{since}起",
    "zh": "{label} {site} {where} {what} 自{since}起",
    "en": "{label} {site}: {where} {what} since {since}",
}


# --- the message -------------------------------------------------------------------------------------------------
def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"


def short_zone(ts: int, tz: ZoneInfo) -> str:
    """UTC+8, UTC+5:45, UTC-5, UTC: the zone mark short enough for an SMS."""
    off = offset_ms(ts, tz) // 60_000
    if off == 0:
        return "UTC"
    sign = "+" if off > 0 else "-"
    h, m = divmod(abs(off), 60)
    return f"UTC{sign}{h}" + (f":{m:02d}" if m else "")


def short_time(ts: int, now: int, tz: ZoneInfo) -> str:
    """10:30 UTC+8, with the local date (03-02 10:30 UTC+8) when it is not the day of `now`."""
    t = local(ts, tz)
    day = "" if t.date() == local(now, tz).date() else t.strftime("%m-%d ")
    return f"{day}{t.strftime('%H:%M')} {short_zone(ts, tz)}"


def label(ev: AlarmEvent, language: str) -> str:
    langs = ["zh", "en"] if language == "zh+en" else [language]
    return "".join(LABELS[lang][ev.type.value] for lang in langs)


def values(ev: AlarmEvent, tz: ZoneInfo, language: str, site_name: str = "") -> dict[str, str]:
    """The placeholders of the message for one event."""
    unit = ev.unit or ""
    if ev.value is not None and ev.limit is not None and ev.type is not EventType.CLEARED:
        what = f"{_num(ev.value)}{'<' if ev.value < ev.limit else '>'}{_num(ev.limit)}{unit}"
    elif ev.value is not None:
        what = f"{_num(ev.value)}{unit}"
    else:
        what = ev.title or ev.rule
    where = " ".join(p for p in (ev.device, ev.channel, "" if ev.window == "raw" else ev.window) if p)
    return {"label": label(ev, language), "site": site_name or ev.site, "site_id": ev.site, "where": where,
            "what": what, "device": ev.device, "channel": ev.channel, "window": ev.window, "rule": ev.rule,
            "title": ev.title or ev.rule, "severity": ev.severity, "event": ev.type.value, "value": _num(ev.value),
            "limit": _num(ev.limit), "unit": unit, "peak": _num(ev.peak),
            "since": short_time(ev.start, ev.ts, tz), "time": short_time(ev.ts, ev.ts, tz), "by": ev.by,
            "alarm_id": ev.alarm_id}


@dataclass(slots=True, frozen=True)
class SmsText:
    text: str
    length: int  # as the network counts, before any cut
    limit: int  # what one SMS holds for the text as it came out of the template
    cut: bool


def fit(template: str, vals: dict[str, str]) -> SmsText:
    """The message in one SMS: the template filled in; when too long, the longest of the site name, the title and
    the place shrink first (ending in an ellipsis), then the end is cut."""
    text = template.format_map(vals)
    length, limit = sms_length(text)
    if length <= limit:
        return SmsText(text, length, limit, False)
    dots = "." if is_gsm7(text) else "…"
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    vals = dict(vals)
    while not fits(text):
        shrinkable = [k for k in ELASTIC if k in used and len(vals[k]) > 4]
        if not shrinkable:
            break
        k = max(shrinkable, key=lambda name: len(vals[name]))
        excess = sms_length(text)[0] - sms_length(text)[1]
        keep = max(3, len(vals[k].rstrip(dots)) - excess - len(dots))
        vals[k] = vals[k][:keep].rstrip() + dots
        text = template.format_map(vals)
    while not fits(text) and text:
        text = text[:-2].rstrip() + dots if len(text) > 1 else ""
    return SmsText(text, length, limit, True)
