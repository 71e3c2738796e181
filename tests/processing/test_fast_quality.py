"""The quality step asks the maintenance switches once per reading and skips the channel loop when nothing can
flag: the flags and notes are exactly those of asking `in_maintenance` and the stuck rule for every channel."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.model import ChannelValue, DeviceReading, Flag, worst_flag
from gateway.processing.quality import MaintenanceConfig, QualityProcessor, StuckRule

T0 = 1_767_225_600_000


def plain_apply(q: QualityProcessor, reading: DeviceReading) -> None:
    """The step as it was: every channel asks in_maintenance and its stuck rule."""
    for ch, cv in reading.values.items():
        why = q.in_maintenance(reading.device, ch, reading.ts)
        if why is not None:
            flag = worst_flag(cv.flag, Flag.M)
            if flag is not cv.flag:
                cv.flag = flag
                cv.note = cv.note or why
        rule = q._rule(reading.device, ch)
        if rule is not None and isinstance(cv.value, (int, float)) and not isinstance(cv.value, bool):
            note = q._stuck(reading.device, ch, float(cv.value), reading.ts, rule)
            if note is not None:
                flag = worst_flag(cv.flag, rule.flag)
                if flag is not cv.flag:
                    cv.flag = flag
                    cv.note = cv.note or note


windows = st.lists(st.fixed_dictionaries({
    "daily": st.sampled_from(["00:00-00:05", "00:03-00:10", "23:58-00:02"]),
    "devices": st.sampled_from([["*"], ["d1"], ["d2"]]),
    "channels": st.sampled_from([["*"], ["a"], ["b*"]]),
    "reason": st.sampled_from(["", "calibration"]),
}), max_size=2)
stuck = st.lists(st.fixed_dictionaries({
    "channels": st.sampled_from([["a"], ["*"]]), "count": st.sampled_from([2, 3]),
    "flag": st.sampled_from(["D", "C"]),
}), max_size=2)
switch = st.tuples(st.sampled_from([True, False, None]), st.sampled_from([None, "d1", "d2"]))
poll = st.tuples(st.integers(1, 120_000), st.sampled_from(["d1", "d2"]),
                 st.lists(st.tuples(st.sampled_from(["a", "b1", "c"]), st.sampled_from([1.0, 2.0, None, "t", True]),
                                    st.sampled_from([Flag.N, Flag.N, Flag.C, Flag.B])), max_size=3),
                 st.none() | switch)


@settings(max_examples=200, deadline=None)
@given(st.booleans(), st.sampled_from([["*"], ["d1"]]), windows, stuck, st.lists(poll, max_size=30))
def test_the_step_gives_the_flags_of_asking_every_channel(active: bool, devices: list[str],
                                                          wins: list[dict[str, object]], rules: list[dict[str, object]],
                                                          polls: list[tuple[int, str, list[tuple[str, object, Flag]],
                                                                            tuple[bool | None, str | None] | None]],
                                                          ) -> None:
    def make() -> QualityProcessor:
        return QualityProcessor(MaintenanceConfig.model_validate({"active": active, "devices": devices,
                                                                  "windows": wins}),
                                [StuckRule.model_validate(r) for r in rules])
    fast, plain = make(), make()
    ts = T0
    for step, device, chs, sw in polls:
        ts += step
        if sw is not None:
            fast.set_maintenance(*sw)
            plain.set_maintenance(*sw)
        a = DeviceReading("s", device, "dust", ts, {ch: ChannelValue(v, "u", f) for ch, v, f in chs})  # type: ignore[arg-type]
        b = DeviceReading("s", device, "dust", ts, {ch: ChannelValue(v, "u", f) for ch, v, f in chs})  # type: ignore[arg-type]
        fast.apply(a)
        plain_apply(plain, b)
        assert a == b
