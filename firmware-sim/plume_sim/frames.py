"""PMS5003 and SDS011 frames: checksum-correct builders (the simulator's) and strict parsers (for tests).

Payload words are addressed like registers by the profiles: PMS5003 carries 13 big-endian u16 words; SDS011 three
words whose bytes are low-byte first (the profile reads them with order BADC).
"""

from __future__ import annotations

from collections.abc import Sequence

PMS_HEADER = b"\x42\x4d"
PMS_WORDS = 13
PMS_BYTES = 4 + 2 * PMS_WORDS + 2  # 32
SDS_HEAD, SDS_CMD, SDS_TAIL = 0xAA, 0xC0, 0xAB
SDS_WORDS = 3
SDS_BYTES = 10
FRAME_BYTES = {"pms5003": PMS_BYTES, "sds011": SDS_BYTES}


class FrameError(ValueError):
    """Not a valid frame: the message says which check failed."""


def _payload(words: Sequence[int], n: int) -> bytes:
    if len(words) != n:
        raise ValueError(f"{n} payload words needed, got {len(words)}")
    return b"".join((w & 0xFFFF).to_bytes(2, "big") for w in words)


def build_pms5003(words: Sequence[int], bad_checksum: bool = False) -> bytes:
    """42 4D, length 28, 13 words, u16 sum of every preceding byte."""
    body = PMS_HEADER + (2 * PMS_WORDS + 2).to_bytes(2, "big") + _payload(words, PMS_WORDS)
    checksum = (sum(body) ^ (0xFFFF if bad_checksum else 0)) & 0xFFFF
    return body + checksum.to_bytes(2, "big")


def build_sds011(words: Sequence[int], bad_checksum: bool = False) -> bytes:
    """AA C0, six payload bytes (PM2.5 L H, PM10 L H, ID1 ID2), low byte of their sum, AB."""
    data = _payload(words, SDS_WORDS)
    checksum = (sum(data) ^ (0xFF if bad_checksum else 0)) & 0xFF
    return bytes([SDS_HEAD, SDS_CMD]) + data + bytes([checksum, SDS_TAIL])


def build_frame(protocol: str, words: Sequence[int], bad_checksum: bool = False) -> bytes:
    if protocol == "pms5003":
        return build_pms5003(words, bad_checksum)
    if protocol == "sds011":
        return build_sds011(words, bad_checksum)
    raise ValueError(f"no frames for protocol {protocol!r}")


def parse_pms5003(frame: bytes) -> list[int]:
    if len(frame) != PMS_BYTES:
        raise FrameError(f"PMS5003 frame is {PMS_BYTES} bytes, got {len(frame)}")
    if frame[:2] != PMS_HEADER:
        raise FrameError(f"bad header {frame[:2].hex(' ')}")
    if int.from_bytes(frame[2:4], "big") != PMS_BYTES - 4:
        raise FrameError(f"bad length {int.from_bytes(frame[2:4], 'big')}")
    if sum(frame[:-2]) & 0xFFFF != int.from_bytes(frame[-2:], "big"):
        raise FrameError("bad checksum")
    return [int.from_bytes(frame[4 + 2 * k : 6 + 2 * k], "big") for k in range(PMS_WORDS)]


def parse_sds011(frame: bytes) -> list[int]:
    if len(frame) != SDS_BYTES:
        raise FrameError(f"SDS011 frame is {SDS_BYTES} bytes, got {len(frame)}")
    if frame[0] != SDS_HEAD or frame[1] != SDS_CMD or frame[9] != SDS_TAIL:
        raise FrameError(f"bad head/command/tail {frame.hex(' ')}")
    if sum(frame[2:8]) & 0xFF != frame[8]:
        raise FrameError("bad checksum")
    return [int.from_bytes(frame[2 + 2 * k : 4 + 2 * k], "big") for k in range(SDS_WORDS)]


def parse_frame(protocol: str, frame: bytes) -> list[int]:
    if protocol == "pms5003":
        return parse_pms5003(frame)
    if protocol == "sds011":
        return parse_sds011(frame)
    raise ValueError(f"no frames for protocol {protocol!r}")


def find_frames(protocol: str, data: bytes) -> tuple[list[list[int]], int]:
    """Every valid frame in a byte stream, and how many candidate frames failed their checks."""
    head = PMS_HEADER if protocol == "pms5003" else bytes([SDS_HEAD, SDS_CMD])
    size = FRAME_BYTES[protocol]
    found: list[list[int]] = []
    bad = 0
    i = data.find(head)
    while 0 <= i <= len(data) - size:
        try:
            found.append(parse_frame(protocol, data[i : i + size]))
            i = data.find(head, i + size)
        except FrameError:
            bad += 1
            i = data.find(head, i + 1)
    return found, bad
