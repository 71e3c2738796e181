"""HJ 212 (2017 / 2025) packets: framing, CRC of appendix A, the data segment, PNUM/PNO splitting.

    ## LLLL <data segment: LLLL bytes of UTF-8> CCCC \\r\\n
    data segment = QN=..;ST=..;CN=..;PW=..;MN=..;Flag=..;[PNUM=..;PNO=..;]CP=&&group;group;...&&
    group        = key=value,key=value,...        (e.g. `a34004-Rtd=35.2,a34004-Flag=N`)

The parser is strict because its input is hostile (a 4G link, a misconfigured platform, an attacker): every fault
is one `Hj212Error` subclass with a message naming what is wrong and where, and nothing else escapes `decode`.
CP keeps every value as the exact text that was sent, so a decoded packet encodes back byte for byte.

Field widths follow the standard's table (the width includes `XX=`): QN 17 digits, ST 2, CN 4, PW up to 6
characters, MN up to 24, Flag up to 3 digits, PNUM/PNO up to 4 digits, the data segment at most 1024 bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

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
from gateway.hj212.timefmt import valid_clock

DATA_MAX = 1024  # bytes of data segment
FRAME_MAX = 2 + 4 + DATA_MAX + 4 + 2  # the longest valid packet on the wire

# Flag bits: A (answer wanted) = 1, D (split, PNUM/PNO present) = 2, protocol version in the bits above.
FLAG_ANSWER = 0x01
FLAG_SPLIT = 0x02
VERSION_SHIFT = 2
VERSION_BITS = {2017: 1, 2025: 2}  # 2017: version 1 -> Flag 4/5; 2025 -> Flag 8/9 (unverified, configurable)

HEADER = ("QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO")
_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "QN": (re.compile(r"\d{17}"), "17 digits YYYYMMDDhhmmsszzz"),
    "ST": (re.compile(r"\d{2}"), "2 digits"),
    "CN": (re.compile(r"\d{4}"), "4 digits"),
    "PW": (re.compile(r"[A-Za-z0-9]{1,6}"), "1 to 6 letters or digits"),
    "MN": (re.compile(r"[A-Za-z0-9]{1,24}"), "1 to 24 letters or digits"),
    "Flag": (re.compile(r"0|[1-9]\d{0,2}"), "a number 0..255 without leading zeros"),
    "PNUM": (re.compile(r"[1-9]\d{0,3}"), "a number 1..9999 without leading zeros"),
    "PNO": (re.compile(r"[1-9]\d{0,3}"), "a number 1..9999 without leading zeros"),
}
PW_FIELD = _RULES["PW"][0]  # what a password must be to fit the PW field (a 1072's NewPW too)
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_VALUE_FORBIDDEN = re.compile(r"[;,=&\x00-\x1f\x7f-\x9f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CRLF = b"\r\n"


# --- CRC (HJ 212 appendix A) ---------------------------------------------------------------------------------

def _table() -> list[int]:
    out = []
    for b in range(256):
        crc = b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        out.append(crc)
    return out


_CRC_TABLE = _table()


def crc16(data: bytes) -> int:
    """CRC of appendix A: start 0xFFFF; per byte crc = (crc >> 8) ^ byte, then 8 reflected steps of 0xA001.

    After the first step the register holds one byte, so the 8 steps are a table lookup. Not the Modbus CRC."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc >> 8) ^ b]
    return crc


# --- the model -----------------------------------------------------------------------------------------------

Group = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Cp:
    """The CP area: groups separated by `;`, each of `key=value` fields separated by `,`, values as sent."""

    groups: tuple[Group, ...] = ()

    @staticmethod
    def of(*groups: Mapping[str, object] | Iterable[tuple[str, object]]) -> Cp:
        """Groups in the given order; numbers become text with str()."""
        out = []
        for g in groups:
            items = g.items() if isinstance(g, Mapping) else g
            out.append(tuple((str(k), _text(v)) for k, v in items))
        return Cp(tuple(out))

    @staticmethod
    def from_mapping(fields: Mapping[str, object]) -> Cp:
        """The usual grouping of a flat mapping: fields sharing a code (`a34004-Rtd`, `a34004-Flag`) form one
        group, every other key (`DataTime`, `RtdInterval`) a group of its own, in first-seen order."""
        groups: dict[str, list[tuple[str, str]]] = {}
        for k, v in fields.items():
            code = k.split("-", 1)[0] if "-" in k else f"\x00{k}"
            groups.setdefault(code, []).append((k, _text(v)))
        return Cp(tuple(tuple(g) for g in groups.values()))

    def get(self, key: str) -> str | None:
        """The value of the first field named `key`."""
        for g in self.groups:
            for k, v in g:
                if k == key:
                    return v
        return None

    def keys(self) -> list[str]:
        return [k for g in self.groups for k, _ in g]

    def pollutants(self) -> dict[str, dict[str, str]]:
        """code -> field -> value for every `code-Field` key (e.g. {"a34004": {"Rtd": "35.2", "Flag": "N"}})."""
        out: dict[str, dict[str, str]] = {}
        for g in self.groups:
            for k, v in g:
                if "-" in k:
                    code, fld = k.split("-", 1)
                    out.setdefault(code, {})[fld] = v
        return out

    def text(self) -> str:
        """`&&...&&`."""
        return "&&" + ";".join(",".join(f"{k}={v}" for k, v in g) for g in self.groups) + "&&"


