"""What a platform checks beyond the codec: the right MN and PW, a known version, a DataTime, number fields.

Each problem is a one-line string; a packet with any is recorded as refused and not answered.
"""

from __future__ import annotations

import math

from gateway.hj212.codec import VERSION_BITS, Packet
from gateway.hj212.names import DATA_FLAGS
from gateway.hj212.timefmt import valid_clock

DATA_CNS = {"2011", "2051", "2061", "2031", "2041", "2021", "2081"}
REPLY_CNS = {"9011", "9012", "9013", "9014"}
NUMBER_FIELDS = {"Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "ZsAvg", "ZsMin", "ZsMax"}
TEXT_FIELDS = {"Flag", "EFlag", "SampleTime", "Info"}


def problems(p: Packet, *, pw: str | None, mn: str | None) -> list[str]:
    out: list[str] = []
    if pw is not None and p.pw != pw:
        out.append("PW is not this logger's password")
    if mn is not None and p.mn != mn:
        out.append(f"MN {p.mn} is not the expected {mn}")
    if p.version_bits not in VERSION_BITS.values():
        out.append(f"Flag {p.flag}: version bits {p.version_bits} are neither 2017 (1) nor 2025 (2)")
    if p.cn in REPLY_CNS and p.st != "91":
        out.append(f"ST {p.st}: an answer ({p.cn}) is ST=91")
    if p.cn in DATA_CNS:
        if p.st == "91":
            out.append(f"ST 91 on a data packet ({p.cn})")
        dt = p.cp.get("DataTime")
        if dt is None:
            out.append(f"CN {p.cn} without DataTime")
        elif len(dt) != 14 or not dt.isdigit() or not valid_clock(dt):
            out.append(f"DataTime {dt!r} is not YYYYMMDDhhmmss")
    for code, fields in p.cp.pollutants().items():
        for name, value in fields.items():
            if name in NUMBER_FIELDS:
                try:
                    f = float(value)
                except ValueError:
                    out.append(f"{code}-{name}={value!r} is not a number")
                    continue
                if not math.isfinite(f):
                    out.append(f"{code}-{name}={value!r} is not a finite number")
            elif name == "Flag" and value not in DATA_FLAGS:
                out.append(f"{code}-Flag={value!r} is not one of {''.join(DATA_FLAGS)}")
            elif name not in NUMBER_FIELDS | TEXT_FIELDS:
                out.append(f"{code}-{name}: unknown field")
    return out
