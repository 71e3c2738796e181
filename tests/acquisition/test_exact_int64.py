"""Exact 64-bit integers (issue 14): an unscaled i64/u64 channel (scale 1, offset 0, no linear map) carries the
integer the device sent, not the nearest float, through the decoder, the durable log's row codec, the MQTT JSON
payload (a JSON integer), InfluxDB line protocol (an integer field `...i`) and HJ 212 numbers. Other integer types
stay floats (below 2^53 a float is exact, and an existing InfluxDB field keeps its type)."""

from __future__ import annotations

import json

import pytest

from gateway.acquisition.codec import decode, encode
from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.hj212.routes import number
from gateway.profile import Order, RegisterSpec
from gateway.sinks.contract import data_payload
from gateway.sinks.lineproto import reading_line
from gateway.store.codec import Schema, schema_key
from gateway.store.codec import decode as decode_row
from gateway.store.codec import encode as encode_row
from gateway.store.records import ReadingRecord

ABOVE_2_53 = 2**53 + 1  # 9007199254740993: the first integer a float cannot hold


def spec(**kw: object) -> RegisterSpec:
    return RegisterSpec.model_validate({"channel": "x", "address": 0, **kw})


@pytest.mark.parametrize(("type_", "value"), [("i64", ABOVE_2_53), ("i64", -(2**63)), ("i64", 2**63 - 1),
                                              ("u64", 2**64 - 1), ("u64", ABOVE_2_53 + 2)])
@pytest.mark.parametrize("order", ["ABCD", "CDAB", "BADC", "DCBA"])
def test_an_unscaled_64_bit_register_decodes_to_the_exact_integer(type_, value, order):
    s = spec(type=type_, order=order)
    cv = decode(s, encode(s, value))
    assert type(cv.value) is int and cv.value == value and cv.flag is Flag.N


def test_a_scaled_64_bit_register_and_smaller_integers_stay_floats():
    assert type(decode(spec(type="i64", scale=0.1), encode(spec(type="i64", scale=0.1), 12.5)).value) is float
    assert type(decode(spec(type="u32"), [0, 7]).value) is float
    assert type(decode(spec(type="u16"), [7]).value) is float


def test_an_exact_integer_is_still_checked_against_the_channels_range():
    s = spec(type="u64", max=10**18)
    cv = decode(s, encode(s, ABOVE_2_53 * 1000))
    assert cv.value == ABOVE_2_53 * 1000 and cv.flag is Flag.T


def reading(value: object) -> DeviceReading:
    return DeviceReading("s", "meter-1", "energy", 1_700_000_000_000,
                         {"count": ChannelValue(value, "Wh"), "temp": ChannelValue(21.5, "C")})  # type: ignore[arg-type]


def test_the_log_mqtt_influx_and_hj212_carry_the_exact_integer():
    r = reading(ABOVE_2_53)
    row = encode_row(1, 1, 1, r)
    back = decode_row(Schema(1, *schema_key(r)), row[1], row[4], row[5], row[6])
    assert type(back.values["count"].value) is int and back.values["count"].value == ABOVE_2_53
    payload = data_payload(ReadingRecord(1, r.ts, "s", 1, back)).decode()
    assert '"value":9007199254740993,' in payload
    assert json.loads(payload)["values"]["count"]["value"] == ABOVE_2_53
    line = reading_line(back, exact={"count"})
    assert line is not None and "count=9007199254740993i," in line and "temp=21.5," in line, line
    assert "count=9007199254740992.0," in (reading_line(back) or ""), "an int of another channel stays a float"
    assert number(ABOVE_2_53, 2) == "9007199254740993"


def test_a_u64_above_the_largest_influx_integer_is_left_out_of_the_point_not_the_whole_line():
    line = reading_line(reading(2**63 + 5), exact={"count"})
    assert line is not None and "count=" not in line and 'count_flag="N"' in line and "temp=21.5" in line, line


def test_the_influx_sink_is_told_the_exact_channels_of_the_site(tmp_path):
    from gateway.acquisition.codec import exact_channels
    from gateway.site.load import load_site

    path = tmp_path / "site.yaml"
    path.write_text("""
site: {{id: s}}
buses: [{{name: lan, type: tcp, host: 127.0.0.1, port: 502}}]
devices:
  - name: meter-1
    bus: lan
    kind: energy
    registers:
      - {{channel: wh, address: 0, type: u64}}
      - {{channel: kwh, address: 4, type: u64, scale: 0.001}}
      - {{channel: hours, address: 8, type: u32}}
  - {{name: dust-1, bus: lan, address: 2, profile: dust-monitor}}
""".replace("{{", "{").replace("}}", "}"), encoding="utf-8")
    site = load_site(path)
    assert exact_channels(site.devices) == {"meter-1": frozenset({"wh"})}


def test_byte_order_names_of_64_bit_registers_still_apply():
    s = spec(type="u64", order=Order.DCBA)
    assert decode(s, encode(s, 0x0102030405060708)).value == 0x0102030405060708


def test_an_hj212_real_time_packet_carries_the_exact_integer():
    from zoneinfo import ZoneInfo

    from gateway.hj212.realtime import RealtimeSource
    from gateway.hj212.routes import Route

    src = RealtimeSource([Route("e01001", "meter-1", "count", None, 2)], interval_s=60, grace_s=0,
                         tz=ZoneInfo("Asia/Shanghai"))
    r = reading(ABOVE_2_53)
    out = src.feed(ReadingRecord(1, r.ts, "s", 1, r))
    later = reading(1)
    later.ts += 120_000
    out += src.feed(ReadingRecord(2, later.ts, "s", 2, later))
    fields = [f for o in out for g in o.cp.groups for f in g]
    assert ("e01001-Rtd", "9007199254740993") in fields, out
