"""Register decoding as a user sees it: tables of wire words -> engineering values and flags."""

from __future__ import annotations

import math
import struct
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.acquisition.codec import decode, decoder_for, encode, encode_raw, status_flag
from gateway.core.model import Flag
from gateway.profile import DataType, Order, RegisterSpec, StatusSpec, load_profile


def spec(**kw: object) -> RegisterSpec:
    return RegisterSpec.model_validate({"channel": "x", "address": 0, **kw})


def test_cwt_wire_vector_decodes_to_1_25_m_s():
    wind = load_profile("cwt-dust-weather").channel("wind_speed")
    # response 01 03 02 00 7D 78 65: one register, 0x007D = 125, x0.01 m/s
    cv = decode(wind, [0x007D])
    assert (cv.value, cv.unit, cv.flag) == (1.25, "m/s", Flag.N)


# 32-bit value 0x41200000 = 10.0f; bytes A=0x41 B=0x20 C=0x00 D=0x00 in each order on the wire
@pytest.mark.parametrize(
    ("order", "words"),
    [
        ("ABCD", [0x4120, 0x0000]),
        ("CDAB", [0x0000, 0x4120]),
        ("BADC", [0x2041, 0x0000]),
        ("DCBA", [0x0000, 0x2041]),
    ],
)
def test_float32_in_every_word_order(order, words):
    assert decode(spec(type="f32", order=order), words).value == 10.0


@pytest.mark.parametrize(
    ("type_", "order", "words", "expected"),
    [
        ("u16", "ABCD", [0xFFFF], 65535.0),
        ("i16", "ABCD", [0xFFFF], -1.0),
        ("i16", "BADC", [0x00FF], -256.0),  # bytes swapped: 0xFF00
        ("u32", "ABCD", [0x0001, 0x0002], 65538.0),
        ("u32", "CDAB", [0x0002, 0x0001], 65538.0),
        ("i32", "ABCD", [0xFFFF, 0xFFFE], -2.0),
        ("i32", "DCBA", [0xFEFF, 0xFFFF], -2.0),
        ("u64", "ABCD", [0, 0, 0x0001, 0x0000], 65536.0),
        ("u64", "CDAB", [0x0000, 0x0001, 0, 0], 65536.0),
        ("i64", "ABCD", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], -1.0),
        ("f64", "ABCD", [0x4059, 0x0000, 0x0000, 0x0000], 100.0),
        ("f64", "DCBA", [0x0000, 0x0000, 0x0000, 0x5940], 100.0),
    ],
)
def test_every_type_decodes(type_, order, words, expected):
    assert decode(spec(type=type_, order=order), words).value == expected


def test_string_register_strips_padding():
    words = [0x4142, 0x4344, 0x4500, 0x0000]  # "ABCDE\0\0\0"
    assert decode(spec(type="string", length=4), words).value == "ABCDE"
    assert decode(spec(type="string", length=4, order="BADC"), [0x4241, 0x4443, 0x0045, 0]).value == "ABCDE"


def test_bits_from_register_and_from_coil():
    assert decode(spec(type="bits", bit=3), [0b1000]).value == 1.0
    assert decode(spec(type="bits", bit=2), [0b1000]).value == 0.0
    assert decode(spec(type="bits", function=1), [1]).value == 1.0


def test_scale_and_offset_give_clean_decimals():
    cv = decode(spec(type="i16", scale=0.1, offset=-40), [653])
    assert cv.value == 25.3  # not 25.299999999999997


def test_nan_and_infinity_become_flag_d_without_a_value():
    nan_words = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
    inf_words = list(struct.unpack(">HH", struct.pack(">f", math.inf)))
    for words in (nan_words, inf_words):
        cv = decode(spec(type="f32"), words)
        assert cv.value is None and cv.flag is Flag.D and cv.note


def test_over_range_is_t_and_under_range_is_d_value_kept():
    s = spec(type="u16", min=0, max=1000)
    assert (decode(s, [1001]).flag, decode(s, [1001]).value) == (Flag.T, 1001.0)
    s2 = spec(type="i16", min=0, max=1000)
    assert (decode(s2, [0xFFFF]).flag, decode(s2, [0xFFFF]).value) == (Flag.D, -1.0)


def test_4_20ma_raw_counts_follow_the_domain_formula():
    # eng = (raw - 5530) / 22118 * span; span 500 mg/m3; raw 16589 -> (16589-5530)/22118*500 = 250.0
    s = spec(type="u16", linear={"raw_min": 5530, "raw_max": 27648, "eng_min": 0, "eng_max": 500})
    assert decode(s, [16589]).value == pytest.approx(250.0)
    assert decode(s, [5530]).value == 0.0
    open_loop = decode(s, [1000])
    assert open_loop.flag is Flag.D and "loop" in open_loop.note
    assert decode(s, [30000]).flag is Flag.T


