"""A Modbus slave at the byte level: PDU handling (FC 1-6, 15, 16 and exceptions), RTU and MBAP framing.

Our own code rather than pymodbus's server, because faults need byte-level control: a corrupted CRC, random bytes,
silence, a late answer.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from typing import Any

from plume_sim.device import (
    DEVICE_FAILURE,
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    ModbusError,
    Served,
    SimDevice,
    Verdict,
)

READS = (1, 2, 3, 4)
WRITES = (5, 6, 15, 16)
log = logging.getLogger(__name__)
MAX_READ = {1: 2000, 2: 2000, 3: 125, 4: 125}
MAX_WRITE = {15: 1968, 16: 123}


def crc16(data: bytes) -> int:
    """CRC-16/Modbus (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(unit: int, pdu: bytes, bad_crc: bool = False) -> bytes:
    body = bytes([unit]) + pdu
    crc = crc16(body) ^ (0xFFFF if bad_crc else 0)
    return body + crc.to_bytes(2, "little")


def rtu_crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def rtu_request_length(buf: bytes | bytearray) -> int | None:
    """Bytes of the request starting buf: known from its function code (0: need more bytes; None: unknown fc)."""
    if len(buf) < 2:
        return 0
    fc = buf[1]
    if fc in READS or fc in (5, 6):
        return 8
    if fc in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else 0
    return None


MBAP = struct.Struct(">HHHB")


def mbap_frame(tid: int, unit: int, pdu: bytes) -> bytes:
    return MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu


def exception_pdu(function: int, code: int) -> bytes:
    return bytes([(function | 0x80) & 0xFF, code])


def pack_bits(bits: list[int]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def unpack_bits(data: bytes, count: int) -> list[int]:
    return [(data[i // 8] >> (i % 8)) & 1 for i in range(count)]


@dataclass(slots=True)
class Answer:
    """A response PDU, what it carried (for the truth log) and how the fault wants it sent."""

    pdu: bytes
    verdict: Verdict
    ts_ms: int
    served: Served = field(default_factory=dict)
    write: dict[str, Any] | None = None


def _parse(pdu: bytes) -> tuple[int, int, list[int] | int]:
    """(address, count, written values or count) of a request PDU; ModbusError(3) when malformed."""
    fc = pdu[0]
    if fc in READS or fc in (5, 6):
        if len(pdu) != 5:
            raise ModbusError(ILLEGAL_VALUE)
        address, arg = struct.unpack(">HH", pdu[1:5])
        if fc in READS:
            if not 1 <= arg <= MAX_READ[fc]:
                raise ModbusError(ILLEGAL_VALUE)
            return address, arg, arg
        if fc == 5:
            if arg not in (0x0000, 0xFF00):
                raise ModbusError(ILLEGAL_VALUE)
            return address, 1, [1 if arg else 0]
        return address, 1, [arg]
    if len(pdu) < 6:
        raise ModbusError(ILLEGAL_VALUE)
    address, count, nbytes = struct.unpack(">HHB", pdu[1:6])
    data = pdu[6:]
    expected = (count + 7) // 8 if fc == 15 else 2 * count
    if not 1 <= count <= MAX_WRITE[fc] or nbytes != expected or len(data) != nbytes:
        raise ModbusError(ILLEGAL_VALUE)
    if fc == 15:
        return address, count, unpack_bits(data, count)
    return address, count, list(struct.unpack(f">{count}H", data))


def handle_pdu(dev: SimDevice, pdu: bytes, now: float) -> tuple[bytes, Served, dict[str, Any] | None]:
    """Execute one request: (response PDU, values served, write record)."""
    fc = pdu[0]
    if fc not in READS and fc not in WRITES:
        raise ModbusError(ILLEGAL_FUNCTION)
    address, count, arg = _parse(pdu)
    if isinstance(arg, int):
        words, served = dev.read(fc, address, count, now)
        data = pack_bits(words) if fc in (1, 2) else b"".join(w.to_bytes(2, "big") for w in words)
        return bytes([fc, len(data)]) + data, served, None
    record = dev.write(fc, address, arg, now)
    reply = pdu[:5] if fc in (5, 6) else struct.pack(">BHH", fc, address, count)
    return reply, {}, record


OTHER_READ = {1: 2, 2: 1, 3: 4, 4: 3}


def mangle(kind: str, reply: bytes, byte_count: int = 0) -> bytes:
    """A read's answer PDU (fc, byte count, data) made hostile in the one way `kind` names."""
    fc, data = reply[0], reply[2:]
    if kind == "empty":
        return b""
    if kind == "short":
        return bytes([fc, len(data)]) + data[: len(data) // 2]
    if kind == "oversized":
        extra = min(2 if fc in (1, 2) else 8, 255 - len(data)) or 0
        data += bytes(extra)
        return bytes([fc, len(data)]) + data
    if kind == "wrong_fc":
        return bytes([OTHER_READ.get(fc, fc)]) + reply[1:]
    if kind == "bytecount":
        return bytes([fc, byte_count]) + data[:byte_count].ljust(byte_count, b"\x00")
    return reply  # wrong_unit: the PDU is right, the framing lies


def other_unit(unit: int) -> int:
    return unit % 247 + 1


def answer(dev: SimDevice, pdu: bytes, now: float) -> Answer | None:
    """What the device answers to a request PDU, its fault applied; None when it stays silent."""
    verdict = dev.verdict(now)
    ts = int(now * 1000)
    if not verdict.answer or not pdu:
        return None
    fc = pdu[0]
    if verdict.exception and fc in READS:
        return Answer(exception_pdu(fc, verdict.exception), verdict, ts)
    try:
        reply, served, record = handle_pdu(dev, pdu, now)
    except ModbusError as exc:
        return Answer(exception_pdu(fc, exc.code), verdict, ts)
    except Exception:  # a simulator bug must look like what a real device does with one: a failure answer
        log.exception("%s: request %s failed", dev.name, pdu.hex(" "))
        return Answer(exception_pdu(fc, DEVICE_FAILURE), verdict, ts)
    if verdict.corrupt and fc in READS:
        reply = mangle(verdict.corrupt, reply, verdict.byte_count)
    return Answer(reply, verdict, ts, served, record)
