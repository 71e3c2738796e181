"""A register map written for Telegraf's modbus input needs no translation (issue 14, finding 8): Telegraf's type
names (FLOAT32, UINT16, INT64, FLOAT16, INT8L/INT8H/UINT8L/UINT8H, ...) and byte orders (AB, BA, ABCD, ...,
ABCDEFGH) are accepted; FLOAT16 and the two 8-bit halves of a register are decoded (and served by the simulator)."""

from __future__ import annotations

import struct

import pytest
from pydantic import ValidationError

from gateway.acquisition.codec import decode, encode
from gateway.config import pydantic_problems
from gateway.profile import DataType, Order, RegisterSpec


@pytest.mark.parametrize(("name", "canonical"), [
    ("FLOAT32", DataType.f32), ("float32", DataType.f32), ("FLOAT32-IEEE", DataType.f32), ("UINT16", DataType.u16),
    ("INT16", DataType.i16), ("UINT32", DataType.u32), ("INT32", DataType.i32), ("UINT64", DataType.u64),
    ("INT64", DataType.i64), ("FLOAT64", DataType.f64), ("FLOAT64-IEEE", DataType.f64), ("FLOAT16", DataType.f16),
    ("INT8L", DataType.i8l), ("INT8H", DataType.i8h), ("UINT8L", DataType.u8l), ("UINT8H", DataType.u8h),
    ("F32", DataType.f32), ("u16", DataType.u16),
])
def test_telegraf_type_names_are_aliases(name, canonical):
    assert RegisterSpec(channel="x", address=0, type=name).type is canonical


@pytest.mark.parametrize(("name", "canonical"), [
    ("AB", Order.ABCD), ("BA", Order.BADC), ("ABCD", Order.ABCD), ("CDAB", Order.CDAB), ("dcba", Order.DCBA),
    ("ABCDEFGH", Order.ABCD), ("HGFEDCBA", Order.DCBA), ("BADCFEHG", Order.BADC), ("GHEFCDAB", Order.CDAB),
])
def test_telegraf_byte_orders_are_aliases(name, canonical):
    assert RegisterSpec(channel="x", address=0, type="u32", order=name).order is canonical


def test_a_misspelt_type_is_one_line_with_the_name_meant():
    with pytest.raises(ValidationError) as ei:
        RegisterSpec(channel="x", address=0, type="flaot32")
    (line,) = pydantic_problems(ei.value)
    assert line.startswith("type: 'flaot32' is not one of") and line.endswith("did you mean f32?"), line


def test_float16_decodes_ieee_half_precision():
    spec = RegisterSpec(channel="x", address=0, type="FLOAT16")
    (word,) = struct.unpack(">H", struct.pack(">e", 21.5))
    assert decode(spec, [word]).value == 21.5
    assert encode(spec, 21.5) == [word]


def test_the_two_8_bit_halves_of_a_register():
    word = 0xF00A  # high byte 0xF0 (240, or -16 signed), low byte 0x0A (10)
    halves = {t: decode(RegisterSpec(channel="x", address=0, type=t), [word]).value
              for t in ("UINT8H", "INT8H", "UINT8L", "INT8L")}
    assert halves == {"UINT8H": 240, "INT8H": -16, "UINT8L": 10, "INT8L": 10}
    assert encode(RegisterSpec(channel="x", address=0, type="INT8H"), -16) == [0xF000]
    assert encode(RegisterSpec(channel="x", address=0, type="UINT8L"), 10) == [0x000A]
    # Telegraf's BA byte order swaps the bytes of the register first
    assert decode(RegisterSpec(channel="x", address=0, type="UINT8H", order="BA"), [word]).value == 10
