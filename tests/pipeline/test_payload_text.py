"""The MQTT data message and the InfluxDB line of a reading are built from precomputed text per channel (they
run for every poll); they stay exactly what the documented encoding gives: the `json` module's output of the
contract's dict, and the line protocol's rules, for any values, units, notes, flags and names."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.sinks.contract import data_payload
from gateway.store.records import ReadingRecord

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
values = st.one_of(st.none(), st.floats(), st.integers(-10**6, 10**6), st.booleans(), st.text(max_size=6))
channels = st.dictionaries(names, st.tuples(values, st.text(max_size=5), st.sampled_from(list(Flag)),
                                            st.sampled_from(["", "over range max 10", 'a "quoted"\nnote'])),
                           max_size=6)


def reference(record: ReadingRecord) -> bytes:
    """The contract's dict through json, as the payload was built before (one dict per value)."""
    r = record.reading

    def clean(v: object) -> object:
        return None if type(v) is float and not math.isfinite(v) else v

    vals: dict[str, dict[str, object]] = {}
    for ch, cv in r.values.items():
        item: dict[str, object] = {"value": clean(cv.value), "unit": cv.unit, "flag": cv.flag.value}
        if cv.note:
            item["note"] = cv.note
        vals[ch] = item
    msg: dict[str, object] = {"v": 1, "site": r.site, "device": r.device, "kind": r.kind, "seq": record.seq,
                              "ts": r.ts, "ok": r.ok, "values": vals}
    if r.error:
        msg["error"] = r.error
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@settings(max_examples=150, deadline=None)
@given(channels, names, names, st.booleans(), st.text(max_size=10), st.integers(0, 2**45), st.integers(1, 10**9))
def test_the_data_message_is_the_json_of_the_contract(chs: dict[str, tuple[object, str, Flag, str]], site: str,
                                                      device: str, ok: bool, error: str, ts: int, seq: int) -> None:
    cvs = {ch: ChannelValue(v, unit, flag, note) for ch, (v, unit, flag, note) in chs.items()}  # type: ignore[arg-type]
    record = ReadingRecord(7, ts, site, seq, DeviceReading(site, device, "dust", ts, cvs, ok, error))
    assert data_payload(record) == reference(record)
    assert json.loads(data_payload(record))["values"].keys() == cvs.keys()


def reference_line(reading: DeviceReading) -> str | None:
    """The line protocol of a reading as it was built before (format_value for every value)."""
    from gateway.sinks.lineproto import escape_key, escape_measurement, format_value

    if not reading.values:
        return None
    parts = []
    for ch, cv in reading.values.items():
        text = format_value(cv.value)
        if text is not None:
            parts.append(f"{escape_key(ch)}={text}")
        parts.append(f'{escape_key(ch)}_flag="{cv.flag.value}"')
    return (f"{escape_measurement(reading.kind)},site={escape_key(reading.site)},"
            f"device={escape_key(reading.device)} {','.join(parts)} {reading.ts}")


@settings(max_examples=150, deadline=None)
@given(channels, names, st.integers(0, 2**45))
def test_the_line_of_a_reading_follows_the_line_protocol(chs: dict[str, tuple[object, str, Flag, str]],
                                                         device: str, ts: int) -> None:
    from gateway.sinks.lineproto import reading_line

    cvs = {ch: ChannelValue(v, unit, flag, note) for ch, (v, unit, flag, note) in chs.items()}  # type: ignore[arg-type]
    reading = DeviceReading("s 1", device, "dust", ts, cvs)
    assert reading_line(reading) == reference_line(reading)
