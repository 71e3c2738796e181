"""A log row's values and every sink's text of a value come through the shared repr() cache (FLOAT_TEXT) when they
are finite floats: the row is still exactly json's list, and -0.0 never borrows 0.0's text (equal keys)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.sinks.contract import data_payload
from gateway.sinks.lineproto import reading_line
from gateway.store import codec
from gateway.store.records import ReadingRecord
from tests.pipeline.test_payload_text import reference, reference_line

floats = st.floats() | st.sampled_from([-0.0, 0.0, 1e16, 1e-05, 0.1, 41.0, 2.5])
value = st.one_of(floats, floats, floats, st.none(), st.integers(-10**20, 10**20), st.booleans(), st.text(max_size=3))
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@pytest.fixture(scope="module")
def small_cache() -> Iterator[None]:
    saved = codec.FLOAT_TEXT_MAX
    codec.FLOAT_TEXT_MAX = 3  # emptied often: every path of the cache is taken
    codec.FLOAT_TEXT.clear()  # what tests before it in this process kept
    yield
    codec.FLOAT_TEXT_MAX = saved


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(value, max_size=6), min_size=1, max_size=5))
def test_the_row_and_the_texts_are_the_plain_ones_through_the_cache(small_cache: None, polls: list[list[object]],
                                                                     ) -> None:
    for n, vals in enumerate(polls):
        cvs = {f"c{i}": ChannelValue(v, "u", Flag.N) for i, v in enumerate(vals)}  # type: ignore[arg-type]
        r = DeviceReading("s", "d", "dust", 1 + n, cvs)
        row = codec.encode(n + 1, n + 1, 1, r)
        assert row[5] == _dumps(vals)
        record = ReadingRecord(n + 1, r.ts, r.site, n + 1, r)
        assert data_payload(record) == reference(record)
        assert reading_line(r) == reference_line(r)
    assert len(codec.FLOAT_TEXT) <= 3
    assert 0.0 not in codec.FLOAT_TEXT


def test_minus_zero_after_zero_keeps_its_sign() -> None:
    for v in (0.0, -0.0, 0.0, -0.0):
        cvs = {"a": ChannelValue(v, "u"), "b": ChannelValue(1.5, "u")}
        r = DeviceReading("s", "d", "dust", 1, cvs)
        assert codec.encode(1, 1, 1, r)[5] == f"[{v!r},1.5]"
        assert f'"a":{{"value":{v!r},' in data_payload(ReadingRecord(1, 1, "s", 1, r)).decode()
        assert f"a={v!r}," in (reading_line(r) or "")
