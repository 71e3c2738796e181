"""InfluxDB line protocol for readings (schema v1, documented in the README).

    <kind>,site=<site>,device=<device> <channel>=<float>,<channel>_flag="<flag>",... <ts ms>

- measurement = the profile's kind (dust, cems, ...); tags site and device exactly as in the site file;
- one field per channel, named as the profile names it: a float (booleans as 0.0/1.0, so a field never changes
  type), or a string for text channels; a value that is None, NaN or infinite is left out (its flag says why);
- one string field `<channel>_flag` per channel with its HJ 212 data flag;
- the poll timestamp in ms (write with precision=ms). The same reading always gives the same point, so a re-send
  after a crash or an outage overwrites instead of doubling.
"""

from __future__ import annotations

import math

from gateway.model import DeviceReading

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_keys: dict[str, tuple[str, str]] = {}


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


def reading_line(reading: DeviceReading) -> str | None:
    """One point for one poll; None when the reading has no channel at all."""
    if not reading.values:
        return None
    parts: list[str] = []
    for ch, cv in reading.values.items():
        vkey, fkey = _field_keys(ch)
        value = cv.value
        if value is not None:
            text = repr(value) if type(value) is float and math.isfinite(value) else format_value(value)
            if text is not None:
                parts.append(vkey + text)
        parts.append(fkey + '"' + cv.flag.value + '"')
    return (
        f"{escape_measurement(reading.kind)},site={escape_key(reading.site)},device={escape_key(reading.device)} "
        f"{','.join(parts)} {reading.ts}"
    )


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
