"""Hostile input: random bytes, mutated packets and chopped streams never raise anything but codec errors."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.hj212.codec import Framer, Packet, crc16, decode, encode, split
from gateway.hj212.errors import Hj212Error

from .strategies import packets
from .vectors import VECTORS

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_error(raw: bytes) -> Packet | Hj212Error:
    try:
        return decode(raw)
    except Hj212Error as exc:  # the only thing allowed out of decode
        assert str(exc) and "\n" not in str(exc)
        return exc


def wire(p: Packet) -> bytes:
    return encode(split(p)[0])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from(VECTORS) | packets(max_groups=8).map(wire)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        i = draw(st.integers(0, max(0, len(base) - 1)))
        if op == "flip" and base:
            base[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and base:
            base[i] = draw(st.sampled_from(b"#;,=&\r\n\x00\xff0aZ-"))
        elif op == "insert":
            base[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del base[i: i + draw(st.integers(1, 8))]
        elif op == "truncate":
            del base[i:]
        elif op == "dup":
            base[i:i] = base[i: i + draw(st.integers(1, 40))]
    return bytes(base)


@st.composite
def mutated_data(draw: st.DrawFn) -> bytes:
    """A mutated data segment inside a correct envelope: length and CRC fit, so the field parser is reached."""
    data = bytearray(draw(st.sampled_from(VECTORS) | packets(max_groups=8).map(wire))[6:-6])
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, max(0, len(data) - 1)))
        choice = draw(st.integers(0, 2))
        if choice == 0 and data:
            data[i] = draw(st.sampled_from(b";,=&#-_ 0A\x01\x7f\xc3\xa9"))
        elif choice == 1:
            del data[i: i + draw(st.integers(1, 6))]
        else:
            data[i:i] = draw(st.sampled_from([b";", b"CP=&&", b"=", b"&&", b",x=1", b"QN=1;", b"Flag=7;"]))
    d = bytes(data)
    return b"##%04d%s%04X\r\n" % (len(d), d, crc16(d))


@FUZZ
@given(st.binary(max_size=1200))
def test_random_bytes_raise_only_codec_errors(raw: bytes) -> None:
    decode_or_error(raw)
    decode_or_error(b"##" + raw)


@FUZZ
@given(mutated())
def test_mutated_packets_raise_only_codec_errors(raw: bytes) -> None:
    result = decode_or_error(raw)
    if isinstance(result, Packet):
        assert encode(result).lower() == raw.lower()  # what decodes is exactly what was sent (CRC case aside)


@FUZZ
@given(mutated_data())
def test_mutated_data_segments_reach_the_field_parser_and_raise_only_codec_errors(raw: bytes) -> None:
    result = decode_or_error(raw)
    if isinstance(result, Packet):
        assert encode(result) == raw


@settings(max_examples=150, deadline=None)
@given(st.lists(packets(max_groups=6).map(wire), min_size=1, max_size=6),
       st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"#", b"")), min_size=7, max_size=7),
       st.lists(st.integers(1, 200), min_size=1, max_size=30))
def test_framer_recovers_every_packet_between_junk_however_the_stream_is_chopped(
        pkts: list[bytes], junk: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(j + p for j, p in zip(junk, pkts, strict=False)) + junk[-1]
    framer = Framer()
    out: list[bytes | Hj212Error] = []
    pos = 0
    for c in cuts * 100:
        if pos >= len(stream):
            break
        out += framer.feed(stream[pos: pos + c])
        pos += c
    out += framer.feed(stream[pos:])
    leftover = framer.eof()
    got = [x for x in out if isinstance(x, bytes)]
    assert got == pkts
    assert all(isinstance(x, Hj212Error) for x in out if not isinstance(x, bytes))
    assert framer.pending == 0
    assert (leftover is None) == (junk[-1] == b"" or len(junk[-1]) == 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300) | mutated(), max_size=8), st.integers(1, 64))
def test_framer_never_raises_and_stays_bounded_on_garbage(chunks: list[bytes], step: int) -> None:
    framer = Framer()
    stream = b"".join(chunks)
    for i in range(0, len(stream), step):
        for item in framer.feed(stream[i: i + step]):
            if isinstance(item, bytes):
                decode_or_error(item)
        assert framer.pending <= 1036
    framer.eof()
