"""InfluxDB line protocol for readings (schema v1, documented in the README).

    <kind>,site=<site>,device=<device> <channel>=<float>,<channel>_flag="<flag>",... <ts ms>

- measurement = the profile's kind (dust, cems, ...); tags site and device exactly as in the site file;
- one field per channel, named as the profile names it: a float (booleans as 0.0/1.0, so a field never changes
  type), or a string for text channels; a value that is None, NaN or infinite is left out (its flag says why);
  an exact 64-bit integer channel (i64/u64 unscaled; the sink is told which channels, by
  gateway.acquisition.codec.exact_channels) is an integer field `<n>i`, exact beyond 2^53 (InfluxDB 1.x takes
  no unsigned `u`, so a u64 value above 2^63-1 is left out); any other int stays a float, no field changes type;
- one string field `<channel>_flag` per channel with its HJ 212 data flag;
- the poll timestamp in ms (write with precision=ms). The same reading always gives the same point, so a re-send
  after a crash or an outage overwrites instead of doubling.

Aggregates (`aggregate_line`): measurement `<kind>_<window>` (dust_15m, cems_1h), tags site and device; fields
`<ch>_avg`, `<ch>_min`, `<ch>_max` (floats), `<ch>_n`, `<ch>_valid` (integers), `<ch>_flag` (string),
`<ch>_mass` (float, kg: the cumulative mass of a mass-rate channel such as `so2_rate`), and `partial=true` only
for a partial window; time = the window start.
Alarm events (`alarm_line`): measurement `alarms`, tags site, device, channel, rule (an empty one is left out);
fields state, active (1 while raised/acknowledged/renotify/escalated, 0 once cleared), value, limit, window,
started (epoch ms), event_id, message; time = the event's time.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from gateway.core.model import DeviceReading, Flag
from gateway.store.codec import FLOAT_TEXT, float_text, usual_texts
from gateway.store.records import StoredReading

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_keys: dict[str, tuple[str, str]] = {}
_INT64 = 2**63  # InfluxDB integers are signed 64-bit


def escape_key(s: str) -> str:
    """Tag keys, tag values and field keys."""
    return s.translate(_KEY_ESCAPES)


def escape_measurement(s: str) -> str:
    return s.translate(_MEASUREMENT_ESCAPES)


def escape_string(s: str) -> str:
    """A string field value, without the quotes. Line protocol has no newline inside a value."""
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")


def _field_keys(channel: str) -> tuple[str, str]:
    keys = _keys.get(channel)
    if keys is None:
        key = escape_key(channel)
        keys = _keys[channel] = (key + "=", key + "_flag=")
    return keys


def format_value(value: object) -> str | None:
    """A field value in line protocol, or None when the value cannot be stored."""
    if value is None:
        return None
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, bool):
        return "1.0" if value else "0.0"
    if isinstance(value, int):
        return repr(float(value))
    return '"' + escape_string(str(value)) + '"'


_normal: dict[str, tuple[str, str]] = {}  # channel -> (`key=`, `,key_flag="N"`)
_series: dict[tuple[str, str, str], str] = {}  # (kind, site, device) -> `kind,site=..,device=.. `
_N = Flag.N


def _normal_keys(channel: str) -> tuple[str, str]:
    key, flag_key = _field_keys(channel)
    keys = (key, "," + flag_key + '"N"')
    if len(_normal) < 65536:
        _normal[channel] = keys
    return keys


def _series_text(kind: str, site: str, device: str) -> str:
    text = f"{escape_measurement(kind)},site={escape_key(site)},device={escape_key(device)} "
    if len(_series) < 65536:
        _series[(kind, site, device)] = text
    return text


def reading_line(reading: DeviceReading, exact: Collection[str] = ()) -> str | None:
    """One point for one poll; None when the reading has no channel at all. `exact`: the channels written as
    integer fields (gateway.acquisition.codec.exact_channels). Runs for every poll: the field keys come from a
    per-channel cache, and a finite float with flag N (the usual value) is one f-string of its channel's texts."""
    if not reading.values:
        return None
    parts: list[str] = []
    append = parts.append
    keys = _keys
    normal = _normal
    ft = FLOAT_TEXT
    isfinite = math.isfinite
    for ch, cv in reading.values.items():
        value = cv.value
        if type(value) is float and value - value == 0.0 and cv.flag is _N:  # finite: inf - inf is NaN
            known = normal.get(ch) or _normal_keys(ch)
            append(f"{known[0]}{ft.get(value) or float_text(value)}{known[1]}")
            continue
        pair = keys.get(ch) or _field_keys(ch)
        if type(value) is float:
            if isfinite(value):
                append(pair[0] + repr(value))
        elif value is not None:
            if type(value) is int and ch in exact:  # an exact 64-bit integer channel
                text: str | None = f"{value}i" if -_INT64 <= value < _INT64 else None
            else:
                text = format_value(value)
            if text is not None:
                append(pair[0] + text)
        append(pair[1] + '"' + cv.flag + '"')
    series = _series.get((reading.kind, reading.site, reading.device))
    if series is None:
        series = _series_text(reading.kind, reading.site, reading.device)
    return f"{series}{','.join(parts)} {reading.ts}"


def row_line(rec: StoredReading) -> str | None:
    """The point of a reading straight from its stored row when it is the usual poll (`codec.usual_texts`): the
    stored texts are the field values `reading_line` would write, so a backlog drains without decoding. None for
    any other row: decode it and use `reading_line`."""
    texts = usual_texts(rec)
    if texts is None:
        return None
    lay = rec.layout
    normal = _normal
    fields = ",".join([f"{k[0]}{t}{k[1]}" for k, t in zip([normal.get(ch) or _normal_keys(ch) for ch in lay.channels],
                                                          texts, strict=True)])
    series = _series.get((lay.kind, lay.site, lay.device)) or _series_text(lay.kind, lay.site, lay.device)
    return f"{series}{fields} {rec.ts}"


