"""Deterministic noise: every random-looking number is a hash of (seed, key, time bucket).

Nothing here keeps state, so a value is a pure function of its inputs: two simulators started with the same seed
agree at any instant, and a restarted simulator carries on exactly where the old one would have been.
"""

from __future__ import annotations

import hashlib
import math
import struct
from functools import lru_cache

_U64 = struct.Struct("<Q")


@lru_cache(maxsize=1 << 16)
def uniform(seed: int, key: str, n: int = 0) -> float:
    """A uniform number in [0, 1) for (seed, key, n)."""
    digest = hashlib.blake2b(f"{seed}|{key}|{n}".encode(), digest_size=8).digest()
    return _U64.unpack(digest)[0] / 2.0**64


def signed(seed: int, key: str, n: int = 0) -> float:
    """A uniform number in [-1, 1)."""
    return 2.0 * uniform(seed, key, n) - 1.0


def smooth(seed: int, key: str, t: float, period_s: float) -> float:
    """Value noise in [-1, 1]: random knots every period_s seconds joined by a smoothstep (no jumps)."""
    x = t / period_s
    k = math.floor(x)
    f = x - k
    a = signed(seed, key, k)
    b = signed(seed, key, k + 1)
    s = f * f * (3.0 - 2.0 * f)
    return a + (b - a) * s


def fractal(seed: int, key: str, t: float, period_s: float, octaves: int = 3) -> float:
    """A random walk look-alike in [-1, 1]: octaves of value noise, each half the period and half the weight."""
    total = 0.0
    weight = 1.0
    norm = 0.0
    for i in range(octaves):
        total += weight * smooth(seed, f"{key}#{i}", t, period_s / 2**i)
        norm += weight
        weight /= 2.0
    return total / norm
