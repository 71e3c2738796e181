"""Register words <-> engineering values, per the profile's type, byte order, scaling and range.

Decoding never raises on device data: NaN, infinities and out-of-range values come back as a flagged value.
`encode` is the exact inverse used by the simulator, so both ends share one definition of every format.

Values are floats, except text and *exact integers*: an i64/u64 channel with no scaling (scale 1, offset 0, no
linear map) keeps the Python int the device sent, since a float holds integers exactly only up to 2^53 (energy
counters, totalisers and serial numbers go beyond). Smaller integer types stay floats: they are exact as floats,
and an InfluxDB field keeps the type it was first written with.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

from gateway.core.model import ChannelValue, Flag, worst_flag
from gateway.profile import BYTE_TYPES, DataType, Order, RegisterSpec, StatusSpec

_STRUCT: dict[DataType, struct.Struct] = {
    DataType.u16: struct.Struct(">H"),
    DataType.i16: struct.Struct(">h"),
    DataType.u32: struct.Struct(">I"),
    DataType.i32: struct.Struct(">i"),
    DataType.f32: struct.Struct(">f"),
    DataType.u64: struct.Struct(">Q"),
    DataType.i64: struct.Struct(">q"),
    DataType.f64: struct.Struct(">d"),
    DataType.f16: struct.Struct(">e"),
    DataType.bits: struct.Struct(">H"),
}
_FLOATS = (DataType.f32, DataType.f64, DataType.f16)
_HIGH = (DataType.u8h, DataType.i8h)
_SIGNED_BYTE = (DataType.i8h, DataType.i8l)


def words_to_bytes(words: Sequence[int], order: Order) -> bytes:
    """Reorder wire registers into big-endian bytes (the transform is its own inverse)."""
    regs = list(words)
    if order in (Order.CDAB, Order.DCBA):
        regs.reverse()
    raw = b"".join(w.to_bytes(2, "big") for w in regs)
    if order in (Order.BADC, Order.DCBA):
        swapped = bytearray(raw)
        swapped[0::2], swapped[1::2] = raw[1::2], raw[0::2]
        raw = bytes(swapped)
    return raw


def bytes_to_words(raw: bytes, order: Order) -> list[int]:
    """Inverse of words_to_bytes: big-endian bytes to wire registers in the given order."""
    if order in (Order.BADC, Order.DCBA):
        swapped = bytearray(raw)
        swapped[0::2], swapped[1::2] = raw[1::2], raw[0::2]
        raw = bytes(swapped)
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if order in (Order.CDAB, Order.DCBA):
        words.reverse()
    return words


class ShortWords(ValueError):
    """Fewer words (or bits) than the channel needs: the answer did not carry it."""


def decode_raw(spec: RegisterSpec, words: Sequence[int]) -> int | float | str:
    """The raw number (or text) of one channel, before scaling. ShortWords when `words` cannot hold it."""
    need = 1 if spec.type is DataType.bits else spec.words
    if len(words) < need:
        raise ShortWords(f"needs {need} word(s) at {spec.address}, the answer has {len(words)}")
    if spec.type is DataType.bits:
        if spec.is_bit_function:
            return int(words[0]) & 1
        word = words_to_bytes(words[:1], spec.order)
        return (int.from_bytes(word, "big") >> (spec.bit or 0)) & 1
    raw = words_to_bytes(words[: spec.words], spec.order)
    if spec.type in BYTE_TYPES:
        byte = raw[0] if spec.type in _HIGH else raw[1]
        return byte - 256 if spec.type in _SIGNED_BYTE and byte > 127 else byte
    if spec.type is DataType.string:
        return raw.split(b"\x00", 1)[0].decode("latin-1").strip()
    value: int | float = _STRUCT[spec.type].unpack(raw)[0]
    if spec.type is DataType.f32 and isinstance(value, float) and math.isfinite(value):
        return shortest_f32(value)
    return value


_F32 = struct.Struct(">f")


def shortest_f32(x: float) -> float:
    """The shortest decimal that is the same float32 (22709.303, not 22709.302734375): what the instrument meant."""
    exact = _F32.pack(x)
    for digits in range(6, 9):
        y = float(f"{x:.{digits}g}")
        if _F32.pack(y) == exact:
            return y
    return x


@functools.lru_cache(maxsize=4096)
def _decimals(x: float) -> int:
    """Decimal places of a scale or offset as written (0.01 -> 2); cached: asked for every value decoded."""
    exp = Decimal(repr(x)).normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def _rounding(spec: RegisterSpec) -> int | None:
    """Digits that integer registers times a decimal scale really carry (0.01 * 125 = 1.25, not 1.2500000002)."""
    if spec.type in _FLOATS or spec.linear is not None:
        return None
    return max(_decimals(spec.scale), _decimals(spec.offset))


_EXACT = (DataType.i64, DataType.u64)


def exact_integer(spec: RegisterSpec) -> bool:
    """An unscaled 64-bit integer channel: its value is the exact int, never a float."""
    return spec.type in _EXACT and spec.linear is None and spec.scale == 1 and spec.offset == 0


def exact_channels(devices: Iterable[Any]) -> dict[str, frozenset[str]]:
    """device -> its exact 64-bit integer channels, for resolved site devices (the InfluxDB sink writes these as
    integer fields, every other number as a float)."""
    out = {d.name: frozenset(r.channel for r in d.profile.registers if exact_integer(r)) for d in devices}
    return {name: chans for name, chans in out.items() if chans}


def to_engineering(spec: RegisterSpec, raw: int | float | str) -> ChannelValue:
    """Scale a raw value and flag it: NaN/inf -> D with no value; under range -> D; over range -> T."""
    if isinstance(raw, str):
        return ChannelValue(raw, spec.unit)
    if isinstance(raw, int) and exact_integer(spec):
        if spec.max is not None and raw > spec.max:
            return ChannelValue(raw, spec.unit, Flag.T, f"over range max {spec.max}")
        if spec.min is not None and raw < spec.min:
            return ChannelValue(raw, spec.unit, Flag.D, f"under range min {spec.min}")
        return ChannelValue(raw, spec.unit)
    if isinstance(raw, float) and not math.isfinite(raw):
        return ChannelValue(None, spec.unit, Flag.D, f"device sent {raw}")
    flag = Flag.N
    note = ""
    lin = spec.linear
    if lin is not None:
        value = lin.eng_min + (raw - lin.raw_min) / (lin.raw_max - lin.raw_min) * (lin.eng_max - lin.eng_min)
        if raw < lin.raw_min:
            flag, note = Flag.D, f"raw {raw} under {lin.raw_min} (loop open?)"
        elif raw > lin.raw_max:
            flag, note = Flag.T, f"raw {raw} over {lin.raw_max}"
    else:
        value = raw * spec.scale + spec.offset
    digits = _rounding(spec)
    value = float(round(value, digits) if digits is not None else value)
    if spec.max is not None and value > spec.max:
        flag, note = worst_flag(flag, Flag.T), note or f"over range max {spec.max}"
    elif spec.min is not None and value < spec.min:
        flag, note = worst_flag(flag, Flag.D), note or f"under range min {spec.min}"
    return ChannelValue(value, spec.unit, flag, note)


def decode(spec: RegisterSpec, words: Sequence[int]) -> ChannelValue:
    """A channel's flagged value; an answer too short for it gives flag B and no value, never an IndexError."""
    try:
        raw = decode_raw(spec, words)
    except ShortWords as exc:
        return ChannelValue(None, spec.unit, Flag.B, str(exc))
    return to_engineering(spec, raw)


