"""Serial frame sensors (Plantower PMS5003, Nova SDS011): find valid frames in a byte stream.

Both sensors talk unprompted about once a second; the parser resynchronises on garbage and counts bad
checksums so a flaky cable shows up in health instead of as wrong numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PMS_HEADER = b"\x42\x4d"
PMS_FRAME = 32
SDS_HEAD, SDS_CMD, SDS_TAIL = 0xAA, 0xC0, 0xAB
SDS_FRAME = 10


@dataclass(slots=True)
class FrameParser:
    """Feed bytes, get payload words of every valid frame. protocol: pms5003 | sds011."""

    protocol: str
    buffer: bytearray = field(default_factory=bytearray)
    bad_frames: int = 0
    good_frames: int = 0
    resyncs: int = 0  # times bytes were thrown away to find the next frame header
    last_was_bad: bool = False  # the most recent frame failed its checks (its predecessor is stale now)

    def _bad(self) -> None:
        self.bad_frames += 1
        self.last_was_bad = True

    def _skip(self, n: int) -> None:
        if n > 0:
            self.resyncs += 1
            del self.buffer[:n]

    def feed(self, data: bytes) -> list[list[int]]:
        self.buffer += data
        out: list[list[int]] = []
        parse = self._pms if self.protocol == "pms5003" else self._sds
        while True:
            words = parse()
            if words is None:
                break
            out.append(words)
        if len(self.buffer) > 4 * PMS_FRAME:  # never grow without bound on a line full of noise
            del self.buffer[: len(self.buffer) - PMS_FRAME]
        return out

    def _pms(self) -> list[int] | None:
        buf = self.buffer
        while True:
            i = buf.find(PMS_HEADER)
            if i < 0:
                self._skip(len(buf) - 1 if buf[-1:] == PMS_HEADER[:1] else len(buf))
                return None
            self._skip(i)
            if len(buf) < 4:
                return None
            if int.from_bytes(buf[2:4], "big") != PMS_FRAME - 4:
                self._bad()
                del buf[:1]
                continue
            if len(buf) < PMS_FRAME:
                return None
            frame = bytes(buf[:PMS_FRAME])
            if sum(frame[:30]) & 0xFFFF != int.from_bytes(frame[30:32], "big"):
                self._bad()
                del buf[:1]
                continue
            del buf[:PMS_FRAME]
            self.good_frames += 1
            self.last_was_bad = False
            return [int.from_bytes(frame[4 + 2 * k : 6 + 2 * k], "big") for k in range(13)]

    def _sds(self) -> list[int] | None:
        buf = self.buffer
        while True:
            i = buf.find(bytes([SDS_HEAD, SDS_CMD]))
            if i < 0:
                self._skip(len(buf) - 1 if buf[-1:] == bytes([SDS_HEAD]) else len(buf))
                return None
            self._skip(i)
            if len(buf) < SDS_FRAME:
                return None
            frame = bytes(buf[:SDS_FRAME])
            if frame[9] != SDS_TAIL or sum(frame[2:8]) & 0xFF != frame[8]:
                self._bad()
                del buf[:1]
                continue
            del buf[:SDS_FRAME]
            self.good_frames += 1
            self.last_was_bad = False
            payload = frame[2:8]
            return [int.from_bytes(payload[k : k + 2], "big") for k in range(0, 6, 2)]