def _text(v: object) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return v if isinstance(v, str) else str(v)


@dataclass(frozen=True, slots=True)
class Packet:
    """One HJ 212 packet. Text fields stay text (`st="39"`), so a decoded packet re-encodes exactly."""

    qn: str
    st: str
    cn: str
    pw: str
    mn: str
    flag: int
    cp: Cp = field(default_factory=Cp)
    pnum: int | None = None
    pno: int | None = None

    @property
    def answer_wanted(self) -> bool:
        return bool(self.flag & FLAG_ANSWER)

    @property
    def is_split(self) -> bool:
        return bool(self.flag & FLAG_SPLIT)

    @property
    def version_bits(self) -> int:
        return self.flag >> VERSION_SHIFT

    @property
    def version(self) -> int | None:
        """2017, 2025, or None for version bits Plume does not know (0 is the 2005 edition)."""
        for year, bits in VERSION_BITS.items():
            if bits == self.version_bits:
                return year
        return None

    def data(self) -> str:
        """The data segment."""
        parts = [f"QN={self.qn}", f"ST={self.st}", f"CN={self.cn}", f"PW={self.pw}", f"MN={self.mn}",
                 f"Flag={self.flag}"]
        if self.pnum is not None:
            parts += [f"PNUM={self.pnum}", f"PNO={self.pno}"]
        parts.append("CP=" + self.cp.text())
        return ";".join(parts)


def make_flag(version: int = 2017, *, answer: bool = False, split: bool = False, version_bits: int | None = None
              ) -> int:
    """The Flag value for a protocol version (or explicit version bits) and the A/D bits."""
    bits = VERSION_BITS[version] if version_bits is None else version_bits
    return (bits << VERSION_SHIFT) | (FLAG_ANSWER if answer else 0) | (FLAG_SPLIT if split else 0)


# --- encoding ------------------------------------------------------------------------------------------------

def frame(data: str) -> bytes:
    """`##LLLL` + data + CRC + CR LF. Raises OversizeError beyond 1024 bytes of data."""
    raw = data.encode("utf-8")
    if len(raw) > DATA_MAX:
        raise OversizeError(f"data segment is {len(raw)} bytes; at most {DATA_MAX} fit one packet (split it)")
    return b"##%04d%s%04X\r\n" % (len(raw), raw, crc16(raw))


def encode(p: Packet) -> bytes:
    """The packet on the wire. Checks every field first, so Plume never sends what it would itself refuse."""
    check(p)
    return frame(p.data())


def check(p: Packet) -> None:
    """Raise FieldError for a packet whose fields could not be parsed back identically."""
    for name, value in (("QN", p.qn), ("ST", p.st), ("CN", p.cn), ("PW", p.pw), ("MN", p.mn),
                        ("Flag", str(p.flag))):
        _check_header(name, value)
    if not 0 <= p.flag <= 255:
        raise FieldError("Flag", f"{p.flag} is not 0..255")
    _check_split(p.flag, None if p.pnum is None else str(p.pnum), None if p.pno is None else str(p.pno))
    for i, g in enumerate(p.cp.groups):
        if not g:
            raise FieldError("CP", f"item {i + 1} is empty")
        for k, v in g:
            _check_cp_field(k, v, i)


# --- decoding ------------------------------------------------------------------------------------------------

def decode(raw: bytes) -> Packet:
    """Parse one packet (`##` .. CR LF). Raises an Hj212Error subclass naming the fault, nothing else."""
    return parse_data(unframe(raw))


