"""Round trips over random packets: encode/decode, and split/join within the 1024-byte limit."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.hj212.codec import DATA_MAX, Packet, decode, encode, join, split
from gateway.hj212.errors import OversizeError

from .strategies import packets

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(packets(max_groups=12))
def test_any_packet_that_fits_decodes_to_itself(p: Packet) -> None:
    try:
        raw = encode(p)
    except OversizeError:
        assert len(p.data().encode()) > DATA_MAX
        return
    assert raw.startswith(b"##%04d" % len(p.data().encode())) and raw.endswith(b"\r\n")
    assert decode(raw) == p
    assert encode(decode(raw)) == raw


@FAST
@given(packets(), st.sampled_from([300, 512, DATA_MAX]))
def test_split_parts_each_fit_and_join_back_to_the_packet(p: Packet, limit: int) -> None:
    parts = split(p, limit)
    if len(p.data().encode()) <= limit:
        assert parts == [p]
        return
    assert len(parts) >= 2
    decoded = []
    for i, q in enumerate(parts, 1):
        raw = encode(q)
        assert int(raw[2:6]) <= limit
        back = decode(raw)
        assert back == q and (back.pnum, back.pno) == (len(parts), i)
        assert back.qn == p.qn and back.answer_wanted == p.answer_wanted and back.version_bits == p.version_bits
        decoded.append(back)
    assert join(decoded) == p


@FAST
@given(packets(), st.sampled_from([300, DATA_MAX]))
def test_split_is_not_wasteful_each_part_is_full_up_to_the_next_item(p: Packet, limit: int) -> None:
    parts = split(p, limit)
    if len(parts) < 2:
        return
    context = 1 if p.cp.groups and p.cp.groups[0][0][0] == "DataTime" and len(p.cp.groups[0]) == 1 else 0
    for cur, nxt in itertools.pairwise(parts):
        first_of_next = nxt.cp.groups[context]
        grown = len(cur.data().encode()) + 1 + len(",".join(f"{k}={v}" for k, v in first_of_next).encode())
        assert cur.pno is not None
        reserved = len(str(len(parts))) - len(str(cur.pno))  # PNO is packed as if it had as many digits as PNUM
        assert grown + reserved > limit  # the part could not have taken one more item
