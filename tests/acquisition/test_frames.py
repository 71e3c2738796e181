"""Serial frame parsing survives noise, split reads and bad checksums."""

from __future__ import annotations

from gateway.acquisition.frames import FrameParser


def pms_frame(words: list[int]) -> bytes:
    body = b"\x42\x4d" + (28).to_bytes(2, "big") + b"".join(w.to_bytes(2, "big") for w in words)
    return body + (sum(body) & 0xFFFF).to_bytes(2, "big")


def sds_frame(pm25_x10: int, pm10_x10: int) -> bytes:
    data = pm25_x10.to_bytes(2, "little") + pm10_x10.to_bytes(2, "little") + b"\x12\x34"
    return b"\xaa\xc0" + data + bytes([sum(data) & 0xFF, 0xAB])


def test_pms5003_frame_found_after_garbage_and_split_reads():
    words = list(range(10, 23))
    stream = b"\x00\x42\x11garbage" + pms_frame(words)
    p = FrameParser("pms5003")
    got = []
    for i in range(0, len(stream), 5):  # arrives in small pieces, as from a UART
        got += p.feed(stream[i : i + 5])
    assert got == [words]


def test_pms5003_bad_checksum_is_counted_not_returned():
    bad = bytearray(pms_frame([1] * 13))
    bad[10] ^= 0xFF
    p = FrameParser("pms5003")
    assert p.feed(bytes(bad) + pms_frame([2] * 13)) == [[2] * 13]
    assert p.bad_frames == 1 and p.good_frames == 1


def test_sds011_frame_decodes_little_endian_payload():
    from gateway.acquisition.codec import decode
    from gateway.profile import load_profile

    prof = load_profile("sds011")
    p = FrameParser("sds011")
    (words,) = p.feed(b"\xab\xab" + sds_frame(123, 456))
    assert decode(prof.channel("pm25"), words[0:1]).value == 12.3
    assert decode(prof.channel("pm10"), words[1:2]).value == 45.6


def test_sds011_bad_checksum_rejected():
    f = bytearray(sds_frame(1, 2))
    f[8] ^= 1
    p = FrameParser("sds011")
    assert p.feed(bytes(f)) == [] and p.bad_frames == 1


def test_noise_alone_keeps_the_buffer_small():
    p = FrameParser("pms5003")
    for _ in range(1000):
        p.feed(bytes(range(256)))
    assert len(p.buffer) <= 128