def unframe(raw: bytes) -> str:
    """Check the envelope (start, length, CRC, end) and the characters; return the data segment."""
    if not raw.startswith(b"##"):
        shown = raw[:8].decode("ascii", "backslashreplace")
        raise FramingError(f"a packet starts with ##, this one with {shown!r}")
    if len(raw) < 6:
        raise TruncatedError(f"ends after {len(raw)} bytes, inside the ##LLLL header")
    head = raw[2:6]
    if not (head.isascii() and head.isdigit()):
        raise FramingError(f"length field {head.decode('ascii', 'backslashreplace')!r} is not 4 decimal digits")
    declared = int(head)
    if declared > DATA_MAX:
        raise OversizeError(f"length field says {declared} bytes; a data segment holds at most {DATA_MAX}")
    body = raw[6:]
    if not body.endswith(_CRLF):
        if len(body) < declared + 4 + 2:
            raise TruncatedError(f"ends after {len(raw)} bytes; the length field promises {declared + 12} "
                                 f"({declared} bytes of data, 4 of CRC, CR LF)")
        if body[declared + 4: declared + 6] == _CRLF:
            raise FramingError(f"{len(body) - declared - 6} bytes after the end of the packet")
        raise FramingError("does not end with CR LF")
    inner = body[:-2]
    actual = len(inner) - 4
    if actual < 0:
        raise TruncatedError(f"ends after {len(raw)} bytes, before a 4-digit CRC")
    if actual > DATA_MAX:
        raise OversizeError(f"data segment is {actual} bytes; at most {DATA_MAX} fit one packet")
    if actual != declared:
        raise LengthError(f"length field says {declared} bytes, the data segment has {actual}")
    data, crc_field = inner[:actual], inner[actual:]
    crc_text = crc_field.decode("ascii", "backslashreplace")
    if not re.fullmatch(rb"[0-9A-Fa-f]{4}", crc_field):
        raise FramingError(f"CRC field {crc_text!r} is not 4 hex digits")
    given, computed = int(crc_field, 16), crc16(data)
    if given != computed:
        raise CrcError(f"CRC is {crc_text}, the data segment gives {computed:04X}", given, computed)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CharacterError(f"byte {exc.start} of the data segment (0x{data[exc.start]:02X}) is not UTF-8"
                             ) from None
    m = _CONTROL.search(text)
    if m:
        raise CharacterError(f"character {m.start()} of the data segment is a control character "
                             f"(0x{ord(m.group()):02X})")
    return text


def parse_data(text: str) -> Packet:
    """Parse a data segment (already checked for length, CRC and characters)."""
    at = text.find("CP=&&")
    if at < 0:
        raise FieldError("CP", "missing (the data segment must end with CP=&&...&&)")
    if at == 0 or text[at - 1] != ";":
        raise FieldError("CP", "must follow the header fields after a ';'")
    if len(text) < at + 7 or not text.endswith("&&"):
        raise FieldError("CP", "does not end with && (the data segment must end with CP=&&...&&)")
    header = _parse_header(text[: at - 1])
    cp = _parse_cp(text[at + 5: -2])
    for name in ("QN", "ST", "CN", "PW", "MN", "Flag"):
        if name not in header:
            raise FieldError(name, "missing")
    flag = int(header["Flag"])
    if flag > 255:
        raise FieldError("Flag", f"{flag} is not 0..255")
    pnum, pno = header.get("PNUM"), header.get("PNO")
    _check_split(flag, pnum, pno)
    return Packet(header["QN"], header["ST"], header["CN"], header["PW"], header["MN"], flag, cp,
                  None if pnum is None else int(pnum), None if pno is None else int(pno))


