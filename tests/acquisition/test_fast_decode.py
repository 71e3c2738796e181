"""The device decoder's batch path (one pass over a request of decimal integer channels) gives exactly what the
plain per-channel `decode` gives: the same value (the same float, not only an equal one: -0.0 and 0.0 differ in
the payload), unit, flag and note."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.acquisition.codec import decode, int_decimal
from gateway.acquisition.device import DeviceDecoder
from gateway.acquisition.link import ReadError
from gateway.config import DeviceConfig
from gateway.core.model import ChannelValue
from gateway.profile import Profile, RegisterSpec
from gateway.site.model import ResolvedDevice

SCALES = [1.0, 0.1, 0.01, 0.001, 0.0001, 2.5, 0.5, 0.25, 0.05, 0.2, 10.0, 100.0, 1.5, 0.3, 0.7, 3.6, 1e-06, 0.125,
          -0.1, -1.0, 1234.5678, 65535.0]


def same(a: ChannelValue, b: ChannelValue) -> bool:
    def key(cv: ChannelValue) -> tuple[object, ...]:
        v = cv.value
        return (type(v), repr(v), math.copysign(1.0, v) if type(v) is float else 0, cv.unit, cv.flag, cv.note)
    return key(a) == key(b)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("typ", ["u16", "i16"])
def test_every_register_value_decodes_to_the_plain_value(typ: str, scale: float) -> None:
    spec = RegisterSpec.model_validate({"channel": "c", "address": 0, "type": typ, "scale": scale, "unit": "u"})
    info = int_decimal(spec)
    assert info is not None
    signed, k, p = info[:3]
    for raw in range(0x10000):
        want = decode(spec, [raw]).value
        r = raw - 0x10000 if signed and raw >= 0x8000 else raw
        got = r * k / p
        assert repr(got) == repr(want), (raw, got, want)


def test_what_the_batch_does_not_take() -> None:
    def info(**kw: object) -> object:
        return int_decimal(RegisterSpec.model_validate({"channel": "c", "address": 0, "unit": "u", **kw}))
    assert info(type="u32") is None
    assert info(type="u16", order="BADC") is None
    assert info(type="u16", offset=0.5) is None
    assert info(type="u16", offset=-0.0) is None
    assert info(type="u16", linear={"raw_min": 0, "raw_max": 100, "eng_min": 0, "eng_max": 1}) is None
    assert info(type="u16", scale=1e30) is None  # too large for the margin: the plain path
    assert info(type="u16", scale=1e-30) is None  # more digits than the batch takes
    assert info(type="u16", scale=0.1) is not None


def decoder(channels: list[dict[str, object]]) -> DeviceDecoder:
    profile = Profile.model_validate({"name": "p", "kind": "dust", "max_registers_per_request": 125,
                                      "registers": channels})
    cfg = DeviceConfig.model_validate({"name": "d", "bus": "b", "address": 1, "profile": "p"})
    return DeviceDecoder("site", ResolvedDevice(cfg, profile))


channel = st.fixed_dictionaries({
    "type": st.sampled_from(["u16", "i16", "u16", "i16", "u32", "f32"]),
    "scale": st.sampled_from(SCALES) | st.floats(1e-6, 1e6, allow_nan=False),
    "offset": st.sampled_from([0.0, 0.0, 0.0, -40.0, 0.5]),
    "order": st.sampled_from(["ABCD", "ABCD", "CDAB", "BADC"]),
    "min": st.none() | st.integers(-100, 100),
    "max": st.none() | st.integers(200, 5000),
    "unit": st.sampled_from(["ug/m3", "mg/m3", "%"]),
})


@settings(max_examples=300, deadline=None)
@given(channels=st.lists(channel, min_size=1, max_size=12),
       gaps=st.lists(st.integers(0, 3), min_size=12, max_size=12),
       words=st.lists(st.integers(0, 0xFFFF), min_size=100, max_size=100),
       short=st.integers(0, 3))
@example(channels=[{"type": "i16", "scale": 0.1, "offset": 0.0, "order": "ABCD", "min": None, "max": None,
                    "unit": "u"}], gaps=[0] * 12, words=[0] * 100, short=0)
def test_a_reading_through_the_batch_equals_the_plain_decode(channels: list[dict[str, object]], gaps: list[int],
                                                              words: list[int], short: int) -> None:
    address = 0
    regs = []
    for i, ch in enumerate(channels):
        address += gaps[i]
        regs.append({"channel": f"c{i}", "address": address, "function": 3, **ch})
        address += 2 if ch["type"] in ("u32", "f32") else 1
    dec = decoder(regs)
    results: list[tuple[object, list[int] | ReadError]] = []
    for req in dec.plan:
        ws = words[:req.count]
        if short and req is dec.plan[-1]:
            ws = ws[:max(0, req.count - short)]  # an answer shorter than asked
        results.append((req, ws))
    for _ in range(2):  # the first call works the batch out, the second uses it
        reading = dec.reading(1, results)  # type: ignore[arg-type]
        assert list(reading.values) == [r["channel"] for r in regs]
        for req, ws in results:
            assert isinstance(ws, list)
            for it in req.items:
                assert isinstance(it, RegisterSpec)
                off = it.address - req.address
                want = decode(it, ws[off:off + it.words])
                assert same(reading.values[it.channel], want), (it, reading.values[it.channel], want)
