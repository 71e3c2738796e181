"""A tiny baseline JPEG encoder (greyscale, one grey level per 8x8 block), so the camera simulator serves real,
decodable pictures without an imaging library.

Each block is flat, so its DCT has only the DC coefficient: the entropy data is the DC difference (standard
luminance DC Huffman table) and an end-of-block. The result is a blocky picture any JPEG decoder shows.
"""

from __future__ import annotations

import struct

# ITU T.81 table K.3: the luminance DC code lengths (number of codes of length 1..16) and its symbols 0..11
_DC_BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
_DC_VALS = list(range(12))


def _codes(bits: list[int], vals: list[int]) -> dict[int, tuple[int, int]]:
    """Canonical Huffman codes: symbol -> (code, length)."""
    out: dict[int, tuple[int, int]] = {}
    code, k = 0, 0
    for length, n in enumerate(bits, start=1):
        for _ in range(n):
            out[vals[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return out


_DC = _codes(_DC_BITS, _DC_VALS)


class _Bits:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value: int, length: int) -> None:
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)  # byte stuffing
                self.acc, self.n = 0, 0

    def flush(self) -> bytes:
        while self.n:
            self.put(1, 1)  # pad with ones
        return bytes(self.out)


def _segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">HH", 0xFF00 | marker, len(body) + 2) + body


def encode(blocks: list[list[int]], comment: str = "") -> bytes:
    """A JPEG of `blocks` (rows of grey levels 0..255, each one 8x8 pixels)."""
    rows, cols = len(blocks), len(blocks[0])
    bits = _Bits()
    prev = 0
    for row in blocks:
        for level in row:
            dc = 8 * (max(0, min(255, level)) - 128)  # the DC of a flat block (quantiser 1)
            diff, prev = dc - prev, dc
            size = abs(diff).bit_length()
            code, length = _DC[size]
            bits.put(code, length)
            if size:
                bits.put(diff if diff > 0 else diff + (1 << size) - 1, size)
            bits.put(0, 1)  # end of block (the AC table's one code)
    out = b"\xff\xd8"
    out += _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    if comment:
        out += _segment(0xFE, comment.encode()[:60000])
    out += _segment(0xDB, b"\x00" + bytes([1] * 64))
    out += _segment(0xC0, struct.pack(">BHHB", 8, rows * 8, cols * 8, 1) + b"\x01\x11\x00")
    out += _segment(0xC4, b"\x00" + bytes(_DC_BITS) + bytes(_DC_VALS))
    out += _segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
    out += _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    return out + bits.flush() + b"\xff\xd9"


def site_picture(frame: int, comment: str = "") -> bytes:
    """A 96x64 picture of a site: sky, a crane-like bar that moves with `frame`, ground."""
    cols, rows = 12, 8
    blocks = []
    for r in range(rows):
        row = []
        for c in range(cols):
            level = 200 - r * 8 if r < 5 else 90 + (c % 2) * 10
            if c == frame % cols and r < 5:
                level = 40
            row.append(level)
        blocks.append(row)
    return encode(blocks, comment)