Decoder = Callable[[Sequence[int]], ChannelValue]

# IntDecimal: what a one-register integer channel with a decimal scale needs to be decoded exactly from the integer
# register alone (see int_decimal): (signed, K, P, unit, min, max).
IntDecimal = tuple[bool, int, int, str, float | None, float | None]
_SAFE = 2.0 ** 40  # |value| * 10^digits below this: the float product is nowhere near a rounding boundary


def int_decimal(spec: RegisterSpec) -> IntDecimal | None:
    """For a u16/i16 channel with no linear map, no byte swap, offset 0 and a decimal scale (0.1, 0.01, 2.5 ...):
    (signed, K, P, ...) with `raw * K / P` equal to `to_engineering`'s `float(round(raw * scale + offset, digits))`
    for every register value; None for any other channel.

    Why they are equal: scale = K / 10^d exactly in decimal, digits = d, so the value meant is the decimal N / 10^d
    (N = raw * K). The float product differs from it by a few ulps, far less than half of 10^-d as long as
    |value| * 10^d < 2^40 (checked for the largest register value), so `round(x, d)` gives back that decimal and
    then its nearest double; `int / int` in Python is that nearest double (correctly rounded) as well. Offset 0
    keeps -0.0 out (raw * scale + offset can be -0.0 only through a non-zero offset); property-tested against
    `decode` (tests/acquisition/test_fast_decode.py)."""
    if spec.type not in (DataType.u16, DataType.i16) or spec.linear is not None or spec.order in (
            Order.BADC, Order.DCBA):
        return None
    scale, offset = spec.scale, spec.offset
    if offset != 0 or math.copysign(1.0, offset) < 0 or not math.isfinite(scale) or scale == 0:
        return None
    digits = _rounding(spec)
    if digits is None or digits > 20:
        return None
    k = Decimal(repr(float(scale))).scaleb(digits)
    if k != k.to_integral_value():
        return None
    p = 10**digits
    if abs(float(scale)) * 0x10000 * p >= _SAFE:
        return None
    return spec.type is DataType.i16, int(k), p, spec.unit, spec.min, spec.max


