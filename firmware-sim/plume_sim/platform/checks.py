"""What a platform checks beyond the codec, as a regulator's acceptance test does: the right MN and PW, a known
version and ST, a DataTime on the period's boundary (2051 on the minute, 2061 on the hour, 2031 at midnight),
known pollutant codes, plain decimal numbers (no exponent, no inf/nan), no negative value where none can be (a
concentration, a flow, a speed: only temperatures and static pressure may be below zero), and Min <= Avg <= Max.

Each problem is a one-line string; a packet with any is recorded as refused and not answered.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection

from gateway.hj212.codec import VERSION_BITS, Packet
from gateway.hj212.names import DATA_FLAGS, KNOWN_CODES, SIGNED_CODES, ST_NAMES
from gateway.hj212.timefmt import valid_clock

DATA_CNS = {"2011", "2051", "2061", "2031", "2041", "2021", "2081"}
REPLY_CNS = {"9011", "9012", "9013", "9014"}
NUMBER_FIELDS = {"Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "ZsAvg", "ZsMin", "ZsMax"}
TEXT_FIELDS = {"Flag", "EFlag", "SampleTime", "Info"}
# the standard's numbers are N<digits>.<decimals>: an optional minus, digits, optionally a point and digits
DECIMAL = re.compile(r"-?[0-9]{1,14}(\.[0-9]{1,6})?")
# DataTime of minute / hour / day data is the start of the period: which trailing digits must be zero
PERIOD_ZEROS = {"2051": (12, "on a whole minute"), "2061": (10, "on the hour"), "2031": (8, "at midnight")}


def problems(p: Packet, *, pw: str | None, mn: str | None, codes: Collection[str] | None = KNOWN_CODES
             ) -> list[str]:
    """Everything a strict platform refuses in `p`; `codes`: the code table (None: any code)."""
    out: list[str] = []
    if pw is not None and p.pw != pw:
        out.append("PW is not this logger's password")
    if mn is not None and p.mn != mn:
        out.append(f"MN {p.mn} is not the expected {mn}")
    if p.version_bits not in VERSION_BITS.values():
        out.append(f"Flag {p.flag}: version bits {p.version_bits} are neither 2017 (1) nor 2025 (2)")
    if p.st not in ST_NAMES:
        out.append(f"ST {p.st} is not a system code of the standard")
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
        elif p.cn in PERIOD_ZEROS:
            at, where = PERIOD_ZEROS[p.cn]
            if dt[at:].strip("0"):
                out.append(f"DataTime {dt} of {p.cn} is not {where} (the start of its period)")
    for code, fields in p.cp.pollutants().items():
        if codes is not None and code not in codes:
            out.append(f"{code}: not a pollutant code of this platform's table")
        numbers: dict[str, float] = {}
        for name, value in fields.items():
            if name in NUMBER_FIELDS:
                if not DECIMAL.fullmatch(value):
                    out.append(f"{code}-{name}={value!r} is not a number (plain decimals only: no exponent, no inf)")
                    continue
                numbers[name] = f = float(value)
                if f < 0 and code not in SIGNED_CODES:
                    out.append(f"{code}-{name}={value} is negative")
            elif name == "Flag" and value not in DATA_FLAGS:
                out.append(f"{code}-Flag={value!r} is not one of {''.join(DATA_FLAGS)}")
            elif name not in NUMBER_FIELDS | TEXT_FIELDS:
                out.append(f"{code}-{name}: unknown field")
        for zs in ("", "Zs"):
            got = [(n, numbers[zs + n]) for n in ("Min", "Avg", "Max") if zs + n in numbers]
            for (a, va), (b, vb) in itertools.pairwise(got):
                if va > vb:
                    out.append(f"{code}-{zs}{a}={va:g} is greater than {code}-{zs}{b}={vb:g}")
    return out
