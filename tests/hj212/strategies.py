"""Hypothesis strategies for valid HJ 212 packets (random header fields and CP contents)."""

from __future__ import annotations

from datetime import datetime

from hypothesis import strategies as st

from gateway.hj212.codec import VERSION_SHIFT, Cp, Packet

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

qns = st.builds(
    lambda dt, ms: dt.strftime("%Y%m%d%H%M%S") + f"{ms:03d}",
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    st.integers(0, 999),
)
keys = st.builds(str.__add__, st.sampled_from(ALNUM), st.text(ALNUM + "_-", max_size=15))
values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=";,=&"), min_size=1, max_size=24
) | st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: f"{f:.3f}")
groups = st.lists(st.tuples(keys, values), min_size=1, max_size=4).map(tuple)
datatime = qns.map(lambda q: (("DataTime", q[:14]),))


@st.composite
def cps(draw: st.DrawFn, max_groups: int = 60) -> Cp:
    body = draw(st.lists(groups, max_size=max_groups))
    head = [draw(datatime)] if draw(st.booleans()) else []
    return Cp(tuple(head + body))


@st.composite
def packets(draw: st.DrawFn, max_groups: int = 60) -> Packet:
    """A valid, unsplit packet; it may be far longer than 1024 bytes (then it must be split to travel)."""
    flag = (draw(st.integers(0, 63)) << VERSION_SHIFT) | draw(st.integers(0, 1))
    return Packet(
        qn=draw(qns),
        st=draw(st.integers(0, 99).map(lambda n: f"{n:02d}")),
        cn=draw(st.integers(0, 9999).map(lambda n: f"{n:04d}")),
        pw=draw(st.text(ALNUM, min_size=1, max_size=6)),
        mn=draw(st.text(ALNUM, min_size=1, max_size=24)),
        flag=flag,
        cp=draw(cps(max_groups)),
    )