def decoder_for(spec: RegisterSpec) -> Decoder:
    """`decode` for one channel, with what depends only on the profile worked out once. One-register integers
    (most dust and weather channels) take a direct path; every other type goes through `decode`. Both give the
    same ChannelValue (tests/acquisition/test_codec.py checks it)."""
    if spec.type not in (DataType.u16, DataType.i16) or spec.linear is not None or spec.order in (
            Order.BADC, Order.DCBA):
        return functools.partial(decode, spec)
    signed = spec.type is DataType.i16
    scale, offset, unit, lo, hi = spec.scale, spec.offset, spec.unit, spec.min, spec.max
    digits = _rounding(spec)
    normal = Flag.N

    def fast(words: Sequence[int]) -> ChannelValue:
        if not words:  # an answer too short for the channel: decode says so (flag B)
            return decode(spec, words)
        raw = words[0]
        if signed and raw >= 0x8000:
            raw -= 0x10000
        value = float(round(raw * scale + offset, digits))
        if hi is not None and value > hi:
            return ChannelValue(value, unit, Flag.T, f"over range max {hi}")
        if lo is not None and value < lo:
            return ChannelValue(value, unit, Flag.D, f"under range min {lo}")
        return ChannelValue(value, unit, normal, "")

    return fast


def status_flag(spec: StatusSpec, words: Sequence[int]) -> Flag:
    """The flag a status register asks for: the worst of its set bits and its enumerated code (B when the answer
    is too short to hold the register)."""
    if len(words) < spec.words:
        return Flag.B
    raw = int.from_bytes(words_to_bytes(words[: spec.words], spec.order), "big")
    flags = [f for bit, f in spec.bits.items() if raw >> bit & 1]
    if spec.codes:
        flags.append(spec.codes.get(raw, Flag.N))
    return worst_flag(*flags)


def encode_raw(spec: RegisterSpec, raw: int | float | str) -> list[int]:
    """Wire registers (or one bit, on FC 1/2) for a raw value: the simulator's half of the codec."""
    if spec.type is DataType.bits:
        bit = int(raw) & 1
        if spec.is_bit_function:
            return [bit]
        return bytes_to_words((bit << (spec.bit or 0)).to_bytes(2, "big"), spec.order)
    if spec.type is DataType.string:
        data = str(raw).encode("latin-1")[: 2 * spec.words].ljust(2 * spec.words, b"\x00")
        return bytes_to_words(data, spec.order)
    if spec.type in BYTE_TYPES:
        byte = int(raw) & 0xFF
        return bytes_to_words(bytes([byte, 0]) if spec.type in _HIGH else bytes([0, byte]), spec.order)
    st = _STRUCT[spec.type]
    return bytes_to_words(st.pack(raw), spec.order)


_INT_LIMITS: dict[DataType, tuple[int, int]] = {
    DataType.u16: (0, 0xFFFF),
    DataType.i16: (-0x8000, 0x7FFF),
    DataType.u32: (0, 0xFFFFFFFF),
    DataType.i32: (-0x80000000, 0x7FFFFFFF),
    DataType.u64: (0, 0xFFFFFFFFFFFFFFFF),
    DataType.i64: (-0x8000000000000000, 0x7FFFFFFFFFFFFFFF),
    DataType.bits: (0, 1),
    DataType.u8h: (0, 0xFF),
    DataType.u8l: (0, 0xFF),
    DataType.i8h: (-0x80, 0x7F),
    DataType.i8l: (-0x80, 0x7F),
}


def raw_for(spec: RegisterSpec, value: float) -> int | float:
    """The raw register value that encodes an engineering value (clamped to what the type can hold)."""
    lin = spec.linear
    if isinstance(value, int) and not isinstance(value, bool) and exact_integer(spec):
        lo, hi = _INT_LIMITS[spec.type]
        return min(hi, max(lo, value))  # an exact integer: no float on the way
    if lin is not None:
        raw: float = lin.raw_min + (value - lin.eng_min) / (lin.eng_max - lin.eng_min) * (lin.raw_max - lin.raw_min)
    else:
        raw = (value - spec.offset) / spec.scale
    if spec.type is DataType.f16:
        return min(65504.0, max(-65504.0, raw)) if math.isfinite(raw) else raw  # the largest half-precision value
    if spec.type in _FLOATS:
        return raw
    if not math.isfinite(raw):
        raw = 0.0
    lo, hi = _INT_LIMITS[spec.type]
    return min(hi, max(lo, round(raw)))


def encode(spec: RegisterSpec, value: float | str) -> list[int]:
    """Wire registers for an engineering value."""
    if isinstance(value, str) or spec.type is DataType.string:
        return encode_raw(spec, str(value))
    return encode_raw(spec, raw_for(spec, value))
