"""One simulated device: its register tables, the values it serves now, what was written to it, its fault.

Transport-free: the Modbus slave, the frame emitter and the tests all ask this object for words.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from gateway.acquisition.codec import bytes_to_words, decode
from gateway.acquisition.codec import encode as encode_value
from gateway.profile import DataType, RegisterSpec, StatusSpec
from gateway.site.model import ResolvedDevice
from plume_sim.faults import MANGLES, Fault
from plume_sim.model import DeviceModel, Value
from plume_sim.noise import uniform

Item = RegisterSpec | StatusSpec
Served = dict[str, float | str | None]

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 1, 2, 3, 4
FRAME_WORDS = {"pms5003": 13, "sds011": 3}
WRITE_TABLE = {5: 1, 15: 1, 6: 3, 16: 3}  # write function -> the table it writes (coils, holding registers)


class ModbusError(Exception):
    """A request the device rejects with an exception code."""

    def __init__(self, code: int):
        super().__init__(f"exception {code}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the device does with one request, decided before looking at it."""

    answer: bool = True
    exception: int = 0  # answer reads with this exception code
    corrupt: str = ""  # "" | "crc" | "garbage" | one of faults.MANGLES
    delay_s: float = 0.0
    drip_s: float = 0.0  # seconds between the answer's bytes
    byte_count: int = 0  # bytecount:N
    serial: int = 0  # request number at this device: seeds the garbage bytes


def _float_type(spec: RegisterSpec) -> bool:
    return spec.type in (DataType.f32, DataType.f64)


