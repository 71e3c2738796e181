"""The window engine's inlined path for a valid finite float of an arithmetic-mean channel gives the very
aggregates `_Acc.add_raw` gives (the plain path, taken here by handing the same values as a float subclass)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.processing.windows import WindowEngine, WindowsConfig


class Plain(float):
    """A float the fast path does not take (it checks `type(v) is float`)."""


T0 = 1_767_225_600_000
value = st.floats(-1e6, 1e6) | st.sampled_from([float("nan"), float("inf"), -0.0, 0.0, None, 1e300, -1e300, "text", 7])
flag = st.sampled_from([Flag.N, Flag.N, Flag.N, Flag.T, Flag.C, Flag.D])
unit = st.sampled_from(["ug/m3", "deg", "dB(A)", "kg/h"])
poll = st.tuples(st.integers(1, 40_000), st.sampled_from(["d1", "d2"]),
                 st.lists(st.tuples(st.sampled_from(["a", "b", "c", "x_run"]), value, flag), max_size=4))


def run(polls: list[tuple[int, str, list[tuple[str, object, Flag]]]], units: dict[str, str], plain: bool) -> list[str]:
    engine = WindowEngine(WindowsConfig(periods=["1m", "5m", "1h", "1d"], exclude=["x_*"]), site="s",
                          sampling={"d1": 5.0})
    out = []
    ts = T0
    for step, device, chs in polls:
        ts += step
        values = {ch: ChannelValue(Plain(v) if plain and type(v) is float else v, units[ch], f)  # type: ignore[arg-type]
                  for ch, v, f in chs}
        out += engine.feed(DeviceReading("s", device, "dust", ts, values))  # absurd sound levels too (1e300 dB)
    out += engine.advance(ts + 3 * 86_400_000)
    numeric = {(d, ch) for _, d, chs in polls for ch, v, _ in chs if not isinstance(v, str)}
    for a in out:
        assert "x_run" not in a.channels  # excluded
        assert all((a.device, ch) in numeric for ch in a.channels)  # a channel only ever text is not aggregated
    return [repr(a.to_json()) for a in out]


@settings(max_examples=150, deadline=None)
@given(st.lists(poll, max_size=60), st.fixed_dictionaries({"a": unit, "b": unit, "c": unit}))
def test_the_inlined_raw_path_gives_the_plain_aggregates(polls: list[tuple[int, str, list[tuple[str, object, Flag]]]],
                                                         units: dict[str, str]) -> None:
    units = {**units, "x_run": "h"}
    assert run(polls, units, plain=False) == run(polls, units, plain=True)
