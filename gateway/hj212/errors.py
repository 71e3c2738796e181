"""Every way an HJ 212 packet can be wrong, as one exception class each.

A connection loop catches `Hj212Error` (and nothing broader) around decoding: whatever a peer sends, the codec
raises one of these with a one-line message saying what is wrong and where, never anything else. `reason` is a
stable short name for counters; `qn_rtn` is the HJ 212 request-answer code (9011 QnRtn) that fits the fault.
"""

from __future__ import annotations

from typing import ClassVar

# 9011 QnRtn (HJ 212-2017 table 7)
QN_READY = 1
QN_REFUSED = 2
QN_BAD_PW = 3
QN_BAD_MN = 4
QN_BAD_ST = 5
QN_BAD_FLAG = 6
QN_BAD_QN = 7
QN_BAD_CN = 8
QN_BAD_CRC = 9
QN_UNKNOWN = 100

_FIELD_QN_RTN = {"PW": QN_BAD_PW, "MN": QN_BAD_MN, "ST": QN_BAD_ST, "Flag": QN_BAD_FLAG, "QN": QN_BAD_QN,
                 "CN": QN_BAD_CN}


class Hj212Error(ValueError):
    """A packet (or part of a byte stream) that is not valid HJ 212."""

    reason: ClassVar[str] = "invalid"
    qn_rtn: int = QN_UNKNOWN

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class FramingError(Hj212Error):
    """The envelope is wrong: no `##`, a length or CRC field that is not digits, no CR LF, junk between packets."""

    reason = "framing"


class TruncatedError(Hj212Error):
    """The bytes end before the packet does."""

    reason = "truncated"


class LengthError(Hj212Error):
    """The length field disagrees with the data segment."""

    reason = "length"


class OversizeError(Hj212Error):
    """More than 1024 bytes of data segment (or a CP item too long to fit any packet)."""

    reason = "oversize"


class CrcError(Hj212Error):
    """The CRC does not match the data segment."""

    reason = "crc"
    qn_rtn = QN_BAD_CRC

    def __init__(self, message: str, given: int, computed: int):
        super().__init__(message)
        self.given = given
        self.computed = computed


class CharacterError(Hj212Error):
    """A byte that is not UTF-8, or a control character, in the data segment."""

    reason = "charset"


class FieldError(Hj212Error):
    """A field of the data segment is missing, repeated, misplaced, unknown or malformed. `field` names it."""

    reason = "field"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.qn_rtn = _FIELD_QN_RTN.get(field, QN_UNKNOWN)


class SplitError(Hj212Error):
    """Parts of a split packet that do not belong together (PNUM/PNO, header fields)."""

    reason = "split"
