"""Names of HJ 212 codes, for the people reading packets (CLI, platform simulator, log lines)."""

from __future__ import annotations

ST_NAMES = {
    "21": "surface water", "22": "ambient air", "23": "noise", "27": "VOCs", "31": "air pollution source (flue gas)",
    "32": "water pollution source", "39": "construction-site dust", "91": "system interaction",
}

CN_NAMES = {
    "1000": "set answer timeout and retries", "1011": "get logger time", "1012": "set logger time",
    "1013": "time calibration request", "1061": "get real-time data interval",
    "1062": "set real-time data interval", "1063": "get minute data interval", "1064": "set minute data interval",
    "1072": "set logger password", "2011": "real-time data", "2012": "stop real-time data",
    "2021": "equipment status", "2022": "stop equipment status", "2031": "day data", "2041": "day running time",
    "2051": "minute data", "2061": "hour data", "2081": "logger restart time", "9011": "request answer",
    "9012": "execution result", "9013": "notice answer", "9014": "data answer", "9015": "heartbeat",
}

POLLUTANTS = {
    "a34001": "TSP", "a34002": "PM10", "a34004": "PM2.5", "a34005": "PM1", "a34013": "particulate (stack)",
    "a01001": "temperature", "a01002": "humidity", "a01006": "air pressure", "a01007": "wind speed",
    "a01008": "wind direction", "a01011": "flue velocity", "a01012": "flue temperature", "a01013": "flue pressure",
    "a01014": "flue humidity", "a01017": "dynamic pressure", "a19001": "O2", "a21026": "SO2", "a21002": "NOx",
    "a21003": "NO", "a21004": "NO2", "a21005": "CO", "a00000": "flue gas flow", "LA": "noise LA", "Leq": "noise Leq",
}

# Further codes of HJ 212-2017 appendix B (air and noise) a platform's code table holds besides POLLUTANTS. A
# strict platform refuses a code it does not know; `plume config check` warns about a code outside both tables.
MORE_CODES = {
    "a01010": "Ringelmann blackness", "a01016": "flue cross-section", "a05001": "CO2", "a05002": "CH4",
    "a21001": "NH3", "a21024": "HCl", "a21028": "H2S", "a24087": "total hydrocarbons", "a24088": "NMHC",
    "a25002": "benzene", "a25003": "toluene", "L10": "noise L10", "L50": "noise L50", "L90": "noise L90",
    "Ld": "noise Ld (day)", "Ln": "noise Ln (night)", "Ldn": "noise Ldn",
}
KNOWN_CODES = frozenset(POLLUTANTS) | frozenset(MORE_CODES)
# codes whose values may be below zero (temperatures, static pressure); every other value is >= 0
SIGNED_CODES = frozenset({"a01001", "a01012", "a01013"})

DATA_FLAGS = {"N": "normal", "F": "stopped", "M": "maintenance", "S": "manually set", "D": "instrument fault",
              "C": "calibration", "T": "over upper range", "B": "communication fault"}

QN_RTN = {1: "ready to execute", 2: "refused", 3: "PW wrong", 4: "MN wrong", 5: "ST wrong", 6: "Flag wrong",
          7: "QN wrong", 8: "CN wrong", 9: "CRC wrong", 100: "unknown error"}

EXE_RTN = {1: "done", 2: "failed, reason unknown", 3: "request condition wrong", 4: "communication timeout",
           5: "system busy", 6: "system fault", 100: "no data"}


def describe_flag(flag: int) -> str:
    """e.g. `version 1 (HJ 212-2017), answer wanted, split`."""
    from gateway.hj212.codec import FLAG_ANSWER, FLAG_SPLIT, VERSION_BITS, VERSION_SHIFT

    bits = flag >> VERSION_SHIFT
    year = next((y for y, b in VERSION_BITS.items() if b == bits), None)
    parts = [f"version {bits}" + (f" (HJ 212-{year})" if year else " (2005 edition)" if bits == 0 else "")]
    parts.append("answer wanted" if flag & FLAG_ANSWER else "no answer wanted")
    if flag & FLAG_SPLIT:
        parts.append("split (PNUM/PNO)")
    return ", ".join(parts)
