"""Checks of the processing sections that span the site file (pydantic sees one field at a time): stacks name real
devices, and the windows the HJ 212 uplinks send are computed. Problems are `path: message` lines, like
`load_site`'s, which runs this at every load (gateway.config.section_problems)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.core.localtime import parse_period
from gateway.core.patterns import matches

if TYPE_CHECKING:
    from gateway.config import Site


def check_processing(site: Site) -> list[str]:
    cfg = site.config
    devices = [d.config.name for d in site.devices]
    channels = {d.config.name: {r.channel for r in d.profile.registers} for d in site.devices}
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, st in enumerate(cfg.stacks):
        where = f"stacks[{i}]"
        if st.device in seen:
            problems.append(f"{where}.device: {st.device} already has a stack (stacks[{seen[st.device]}])")
        seen.setdefault(st.device, i)
        if st.device not in channels:
            problems.append(f"{where}.device: no device named {st.device!r} (devices: {', '.join(devices)})")
            continue
        for dev, ch in st.inputs():
            if dev not in channels:
                problems.append(f"{where}: input {dev}.{ch}: no device named {dev!r}")
            elif ch not in channels[dev]:
                problems.append(f"{where}: input {dev}.{ch}: {dev} has no channel {ch!r} "
                                f"(it has: {', '.join(sorted(channels[dev]))})")
        for name in st.pollutants:
            for suffix in ("_std", "_zs", "_rate"):
                if f"{name}{suffix}" in channels[st.device]:
                    problems.append(f"{where}.pollutants.{name}: {st.device} already has a channel "
                                    f"{name}{suffix}; rename the pollutant")
    for i, s in enumerate(cfg.stuck):
        if not any(matches(d, s.devices) for d in devices):
            problems.append(f"stuck[{i}].devices: no device matches {s.devices}")
    for i, w in enumerate(cfg.maintenance.windows):
        if not any(matches(d, w.devices) for d in devices):
            problems.append(f"maintenance.windows[{i}].devices: no device matches {w.devices}")
    periods = set(cfg.windows.periods)
    for i, up in enumerate(getattr(cfg, "uplinks", [])):
        minute = getattr(getattr(up, "send", None), "minute", None)
        if minute is not None:
            window = parse_period(f"{minute.interval_min}m").name
            if window not in periods:
                problems.append(f"uplinks[{i}].send.minute.interval_min: the {window} window is not computed; "
                                f"add {window} to windows.periods")
    return problems