@dataclass(slots=True)
class SimDevice:
    resolved: ResolvedDevice
    model: DeviceModel
    seed: int
    fault: Fault | None = None
    stuck_t: float | None = None
    reboot_until: float | None = None
    run_origin: float | None = None
    overrides: dict[tuple[int, int], int] = field(default_factory=dict)
    writes: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    served: int = 0
    tables: dict[int, list[Item]] = field(default_factory=dict)
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.resolved.profile
        items: list[Item] = [*p.registers, *p.status]
        for it in items:
            self.tables.setdefault(it.function, []).append(it)
        for fc, items in self.tables.items():
            self.spans[fc] = (min(i.address for i in items), max(i.address + i.words for i in items))

    @property
    def name(self) -> str:
        return self.resolved.name

    @property
    def address(self) -> int:
        return self.resolved.config.address

    @property
    def protocol(self) -> str:
        return self.resolved.profile.protocol

    # --- faults -----------------------------------------------------------------------------------------

    def set_fault(self, fault: Fault | None, now: float) -> None:
        self.fault = fault
        self.stuck_t = now if fault is not None and fault.kind == "stuck" else None
        self.reboot_until = now + fault.seconds if fault is not None and fault.kind == "reboot" else None

    def expire(self, now: float) -> bool:
        """End a reboot whose time is up (run hours restart from then). True when it just ended."""
        if self.reboot_until is not None and now >= self.reboot_until:
            self.run_origin = self.reboot_until
            self.fault = None
            self.reboot_until = None
            return True
        return False

    def verdict(self, now: float) -> Verdict:
        """Count the request and decide, deterministically under the seed, how the fault treats it."""
        self.expire(now)
        n = self.requests
        self.requests += 1
        f = self.fault
        if f is None:
            return Verdict(serial=n)
        if f.kind in ("dead", "reboot"):
            return Verdict(answer=False, serial=n)
        if f.kind == "timeout" and uniform(self.seed, f"{self.name}/drop", n) < f.probability:
            return Verdict(answer=False, serial=n)
        if f.kind == "exception":
            return Verdict(exception=f.code, serial=n)
        if f.kind in ("crc", "garbage"):
            return Verdict(corrupt=f.kind, serial=n)
        if f.kind == "slow":
            return Verdict(delay_s=f.seconds, serial=n)
        if f.kind == "drip":
            return Verdict(drip_s=f.seconds, serial=n)
        if f.kind in MANGLES:
            return Verdict(corrupt=f.kind, byte_count=f.code, serial=n)
        return Verdict(serial=n)

    def garbage(self, serial: int, length: int | None = None) -> bytes:
        rng = random.Random(f"{self.seed}|{self.name}|garbage|{serial}")
        return rng.randbytes(length if length is not None else rng.randint(4, 24))

    def value_time(self, now: float) -> float:
        return self.stuck_t if self.stuck_t is not None else now

    # --- values -----------------------------------------------------------------------------------------

    def values(self, specs: list[RegisterSpec], now: float) -> dict[str, Value]:
        """Engineering values served now, faults (stuck, nan, overrange) applied."""
        vals = self.model.evaluate(self.value_time(now), [s.channel for s in specs], self.run_origin)
        kind = self.fault.kind if self.fault is not None else ""
        if kind in ("nan", "overrange"):
            for s in specs:
                if kind == "nan" and _float_type(s):
                    vals[s.channel] = math.nan
                elif kind == "overrange" and s.type not in (DataType.string, DataType.bits):
                    top = s.max if s.max is not None else (s.linear.eng_max if s.linear is not None else None)
                    if top is not None:
                        vals[s.channel] = 1.2 * top
        return vals

    def status_raw(self, index: int) -> int:
        f = self.fault
        if f is None or f.kind != "status":
            return 0
        return next((raw for i, raw in f.status if i == index), 0)

    def image(self, table: int, address: int, count: int, now: float) -> list[int]:
        """The words (or bits, on FC 1/2) of [address, address + count) as served now; unmapped ones read 0."""
        end = address + count
        image = [0] * count
        items = [it for it in self.tables.get(table, []) if it.address < end and it.address + it.words > address]
        specs = [it for it in items if isinstance(it, RegisterSpec)]
        vals = self.values(specs, now) if specs else {}
        status = self.resolved.profile.status
        for it in items:
            if isinstance(it, RegisterSpec):
                words = encode_value(it, vals[it.channel])
                merge = it.shares_register  # a bit or a byte: OR it into the register
            else:
                raw = self.status_raw(status.index(it))
                words = bytes_to_words(raw.to_bytes(2 * it.words, "big"), it.order)
                merge = False
            for k, w in enumerate(words):
                i = it.address + k - address
                if 0 <= i < count:
                    image[i] = image[i] | w if merge else w
        for i in range(count):
            override = self.overrides.get((table, address + i))
            if override is not None:
                image[i] = override
        return image

    def covered(self, table: int, address: int, image: list[int]) -> Served:
        """Decoded values of the channels lying wholly inside the image: what the gateway will read."""
        end = address + len(image)
        out: Served = {}
        for it in self.tables.get(table, []):
            if isinstance(it, RegisterSpec) and it.address >= address and it.address + it.words <= end:
                off = it.address - address
                out[it.channel] = decode(it, image[off : off + it.words]).value
        return out

    def read(self, table: int, address: int, count: int, now: float) -> tuple[list[int], Served]:
        """A Modbus read: exception 2 unless the whole range lies inside this table's mapped span."""
        lo, hi = self.spans.get(table, (0, 0))
        if address < lo or address + count > hi:
            raise ModbusError(ILLEGAL_ADDRESS)
        if self.fault is not None and self.fault.kind == "strict" and not self.mapped(table, address, count):
            raise ModbusError(ILLEGAL_ADDRESS)
        image = self.image(table, address, count, now)
        return image, self.covered(table, address, image)

    def mapped(self, table: int, address: int, count: int) -> bool:
        """Every register (or bit) of [address, address + count) belongs to some channel or status register."""
        held: set[int] = set()
        for it in self.tables.get(table, []):
            held.update(range(it.address, it.address + it.words))
        return all(a in held for a in range(address, address + count))

    def write(self, function: int, address: int, values: list[int], now: float) -> dict[str, Any]:
        """Store written words (or bits): they override the signal from now on. Returns the write record."""
        table = WRITE_TABLE[function]
        lo, hi = self.spans.get(table, (0, 0))
        if address < lo or address + len(values) > hi:
            raise ModbusError(ILLEGAL_ADDRESS)
        for i, v in enumerate(values):
            self.overrides[(table, address + i)] = v
        image = self.image(table, address, len(values), now)
        record: dict[str, Any] = {
            "function": function,
            "address": address,
            "values": list(values),
            "channels": self.covered(table, address, image),
        }
        self.writes.append({"ts": int(now * 1000), **record})
        return record

    def frame_words(self, now: float) -> tuple[list[int], Served]:
        """The payload words of a frame sensor's next frame, and the values they carry."""
        n = FRAME_WORDS[self.protocol]
        image = self.image(3, 0, n, now)
        mapped = any(it.address <= 2 < it.address + it.words for it in self.tables.get(3, []))
        if self.protocol == "sds011" and not mapped:  # sensor id bytes, unless a profile maps them
            image[2] = int(uniform(self.seed, f"{self.name}/sds-id") * 0xFFFF)
        return image, self.covered(3, 0, image)