def test_status_bits_and_codes_map_to_flags():
    st_bits = StatusSpec(address=0, bits={0: Flag.D, 1: Flag.C, 2: Flag.M})
    assert status_flag(st_bits, [0]) is Flag.N
    assert status_flag(st_bits, [0b010]) is Flag.C
    assert status_flag(st_bits, [0b111]) is Flag.D  # fault is worse than calibration or maintenance
    st_codes = StatusSpec(address=0, codes={0: Flag.N, 1: Flag.D, 2: Flag.C, 3: Flag.M})
    assert status_flag(st_codes, [3]) is Flag.M


NUMERIC = [DataType.u16, DataType.i16, DataType.u32, DataType.i32, DataType.u64, DataType.i64]
RANGES = {
    DataType.u16: (0, 2**16 - 1), DataType.i16: (-(2**15), 2**15 - 1),
    DataType.u32: (0, 2**32 - 1), DataType.i32: (-(2**31), 2**31 - 1),
    DataType.u64: (0, 2**53), DataType.i64: (-(2**53), 2**53),
}


@given(st.sampled_from(NUMERIC), st.sampled_from(list(Order)), st.data())
def test_integers_round_trip_through_the_wire_in_any_order(type_, order, data):
    lo, hi = RANGES[type_]
    raw = data.draw(st.integers(lo, hi))
    s = spec(type=type_.value, order=order.value)
    words = encode_raw(s, raw)
    assert len(words) == s.words and all(0 <= w <= 0xFFFF for w in words)
    assert decode(s, words).value == float(raw)


def significant_digits(x: float) -> int:
    """How many digits a decimal needs to write x (1e12: one; 999999995904.0: twelve)."""
    return len(Decimal(repr(x)).normalize().as_tuple().digits)


@given(st.sampled_from(list(Order)), st.floats(allow_nan=False, allow_infinity=False, width=32))
@example(Order.ABCD, 999999995904.0)  # the float32 nearest 1e12: decoded as 1e12, longer in repr() but one digit
def test_float32_round_trips_in_any_order(order, value):
    s = spec(type="f32", order=order.value)
    got = decode(s, encode(s, value)).value
    assert isinstance(got, float)
    assert struct.unpack(">f", struct.pack(">f", got))[0] == value  # the same float32 ...
    assert significant_digits(got) <= significant_digits(value)  # ... written with as few digits as it can be


def test_float32_is_reported_as_its_shortest_decimal():
    s = spec(type="f32")
    assert decode(s, encode(s, 22709.302734375)).value == 22709.303
    assert decode(s, encode(s, 0.1)).value == 0.1


@given(st.sampled_from(list(Order)), st.floats(allow_nan=False, allow_infinity=False))
def test_float64_round_trips_in_any_order(order, value):
    s = spec(type="f64", order=order.value)
    assert decode(s, encode(s, value)).value == value


@given(st.integers(0, 65535), st.sampled_from([0.1, 0.01, 0.001, 1.0, 10.0]), st.sampled_from([0.0, -40.0, 0.5]))
def test_scaled_values_survive_encode_decode(raw, scale, offset):
    s = spec(type="u16", scale=scale, offset=offset)
    value = decode(s, [raw]).value
    assert isinstance(value, float)
    assert encode(s, value) == [raw]


@given(
    typ=st.sampled_from(["u16", "i16", "u32", "f32", "bits"]),
    order=st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]),
    scale=st.sampled_from([1.0, 0.1, 0.01, 0.001, 2.5, 10.0]),
    offset=st.sampled_from([0.0, -40.0, 0.5, 273.15]),
    bounds=st.tuples(st.none() | st.integers(-100, 100), st.none() | st.integers(200, 5000)),
    words=st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2),
)
def test_the_per_channel_decoder_gives_what_decode_gives(typ: str, order: str, scale: float, offset: float,
                                                         bounds: tuple[int | None, int | None],
                                                         words: list[int]) -> None:
    spec = RegisterSpec.model_validate({"channel": "c", "address": 0, "function": 3, "type": typ, "order": order,
                                "scale": scale, "offset": offset, "min": bounds[0], "max": bounds[1], "unit": "u",
                                **({"bit": 3} if typ == "bits" else {})})
    assert decoder_for(spec)(words) == decode(spec, words)


@pytest.mark.parametrize("dtype", [t.value for t in DataType if t is not DataType.string] + ["string"])
def test_an_answer_too_short_for_the_channel_is_flag_b_not_an_index_error(dtype):
    extra = {"length": 4} if dtype == "string" else {}
    for function in ((1, 2) if dtype == "bits" else (3,)):
        for cv in (decode(spec(type=dtype, function=function, **extra), []),
                   decoder_for(spec(type=dtype, function=function, **extra))([])):
            assert cv.flag is Flag.B and cv.value is None and "needs" in cv.note
    assert status_flag(StatusSpec.model_validate({"address": 0, "bits": {0: "C"}}), []) is Flag.B