def point(measurement: str, tags: dict[str, str], fields: dict[str, object], ts_ms: int) -> str | None:
    """A generic point (health metrics); None values are left out, None when no field is left."""
    parts = []
    for k, v in fields.items():
        text = format_value(v)
        if text is not None:
            parts.append(f"{escape_key(k)}={text}")
    if not parts:
        return None
    tag_text = "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in tags.items() if v)
    return f"{escape_measurement(measurement)}{tag_text} {','.join(parts)} {ts_ms}"


_AGG_SUFFIXES: dict[str, tuple[str, str, str, str, str, str, str]] = {}


def _agg_keys(channel: str) -> tuple[str, str, str, str, str, str, str]:
    keys = _AGG_SUFFIXES.get(channel)
    if keys is None:
        k = escape_key(channel)
        keys = _AGG_SUFFIXES[channel] = (k + "_avg=", k + "_min=", k + "_max=", k + "_n=", k + "_valid=",
                                         k + "_flag=", k + "_mass=")
    return keys


def _float(v: object) -> str | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return repr(float(v))
    return None


def aggregate_line(agg: Any) -> str | None:
    """One point per closed window (schema above); None when it has no channel."""
    from gateway.sinks.contract import mass_kg

    if not agg.channels:
        return None
    parts: list[str] = []
    for ch, a in agg.channels.items():
        k_avg, k_min, k_max, k_n, k_valid, k_flag, k_mass = _agg_keys(ch)
        for key, v in ((k_avg, a.avg), (k_min, a.min), (k_max, a.max)):
            text = _float(v)
            if text is not None:
                parts.append(key + text)
        parts.append(f"{k_n}{int(a.n)}i")
        parts.append(f"{k_valid}{int(a.valid)}i")
        parts.append(k_flag + '"' + a.flag.value + '"')
        mass = _float(mass_kg(a.cou, a.cou_unit))
        if mass is not None:
            parts.append(k_mass + mass)
    if agg.partial:
        parts.append("partial=true")
    return (f"{escape_measurement(f'{agg.kind}_{agg.window}')},site={escape_key(agg.site)},"
            f"device={escape_key(agg.device)} {','.join(parts)} {agg.start}")


ACTIVE_STATES = {"raised", "acknowledged", "renotify", "escalated"}


def alarm_line(ev: Any) -> str:
    """One point per alarm lifecycle event (schema above)."""
    state = ev.type.value
    fields: dict[str, object] = {"state": state, "active": 1 if state in ACTIVE_STATES else 0}
    for key, v in (("value", ev.value), ("limit", ev.limit)):
        text = _float(v)
        if text is not None:
            fields[key] = float(v)
    fields.update({"window": ev.window, "started": int(ev.start), "event_id": ev.event_id, "message": ev.message})
    parts = []
    for k, v in fields.items():
        if isinstance(v, int) and not isinstance(v, bool):
            parts.append(f"{k}={v}i")
        elif isinstance(v, float):
            parts.append(f"{k}={v!r}")
        else:
            parts.append(f'{k}="{escape_string(str(v))}"')
    tags = "".join(f",{k}={escape_key(v)}" for k, v in (("channel", ev.channel), ("device", ev.device),
                                                        ("rule", ev.rule), ("site", ev.site)) if v)
    return f"alarms{tags} {','.join(parts)} {ev.ts}"


def health_lines(snap: Mapping[str, Any], ts_ms: int) -> list[str]:
    """The snapshot as InfluxDB points: plume_device, plume_sink, plume_log (numbers as floats), plume_site."""
    site = str(snap.get("site", ""))
    lines: list[str | None] = []
    for name, d in snap.get("devices", {}).items():
        lines.append(point("plume_device", {"site": site, "device": name}, {
            "polls": float(d["polls"]), "ok": float(d["ok"]), "failures": float(d["failures"]),
            "success_rate": d["success_rate"], "online": 1.0 if d["online"] else 0.0,
            "latency_ms": d["latency_ms"],
            **{k: float(d[k]) for k in ("bad_frames", "resyncs", "skipped", "exceptions", "bus_restarts") if k in d},
        }, ts_ms))
    for name, s in snap.get("sinks", {}).items():
        lines.append(point("plume_sink", {"site": site, "sink": name, "type": s["type"]}, {
            "connected": 1.0 if s["connected"] else 0.0, "depth": float(s["depth"]), "age_s": s["age_s"],
            "delivered": float(s["delivered"]), "dropped": float(s["dropped"]), "rejected": float(s["rejected"]),
            "reconnects": float(s["reconnects"]), "latency_p50_ms": s["latency_p50_ms"],
            "latency_p99_ms": s["latency_p99_ms"],
        }, ts_ms))
    loc = snap.get("location")
    if loc:
        lines.append(point("plume_site", {"site": site}, {
            "lat": float(loc["lat"]), "lon": float(loc["lon"]), "name": loc["name"] or None}, ts_ms))
    lg = snap.get("log")
    if lg:
        lines.append(point("plume_log", {"site": site}, {
            k: float(lg.get(k, 0))
            for k in ("readings", "bytes", "commits", "buffered", "commit_failures", "dropped", "lost")
        }, ts_ms))
    return [x for x in lines if x is not None]