def _parse_header(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    last = -1
    for token in text.split(";"):
        if not token:
            raise FieldError("header", "empty field (';;' or a leading ';')")
        name, eq, value = token.partition("=")
        if not eq:
            raise FieldError("header", f"{_short(token)!r} is not NAME=VALUE")
        if name not in _RULES:
            raise FieldError("header", f"unknown field {_short(name)!r} before CP (names are case-sensitive: "
                             "QN ST CN PW MN Flag PNUM PNO)")
        if name in out:
            raise FieldError(name, "appears twice")
        pos = HEADER.index(name)
        if pos < last:
            raise FieldError(name, f"out of order (expected {' '.join(HEADER)} CP)")
        last = pos
        _check_header(name, value)
        out[name] = value
    return out


def _check_header(name: str, value: str) -> None:
    rx, what = _RULES[name]
    if not rx.fullmatch(value):
        if name == "PW":  # a password is never repeated in a message that may reach a log line
            raise FieldError(name, f"{len(value)} characters that are not {what}")
        raise FieldError(name, f"{_short(value)!r} is not {what}")
    if name == "QN" and not valid_clock(value):
        raise FieldError(name, f"{value} is not a real date and time")


def _check_split(flag: int, pnum: str | None, pno: str | None) -> None:
    if (pnum is None) != (pno is None):
        raise FieldError("PNUM" if pnum is None else "PNO", "missing (PNUM and PNO come together)")
    if flag & FLAG_SPLIT and pnum is None:
        raise FieldError("PNUM", "missing: Flag has the split bit (2) set")
    if pnum is not None and pno is not None:
        if not flag & FLAG_SPLIT:
            raise FieldError("Flag", f"{flag} lacks the split bit (2) although PNUM/PNO are present")
        for name, value in (("PNUM", pnum), ("PNO", pno)):
            _check_header(name, value)
        if int(pno) > int(pnum):
            raise FieldError("PNO", f"{pno} is beyond PNUM {pnum}")


def _parse_cp(body: str) -> Cp:
    if not body:
        return Cp(())
    groups = []
    for i, gtext in enumerate(body.split(";")):
        if not gtext:
            raise FieldError("CP", f"item {i + 1} is empty (';;', or ';' at an end)")
        group = []
        for ftext in gtext.split(","):
            key, eq, value = ftext.partition("=")
            if not eq:
                raise FieldError("CP", f"item {i + 1}: {_short(ftext)!r} is not key=value")
            _check_cp_field(key, value, i)
            group.append((key, value))
        groups.append(tuple(group))
    return Cp(tuple(groups))


def _check_cp_field(key: str, value: str, i: int) -> None:
    if not KEY.fullmatch(key):
        raise FieldError("CP", f"item {i + 1}: key {_short(key)!r} is not letters, digits, '-' and '_'")
    if not value:
        raise FieldError("CP", f"item {i + 1}: {key} has no value")
    m = _VALUE_FORBIDDEN.search(value)
    if m:
        raise FieldError("CP", f"item {i + 1}: value of {key} holds {m.group()!r} (a separator or control "
                         "character)")


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "..."


# --- splitting -----------------------------------------------------------------------------------------------

def split(p: Packet, limit: int = DATA_MAX) -> list[Packet]:
    """One packet, or PNUM parts of at most `limit` bytes of data each, keeping every CP group whole.

    Parts share QN, ST, CN, PW, MN and the Flag (with the split bit added); when the CP starts with a lone
    DataTime group, every part starts with it so each part says when its values were taken."""
    if p.pnum is not None:
        raise SplitError("the packet is already a part of a split packet")
    if len(p.data().encode("utf-8")) <= limit:
        return [p]
    groups = list(p.cp.groups)
    context: list[Group] = []
    if groups and len(groups[0]) == 1 and groups[0][0][0] == "DataTime":
        context = [groups.pop(0)]
    flag = p.flag | FLAG_SPLIT
    digits = 1
    while True:  # the header grows with the number of digits of PNUM/PNO: pack again if it did
        chunks = _pack(p, flag, context, groups, limit, digits)
        if len(str(len(chunks))) <= digits:
            break
        digits = len(str(len(chunks)))
    n = len(chunks)
    if n > 9999:
        raise OversizeError(f"the CP needs {n} packets; PNUM allows at most 9999")
    return [replace(p, flag=flag, pnum=n, pno=i + 1, cp=Cp(tuple(context + c))) for i, c in enumerate(chunks)]


def _pack(p: Packet, flag: int, context: list[Group], groups: list[Group], limit: int, digits: int
          ) -> list[list[Group]]:
    widest = 10 ** digits - 1
    empty = replace(p, flag=flag, pnum=widest, pno=widest, cp=Cp(tuple(context)))
    base = len(empty.data().encode("utf-8"))  # header + CP=&&<context>&&
    sep = 1 if context else 0  # ';' between the context and the first group
    chunks: list[list[Group]] = []
    cur: list[Group] = []
    size = base
    for g in groups:
        glen = len(",".join(f"{k}={v}" for k, v in g).encode("utf-8"))
        extra = glen + (1 if cur else sep)
        if base + glen + sep > limit:
            raise OversizeError(f"CP item {_short(','.join(f'{k}={v}' for k, v in g))!r} is {glen} bytes: too "
                                f"long for any packet of at most {limit} bytes")
        if cur and size + extra > limit:
            chunks.append(cur)
            cur, size = [], base
            extra = glen + sep
        cur.append(g)
        size += extra
    if cur or not chunks:
        chunks.append(cur)
    return chunks


def join(parts: Sequence[Packet]) -> Packet:
    """The whole packet from all its parts (any order); the inverse of `split`."""
    if not parts:
        raise SplitError("no parts to join")
    first = parts[0]
    if first.pnum is None:
        if len(parts) == 1:
            return first
        raise SplitError("several packets given, but they are not parts of a split packet (no PNUM)")
    n = first.pnum
    by_no: dict[int, Packet] = {}
    for q in parts:
        if (q.qn, q.st, q.cn, q.pw, q.mn, q.flag, q.pnum) != (first.qn, first.st, first.cn, first.pw, first.mn,
                                                               first.flag, n):
            raise SplitError(f"part PNO={q.pno} does not belong with QN={first.qn} (header fields differ)")
        assert q.pno is not None
        if q.pno in by_no:
            raise SplitError(f"part PNO={q.pno} given twice")
        by_no[q.pno] = q
    missing = [i for i in range(1, n + 1) if i not in by_no]
    if missing:
        raise SplitError(f"parts missing: PNO {', '.join(map(str, missing[:10]))} of {n}")
    ordered = [by_no[i] for i in range(1, n + 1)]
    groups: list[Group] = list(ordered[0].cp.groups)
    head = groups[0] if groups else None
    dt = head is not None and len(head) == 1 and head[0][0] == "DataTime"
    for q in ordered[1:]:
        g = list(q.cp.groups)
        if dt:
            if not g or g[0] != head:
                raise SplitError(f"part PNO={q.pno} does not start with the DataTime of part 1")
            g = g[1:]
        groups.extend(g)
    return replace(first, flag=first.flag & ~FLAG_SPLIT, pnum=None, pno=None, cp=Cp(tuple(groups)))


# --- a byte stream into packets ------------------------------------------------------------------------------

class Framer:
    """Cuts a TCP byte stream into packets. `feed()` yields raw packets (bytes, to `decode`) and `Hj212Error`s
    for junk, truncated and runaway packets; it resynchronises on the next `##` and never raises."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | Hj212Error]:
        """Add bytes; return the packets (and faults) they completed, in stream order."""
        self._buf += data
        return list(self._cut())

    def _cut(self) -> Iterator[bytes | Hj212Error]:
        buf = self._buf
        while buf:
            start = buf.find(b"##")
            if start != 0:
                if start < 0:
                    if len(buf) < FRAME_MAX:
                        return  # junk so far; wait for a ## (reported once, when it is dropped)
                    keep = 1 if buf.endswith(b"#") else 0
                    n = len(buf) - keep
                    del buf[:n]
                    yield FramingError(f"{n} bytes without ## dropped")
                    continue
                del buf[:start]
                yield FramingError(f"{start} bytes of junk before ## dropped")
                continue
            end = buf.find(_CRLF, 2, FRAME_MAX)
            nxt = buf.find(b"##", 2, end if end >= 0 else FRAME_MAX)
            if end < 0:
                if nxt > 0:
                    head = bytes(buf[:nxt])
                    del buf[:nxt]
                    yield TruncatedError(f"packet cut off after {len(head)} bytes (a new ## began)")
                    continue
                if len(buf) >= FRAME_MAX:
                    del buf[:2]
                    yield OversizeError(f"no CR LF within {FRAME_MAX} bytes of ##: not a packet, or longer than "
                                        f"{DATA_MAX} bytes of data")
                    continue
                return  # wait for the rest
            if nxt > 0 and not _declared_end(buf, end):
                del buf[:nxt]
                yield TruncatedError(f"packet cut off after {nxt} bytes (a new ## began)")
                continue
            raw = bytes(buf[: end + 2])
            del buf[: end + 2]
            yield raw

    def eof(self) -> Hj212Error | None:
        """The stream ended: what is left is a truncated packet (or junk)."""
        if not self._buf:
            return None
        n = len(self._buf)
        started = self._buf.startswith(b"##")
        self._buf.clear()
        if started:
            return TruncatedError(f"connection closed {n} bytes into a packet")
        return FramingError(f"connection closed after {n} bytes without ##")


def _declared_end(buf: bytearray, end: int) -> bool:
    """True when the length field puts CRC + CR LF exactly at `end` (a `##` inside the data is then data)."""
    head = bytes(buf[2:6])
    return head.isdigit() and 6 + int(head) + 4 == end
