"""Converted (Zs) window averages from the window's own means.

A window's `<pollutant>_zs` average is its mean dry standard concentration (`<pollutant>_std`) converted with its
mean dry O2: C_zs = C_std,avg x (21 - O2_ref) / (21 - O2_avg). This is how HJ 75-2017 / HJ 212-2017 appendix D
compute the converted hourly value (see README, "Converted window averages"), and it differs from the mean of
instantaneous Zs values whenever O2 varies (SO2 100 mg/m3 with O2 alternating 6 % / 16 %: 120, not 160). A stack
may keep the mean of instantaneous values (`zs_window_average: of_values`). Min and max stay those of the values
under the window; the flag stays the validity of the Zs values. Pure: called by the window engine on every
window it closes (minutes, N-minute windows, hours, days), before the window is emitted or feeds a longer one.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.model import Flag
from gateway.processing.cems import O2_AIR, StackConfig, parse_ref
from gateway.processing.windows import WindowAggregate


@dataclass(frozen=True, slots=True)
class _Stack:
    reference_o2: float
    guard: float
    guard_flag: Flag
    o2_channel: str | None  # a channel of the stack's own device (dry), or
    o2_value: float | None  # a fixed dry O2
    pollutants: tuple[str, ...]


class ZsFromMeans:
    """The window hook: rewrites `<pollutant>_zs.avg` of each stack device's windows from the window's means."""

    def __init__(self, stacks: list[StackConfig]):
        self._stacks: dict[str, _Stack] = {}
        for st in stacks:
            ref = st.effective_reference_o2
            pollutants = tuple(n for n, p in st.pollutants.items() if p.zs)
            if st.zs_window_average != "from_means" or ref is None or st.o2 is None or not pollutants:
                continue
            channel: str | None = None
            value: float | None = None
            if st.o2_basis == "wet":
                channel = "o2_dry"  # the CEMS stage adds it to the stack device's readings
            elif isinstance(st.o2, str):
                device, channel = parse_ref(st.o2, st.device)
                if device != st.device:
                    continue  # O2 from another device: its windows are not this device's (README says so)
            else:
                value = float(st.o2)
            self._stacks[st.device] = _Stack(ref, st.o2_guard, st.guard_flag, channel, value, pollutants)

    def covers(self, device: str) -> bool:
        return device in self._stacks

    def __call__(self, agg: WindowAggregate) -> None:
        st = self._stacks.get(agg.device)
        if st is None:
            return
        if st.o2_channel is not None:
            o2_agg = agg.channels.get(st.o2_channel)
            o2 = None if o2_agg is None else o2_agg.avg
        else:
            o2 = st.o2_value
        for name in st.pollutants:
            zs = agg.channels.get(f"{name}_zs")
            std = agg.channels.get(f"{name}_std")
            if zs is None or std is None:
                continue
            if std.avg is None or o2 is None or o2 < 0:
                zs.avg = None
            elif o2 >= st.guard:
                zs.avg = None  # the window's mean O2 is at the guard (burner off): no converted value
                if zs.flag is Flag.N:
                    zs.flag = st.guard_flag
            else:
                zs.avg = std.avg * (O2_AIR - st.reference_o2) / (O2_AIR - o2)
