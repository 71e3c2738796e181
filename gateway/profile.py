"""Device profiles as data: a register map (or serial-frame layout) that the gateway decodes and the
simulator serves. Adding an analyzer is writing one of these files, never Python.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.core.model import Flag
from gateway.core.strict import Strict
from gateway.yamlio import load_yaml

MODBUS_MAX_ADDRESS = 0xFFFF
MODBUS_MAX_REGISTERS = 125  # FC 3/4 read limit (spec: 0x7D)
MODBUS_MAX_BITS = 2000  # FC 1/2 read limit (spec: 0x7D0)
CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class DataType(StrEnum):
    u16 = "u16"
    i16 = "i16"
    u32 = "u32"
    i32 = "i32"
    f32 = "f32"
    u64 = "u64"
    i64 = "i64"
    f64 = "f64"
    f16 = "f16"  # IEEE 754 half precision (Telegraf FLOAT16)
    u8h = "u8h"  # the high byte of a register (Telegraf UINT8H); u8l the low byte; i8h/i8l signed
    u8l = "u8l"
    i8h = "i8h"
    i8l = "i8l"
    string = "string"
    bits = "bits"


# Telegraf's modbus input names (and the obvious spellings) for the same types, so a register map written for
# Telegraf needs no translation; matched case-insensitively.
TYPE_ALIASES: dict[str, DataType] = {
    "uint16": DataType.u16, "int16": DataType.i16, "uint32": DataType.u32, "int32": DataType.i32,
    "uint64": DataType.u64, "int64": DataType.i64, "float16": DataType.f16, "float32": DataType.f32,
    "float32-ieee": DataType.f32, "float64": DataType.f64, "float64-ieee": DataType.f64, "uint8h": DataType.u8h,
    "uint8l": DataType.u8l, "int8h": DataType.i8h, "int8l": DataType.i8l, "bit": DataType.bits,
}


class Order(StrEnum):
    """Byte order of a multi-register value, named after the bytes of a 32-bit big-endian value.

    ABCD big-endian; CDAB word-swapped (low word first); BADC byte-swapped in each word; DCBA little-endian.
    For 64-bit values the same rule extends to four words.
    """

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


# Telegraf's byte orders: AB/BA for one register, ABCDEFGH... for four (the same rule as the 32-bit names)
ORDER_ALIASES: dict[str, Order] = {
    "AB": Order.ABCD, "BA": Order.BADC, "ABCDEFGH": Order.ABCD, "HGFEDCBA": Order.DCBA, "BADCFEHG": Order.BADC,
    "GHEFCDAB": Order.CDAB,
}


def type_alias(v: Any) -> Any:
    """A type name as written (f32, F32, FLOAT32, float32) -> the DataType; anything else is left to pydantic."""
    if isinstance(v, str):
        low = v.strip().lower()
        if low in DataType.__members__:
            return DataType(low)
        return TYPE_ALIASES.get(low, v)
    return v


def order_alias(v: Any) -> Any:
    if isinstance(v, str):
        up = v.strip().upper()
        if up in Order.__members__:
            return Order(up)
        return ORDER_ALIASES.get(up, v)
    return v


WORDS_PER_TYPE: dict[DataType, int] = {
    DataType.u16: 1,
    DataType.i16: 1,
    DataType.bits: 1,
    DataType.u32: 2,
    DataType.i32: 2,
    DataType.f32: 2,
    DataType.u64: 4,
    DataType.i64: 4,
    DataType.f64: 4,
    DataType.f16: 1,
    DataType.u8h: 1,
    DataType.u8l: 1,
    DataType.i8h: 1,
    DataType.i8l: 1,
}
BYTE_TYPES = (DataType.u8h, DataType.u8l, DataType.i8h, DataType.i8l)


class Linear(Strict):
    """Raw-count to engineering scaling, as 4-20 mA input modules need it.

    eng = eng_min + (raw - raw_min) / (raw_max - raw_min) * (eng_max - eng_min).
    A raw value under raw_min means a broken loop (under 4 mA): flag D. Over raw_max: flag T.
    """

    raw_min: float
    raw_max: float
    eng_min: float = 0.0
    eng_max: float

    @model_validator(mode="after")
    def _span(self) -> Linear:
        if self.raw_max == self.raw_min:
            raise ValueError("raw_max must differ from raw_min")
        return self


class RegisterSpec(Strict):
    """One channel: where it lives, how its bytes become an engineering value, and its valid range."""

    channel: str = Field(description="Channel name as it appears in readings, MQTT and InfluxDB (snake_case).")
    address: int = Field(ge=0, le=MODBUS_MAX_ADDRESS, description="Register (or coil) address, 0-based on the wire.")
    function: Literal[1, 2, 3, 4] = Field(
        3, description="Modbus read function code: 1 coils, 2 discrete inputs, 3 holding, 4 input."
    )
    type: DataType = DataType.u16
    order: Order = Order.ABCD
    length: int | None = Field(None, ge=1, le=MODBUS_MAX_REGISTERS, description="Registers of a string.")
    bit: int | None = Field(None, ge=0, le=15, description="For type bits on FC 3/4: which bit of the register.")
    scale: float = 1.0
    offset: float = 0.0
    linear: Linear | None = None
    unit: str = ""
    min: float | None = Field(None, description="Lowest plausible engineering value; below it the value is flagged D.")
    max: float | None = Field(None, description="Upper range of the instrument; above it the value is flagged T.")
    sim: dict[str, Any] | None = Field(None, description="Signal hints for the simulator; ignored by the gateway.")
    writable: bool = Field(False, description="A remote operator may write this channel (a coil, FC 5, or a 16-bit "
                           "holding register, FC 6), e.g. through a ThingsBoard RPC; every other write is refused.")

    @property
    def words(self) -> int:
        """How many registers (or bits, on FC 1/2) this channel occupies."""
        if self.type is DataType.string:
            return self.length or 1
        return WORDS_PER_TYPE[self.type]

    @property
    def is_bit_function(self) -> bool:
        return self.function in (1, 2)

    @property
    def shares_register(self) -> bool:
        """A bit or a byte of a register: other channels may live in the same register."""
        return (self.type is DataType.bits and not self.is_bit_function) or self.type in BYTE_TYPES

    _type_alias = field_validator("type", mode="before")(classmethod(lambda cls, v: type_alias(v)))
    _order_alias = field_validator("order", mode="before")(classmethod(lambda cls, v: order_alias(v)))

    @model_validator(mode="after")
    def _consistent(self) -> RegisterSpec:
        if not CHANNEL_NAME.match(self.channel):
            raise ValueError(f"channel {self.channel!r} must be snake_case (a-z, 0-9, _), starting with a letter")
        if self.is_bit_function and self.type is not DataType.bits:
            raise ValueError(f"function {self.function} reads single bits: type must be bits, not {self.type}")
        if self.type is DataType.string and self.length is None:
            raise ValueError("type string needs length (registers)")
        if self.type is not DataType.string and self.length is not None:
            raise ValueError("length is only for type string")
        if self.bit is not None and (self.type is not DataType.bits or self.is_bit_function):
            raise ValueError("bit selects a bit of a register: only for type bits on function 3 or 4")
        if self.linear is not None and self.type in (DataType.string, DataType.bits):
            raise ValueError("linear scaling needs a numeric type")
        if self.address + self.words - 1 > MODBUS_MAX_ADDRESS:
            raise ValueError(f"address {self.address} + {self.words} registers runs past 65535")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError("min must be below max")
        if self.writable and not (self.function == 1 or (self.function == 3 and self.type in (DataType.u16,
                                                                                           DataType.i16))):
            raise ValueError("writable: only a coil (function 1) or a u16/i16 holding register (function 3)")
        return self


class StatusSpec(Strict):
    """A status register whose bits (or whole value) say the instrument is in fault, calibration, maintenance...

    The resulting flag is applied to `channels` (all channels when omitted), the most severe flag winning.
    """

    address: int = Field(ge=0, le=MODBUS_MAX_ADDRESS)
    function: Literal[3, 4] = 3
    type: Literal[DataType.u16, DataType.u32] = DataType.u16
    order: Order = Order.ABCD
    bits: dict[int, Flag] = Field(default_factory=dict, description="Bit number -> flag when the bit is set.")
    codes: dict[int, Flag] = Field(default_factory=dict, description="Whole value -> flag (enumerated states).")
    channels: list[str] | None = None

    @property
    def words(self) -> int:
        return WORDS_PER_TYPE[self.type]

    _type_alias = field_validator("type", mode="before")(classmethod(lambda cls, v: type_alias(v)))
    _order_alias = field_validator("order", mode="before")(classmethod(lambda cls, v: order_alias(v)))

    @model_validator(mode="after")
    def _consistent(self) -> StatusSpec:
        if not self.bits and not self.codes:
            raise ValueError("a status register needs bits or codes")
        width = 16 * self.words
        bad = [b for b in self.bits if not 0 <= b < width]
        if bad:
            raise ValueError(f"bit numbers {bad} outside 0..{width - 1}")
        return self


class Profile(Strict):
    """A device type. `protocol: modbus` is a register map; pms5003/sds011 are serial frames whose payload
    words are addressed like registers (address = word index in the payload)."""

    name: str
    kind: str = Field(description="What the device measures; becomes the InfluxDB measurement (dust, cems, ...).")
    description: str = ""
    protocol: Literal["modbus", "pms5003", "sds011"] = "modbus"
    max_registers_per_request: int = Field(MODBUS_MAX_REGISTERS, ge=1, le=MODBUS_MAX_REGISTERS)
    max_bits_per_request: int = Field(MODBUS_MAX_BITS, ge=1, le=MODBUS_MAX_BITS)
    max_gap: int = Field(8, ge=0, description="Unused registers the planner may read across to save a request.")
    registers: list[RegisterSpec] = Field(default_factory=list)
    status: list[StatusSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Profile:
        seen: set[str] = set()
        for r in self.registers:
            if r.channel in seen:
                raise ValueError(f"channel {r.channel!r} defined twice")
            seen.add(r.channel)
        for s in self.status:
            unknown = set(s.channels or ()) - seen
            if unknown:
                raise ValueError(f"status names unknown channels {sorted(unknown)}")
        return self

    def channel(self, name: str) -> RegisterSpec:
        for r in self.registers:
            if r.channel == name:
                return r
        raise KeyError(name)


def builtin_profile_dir() -> Path:
    return Path(str(resources.files("gateway") / "profiles"))


def builtin_profile_names() -> list[str]:
    return sorted(p.stem for p in builtin_profile_dir().glob("*.yaml"))


@cache
def _load_file(path: Path) -> Profile:
    return Profile.model_validate(load_yaml(path))


def find_profile_file(ref: str, search_dirs: tuple[Path, ...] = ()) -> Path | None:
    """A profile reference is a path to a YAML file, or the name of one in search_dirs or the built-ins."""
    candidate = Path(ref)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    for d in (*search_dirs, builtin_profile_dir()):
        for ext in (".yaml", ".yml"):
            p = d / f"{ref}{ext}"
            if p.is_file():
                return p
    return None


def load_profile(ref: str, search_dirs: tuple[Path, ...] = ()) -> Profile:
    path = find_profile_file(ref, search_dirs)
    if path is None:
        raise FileNotFoundError(f"no profile {ref!r} (built-ins: {', '.join(builtin_profile_names())})")
    return _load_file(path.resolve())
