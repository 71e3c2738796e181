"""Checks of the alarm sections that span the site file: rule packs resolve, rules name real devices and computed
windows, actuators write to real devices, and webhook names do not collide with other log consumers (sinks,
uplinks: each name is a cursor in the durable log). `check_alarms(site)` returns the resolved rules (site rules
plus packs) and the problems as `path: message` lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.alarms.rules import OfflineRule, QualityRule, Rule, ThresholdRule, resolve_rules, windows_needed
from gateway.core.patterns import matches

if TYPE_CHECKING:
    from gateway.config import Site


def _literal(pattern: str) -> bool:
    return not any(c in pattern for c in "*?[")


def check_alarms(site: Site) -> tuple[list[Rule], list[str]]:
    cfg = site.config
    base = site.path.resolve().parent if site.path else None
    rules, problems = resolve_rules(cfg.rules, cfg.rule_packs, base)
    devices = [d.config.name for d in site.devices]
    channels = {d.config.name: {r.channel for r in d.profile.registers} for d in site.devices}
    kinds = {d.config.name: d.profile.kind for d in site.devices}
    for st in cfg.stacks:  # the channels the CEMS stage adds
        derived = {"flow_std", "o2_dry", *(f"{p}{s}" for p in st.pollutants for s in ("_std", "_zs", "_rate"))}
        channels.setdefault(st.device, set()).update(derived)
    for r in rules:
        if isinstance(r, ThresholdRule | OfflineRule | QualityRule):
            for p in r.devices:
                if _literal(p) and p not in devices:
                    problems.append(f"rules ({r.id}).devices: no device named {p!r} (devices: {', '.join(devices)})")
        if isinstance(r, ThresholdRule):
            judged = [d for d in devices if matches(d, r.devices) and (r.kind is None or kinds[d] == r.kind)]
            if judged and not any(r.channel in channels[d] for d in judged):
                problems.append(f"rules ({r.id}).channel: no device it applies to has a channel {r.channel!r} "
                                f"({', '.join(judged)}); the rule would never fire")
    intervals = {d.config.name: d.config.poll_interval_s for d in site.devices if d.config.enabled}
    for r in rules:
        if isinstance(r, OfflineRule):
            short = sorted(n for n, iv in intervals.items() if matches(n, r.devices)
                           and r.after_s <= iv)
            if short:
                problems.append(f"rules ({r.id}).after_s: {r.after_s:g} s is not longer than the poll interval of "
                                f"{', '.join(short)}: the alarm would flap between polls; make it several intervals")
    for w in sorted(windows_needed(rules) - set(cfg.windows.periods)):
        users = ", ".join(r.id for r in rules if isinstance(r, ThresholdRule) and r.window == w)
        problems.append(f"windows.periods: rules judge the {w} window ({users}); add {w}")
    names: dict[str, int] = {}
    for i, a in enumerate(cfg.actuators):
        if a.name in names:
            problems.append(f"actuators[{i}].name: duplicate actuator {a.name!r} (also actuators[{names[a.name]}])")
        names.setdefault(a.name, i)
        if a.device not in devices:
            problems.append(f"actuators[{i}].device: no device named {a.device!r} (devices: {', '.join(devices)})")
    for r in rules:
        for n in r.actuate:
            if n not in names:
                problems.append(f"rules ({r.id}).actuate: no actuator named {n!r} "
                                f"(actuators: {', '.join(names) or 'none'})")
    consumers = {s.name: "sinks" for s in cfg.sinks}
    consumers.update({u.name: "uplinks" for u in getattr(cfg, "uplinks", [])})
    hooks: dict[str, int] = {}
    for i, hook in enumerate(cfg.notify.webhooks):
        if hook.name in hooks:
            problems.append(f"notify.webhooks[{i}].name: duplicate webhook {hook.name!r}")
        hooks.setdefault(hook.name, i)
        if hook.name in consumers:
            problems.append(f"notify.webhooks[{i}].name: {hook.name!r} is also a name in {consumers[hook.name]} "
                            "(each is a cursor in the log): rename one")
        if not any(matches(r.id, hook.rules) for r in rules):
            problems.append(f"notify.webhooks[{i}].rules: no rule matches {hook.rules}")
    return rules, problems
