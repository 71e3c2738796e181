"""The codec against the public vectors, the CRC of appendix A, the length rule and each kind of bad packet."""

from __future__ import annotations

import pytest

from gateway.hj212.codec import (
    DATA_MAX,
    Cp,
    Packet,
    crc16,
    decode,
    encode,
    frame,
    join,
    make_flag,
    parse_data,
    split,
)
from gateway.hj212.errors import (
    CharacterError,
    CrcError,
    FieldError,
    FramingError,
    Hj212Error,
    LengthError,
    OversizeError,
    SplitError,
    TruncatedError,
)

from .vectors import V1062, V2011, VECTORS


def crc_appendix_a(data: bytes) -> int:
    """The CRC exactly as appendix A writes it, bit by bit (the codec uses a table)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ byte
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return crc


def crc_modbus(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def data_of(raw: bytes) -> bytes:
    return raw[6:-6]


def reframe(data: bytes) -> bytes:
    """A packet around `data` with a correct length and CRC (to reach the field checks)."""
    return b"##%04d%s%04X\r\n" % (len(data), data, crc16(data))


# --- the public vectors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", VECTORS, ids=["1062", "2011"])
def test_vector_decodes_and_reencodes_byte_for_byte(raw: bytes) -> None:
    assert encode(decode(raw)) == raw


def test_vector_1062_fields() -> None:
    p = decode(V1062)
    assert (p.qn, p.st, p.cn, p.pw, p.mn, p.flag) == ("20160801085857223", "32", "1062", "100000",
                                                     "010000A8900016F000169DC0", 5)
    assert p.answer_wanted and not p.is_split and p.version == 2017
    assert p.cp.get("RtdInterval") == "30"


def test_vector_2011_fields_keep_their_exact_text() -> None:
    p = decode(V2011)
    assert p.cp.get("DataTime") == "20180821142509"
    pol = p.cp.pollutants()
    assert list(pol) == ["a34004", "a34002", "a34001", "LA", "a01001", "a01002", "a01006", "a01007", "a01008"]
    assert pol["a34004"] == {"Rtd": "0.0"} and pol["a01008"] == {"Rtd": "0"}  # "0" stays "0", not "0.0"
    assert not p.answer_wanted and p.version == 2017


def test_vectors_built_from_fields_give_the_same_bytes() -> None:
    p = Packet("20160801085857223", "32", "1062", "100000", "010000A8900016F000169DC0",
               make_flag(2017, answer=True), Cp.of({"RtdInterval": 30}))
    assert encode(p) == V1062


# --- CRC ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", VECTORS, ids=["1062", "2011"])
def test_crc_of_vectors_matches_appendix_a_and_not_modbus(raw: bytes) -> None:
    data, given = data_of(raw), int(raw[-6:-2], 16)
    assert crc16(data) == crc_appendix_a(data) == given
    assert crc_modbus(data) != given


def test_crc_table_equals_bitwise_definition_on_every_byte_and_pairs() -> None:
    for a in range(256):
        assert crc16(bytes([a])) == crc_appendix_a(bytes([a]))
        assert crc16(bytes([a, 255 - a, a ^ 0x5A])) == crc_appendix_a(bytes([a, 255 - a, a ^ 0x5A]))
    assert crc16(b"") == 0xFFFF


def test_misprinted_crc_1c08_of_the_standard_is_refused_naming_both_values() -> None:
    bad = V1062.replace(b"1C80\r\n", b"1C08\r\n")
    with pytest.raises(CrcError) as ei:
        decode(bad)
    assert "1C08" in str(ei.value) and "1C80" in str(ei.value)
    assert ei.value.qn_rtn == 9


def test_crc_is_compared_case_insensitively_and_written_upper_case() -> None:
    lower = V1062.replace(b"1C80", b"1c80")
    assert decode(lower) == decode(V1062)
    assert encode(decode(lower)).endswith(b"1C80\r\n")


# --- length -----------------------------------------------------------------------------------------------------

def test_length_counts_utf8_bytes_not_characters() -> None:
    p = Packet("20240101000000000", "39", "3020", "AbC123", "MN1", 4, Cp.of({"i1-Info": "扬尘"}))
    raw = encode(p)
    data = p.data()
    assert int(raw[2:6]) == len(data.encode()) == len(data) + 4  # two characters of three bytes each
    assert decode(raw) == p


def test_data_segment_of_exactly_1024_bytes_is_valid_and_1025_is_oversize() -> None:
    base = Packet("20240101000000000", "39", "2011", "AbC123", "MN1", 4, Cp.of({"x-Info": "a"}))
    pad = DATA_MAX - len(base.data())
    p = Packet(base.qn, base.st, base.cn, base.pw, base.mn, 4, Cp.of({"x-Info": "a" * (1 + pad)}))
    assert len(p.data()) == DATA_MAX
    assert decode(encode(p)) == p
    longer = Packet(p.qn, p.st, p.cn, p.pw, p.mn, 4, Cp.of({"x-Info": "a" * (2 + pad)}))
    with pytest.raises(OversizeError):
        encode(longer)
    raw = b"##1025" + longer.data().encode() + b"%04X\r\n" % crc16(longer.data().encode())
    with pytest.raises(OversizeError, match="1025"):
        decode(raw)


def test_length_field_that_disagrees_with_the_data_is_a_length_error() -> None:
    bad = b"##0102" + V1062[6:]
    with pytest.raises(LengthError, match="says 102 bytes, the data segment has 101"):
        decode(bad)


# --- each kind of bad packet: its own error and a message that says what is wrong --------------------------------

D = b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&"

BAD: list[tuple[str, bytes, type[Hj212Error], str]] = [
    ("no ##", V1062[1:], FramingError, "starts with ##"),
    ("length not digits", b"##01a1" + V1062[6:], FramingError, "not 4 decimal digits"),
    ("header cut", b"##01", TruncatedError, "inside the ##LLLL header"),
    ("cut in data", V1062[:50], TruncatedError, "promises 113"),
    ("no CR LF", V1062[:-2] + b"xx", FramingError, "CR LF"),
    ("bytes after end", V1062[:-2] + b"\r\nAB", FramingError, "2 bytes after the end"),
    ("crc not hex", V1062.replace(b"1C80", b"1CZ0"), FramingError, "not 4 hex digits"),
    ("oversize field", b"##2000" + V1062[6:], OversizeError, "2000"),
    ("not utf-8", reframe(D.replace(b"100000", b"10\xff000")), CharacterError, "0xFF"),
    ("control char", reframe(D.replace(b"RtdInterval=30", b"RtdInterval=3\t0")), CharacterError, "0x09"),
    ("missing PW", reframe(D.replace(b"PW=100000;", b"")), FieldError, "PW: missing"),
    ("missing CP", reframe(D.split(b";CP=")[0]), FieldError, "CP: missing"),
    ("CP not closed", reframe(D[:-2]), FieldError, "does not end with &&"),
    ("unknown field", reframe(D.replace(b"ST=32", b"St=32")), FieldError, "unknown field 'St'"),
    ("twice", reframe(D.replace(b"ST=32;", b"ST=32;ST=32;")), FieldError, "ST: appears twice"),
    ("order", reframe(D.replace(b"ST=32;CN=1062", b"CN=1062;ST=32")), FieldError, "out of order"),
    ("bad QN date", reframe(D.replace(b"20160801", b"20161301")), FieldError, "QN: 20161301085857223 is not"),
    ("short QN", reframe(D.replace(b"857223", b"857")), FieldError, "QN: '20160801085857' is not 17 digits"),
    ("CN letters", reframe(D.replace(b"CN=1062", b"CN=10x2")), FieldError, "CN: '10x2'"),
    ("PW too long", reframe(D.replace(b"PW=100000", b"PW=1000000")), FieldError, "PW: 7 characters that are not"),
    ("MN bad char", reframe(D.replace(b"MN=0100", b"MN=01.0")), FieldError, "MN: "),
    ("Flag 256", reframe(D.replace(b"Flag=5", b"Flag=256")), FieldError, "Flag: 256"),
    ("Flag 05", reframe(D.replace(b"Flag=5", b"Flag=05")), FieldError, "Flag: '05'"),
    ("split bit no PNUM", reframe(D.replace(b"Flag=5", b"Flag=7")), FieldError, "PNUM: missing"),
    ("PNUM without bit", reframe(D.replace(b"Flag=5;", b"Flag=5;PNUM=2;PNO=1;")), FieldError, "split bit"),
    ("PNO beyond", reframe(D.replace(b"Flag=5;", b"Flag=7;PNUM=2;PNO=3;")), FieldError, "PNO: 3 is beyond"),
    ("PNO alone", reframe(D.replace(b"Flag=5;", b"Flag=7;PNO=1;")), FieldError, "PNUM: missing"),
    ("empty CP item", reframe(D.replace(b"RtdInterval=30", b"RtdInterval=30;")), FieldError, "item 2 is empty"),
    ("CP no =", reframe(D.replace(b"RtdInterval=30", b"RtdInterval")), FieldError, "is not key=value"),
    ("CP empty value", reframe(D.replace(b"=30", b"=")), FieldError, "has no value"),
    ("CP bad key", reframe(D.replace(b"RtdInterval", b"Rtd Interval")), FieldError, "key 'Rtd Interval'"),
    ("CP & in value", reframe(D.replace(b"=30", b"=3&0")), FieldError, "'&'"),
    ("empty header field", reframe(D.replace(b"ST=32;", b";")), FieldError, "empty field"),
]


@pytest.mark.parametrize(("raw", "kind", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_packet_raises_its_own_error_with_a_clear_message(raw: bytes, kind: type[Hj212Error], words: str
                                                               ) -> None:
    with pytest.raises(kind) as ei:
        decode(raw)
    assert words in str(ei.value)
    assert type(ei.value) is kind  # not a parent class, not a stray ValueError


def test_field_errors_map_to_the_9011_answer_codes() -> None:
    codes = {}
    for name, raw, _, _ in BAD:
        try:
            decode(raw)
        except Hj212Error as exc:
            codes[name] = exc.qn_rtn
    assert codes["PW too long"] == 3 and codes["MN bad char"] == 4 and codes["Flag 256"] == 6
    assert codes["bad QN date"] == 7 and codes["CN letters"] == 8 and codes["unknown field"] == 100


def test_encode_refuses_a_packet_it_could_not_decode_again() -> None:
    good = decode(V1062)
    for bad in (Packet("2016", "32", "1062", "100000", "MN", 5), Packet(good.qn, "32", "1062", "1;2", "MN", 5),
                Packet(good.qn, "32", "1062", "100000", "MN", 5, Cp.of({"a-Rtd": "1,5"})),
                Packet(good.qn, "32", "1062", "100000", "MN", 5, Cp(((),))),
                Packet(good.qn, "32", "1062", "100000", "MN", 300)):
        with pytest.raises(FieldError):
            encode(bad)


def test_parse_data_reads_a_data_segment_without_envelope() -> None:
    assert parse_data(D.decode()) == decode(V1062)


# --- splitting -----------------------------------------------------------------------------------------------------

def long_2011(n: int) -> Packet:
    fields: dict[str, object] = {"DataTime": "20240101120000"}
    for i in range(n):
        fields[f"a{i:05d}-Rtd"] = f"{i * 1.5:.3f}"
        fields[f"a{i:05d}-Flag"] = "N"
    return Packet("20240101120000123", "31", "2011", "AbC123", "010000A8900016F000169DC0",
                  make_flag(2017, answer=True), Cp.from_mapping(fields))


def test_split_gives_parts_within_1024_bytes_that_join_back() -> None:
    p = long_2011(120)
    assert len(p.data()) > 3 * DATA_MAX
    parts = split(p)
    assert len(parts) >= 4
    for i, q in enumerate(parts, 1):
        raw = encode(q)
        assert int(raw[2:6]) <= DATA_MAX
        back = decode(raw)
        assert back == q and back.pnum == len(parts) and back.pno == i and back.is_split and back.answer_wanted
        assert back.cp.groups[0] == (("DataTime", "20240101120000"),)  # each part says when
    assert join(list(reversed(parts))) == p


def test_a_packet_that_fits_is_not_split() -> None:
    p = decode(V2011)
    assert split(p) == [p]


def test_an_item_longer_than_a_packet_cannot_be_split() -> None:
    p = Packet("20240101120000123", "31", "2011", "AbC123", "MN1", 4, Cp.of({"x-Info": "a" * 1100}))
    with pytest.raises(OversizeError, match="too long for any packet"):
        split(p)


def test_join_refuses_missing_duplicate_and_foreign_parts() -> None:
    parts = split(long_2011(60))
    assert len(parts) >= 3
    with pytest.raises(SplitError, match="missing: PNO 2"):
        join([parts[0], *parts[2:]])
    with pytest.raises(SplitError, match="twice"):
        join([*parts, parts[1]])
    other = split(long_2011(61))
    with pytest.raises(SplitError, match="does not belong"):
        join([*parts[:-1], Packet(other[0].qn[:-1] + "9", *[getattr(other[-1], f) for f in
                                  ("st", "cn", "pw", "mn", "flag", "cp", "pnum", "pno")])])


def test_split_packets_frame_with_pnum_and_pno_after_flag() -> None:
    parts = split(long_2011(60))
    assert b";Flag=7;PNUM=%d;PNO=1;CP=&&" % len(parts) in encode(parts[0])


def test_frame_computes_length_and_crc() -> None:
    assert frame(D.decode()) == V1062
