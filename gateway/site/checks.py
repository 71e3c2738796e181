"""The checks that span sections of the site file (pydantic sees one field at a time), each returning
`path: message` lines: stacks, stuck rules and maintenance windows name real devices and channels; rules and packs
resolve and name real devices, channels and computed windows; actuators write to real devices; the windows the
HJ 212 uplinks send are computed. `check_alarms` also returns the resolved rules, which the site keeps."""

from __future__ import annotations

from typing import Any

from gateway.alarms.rules import OfflineRule, QualityRule, Rule, ThresholdRule, resolve_rules, windows_needed
from gateway.core.localtime import parse_period
from gateway.core.patterns import matches
from gateway.hj212.config import weak_password
from gateway.hj212.names import KNOWN_CODES
from gateway.site.model import Site
from gateway.site.names import index_by_name


def site_warnings(site: Site) -> list[str]:
    """What makes a site file usable but probably not what its author meant, as `path: message` lines."""
    cfg = site.config
    out: list[str] = []
    if not cfg.sinks and not cfg.uplinks:
        out.append("sinks: none: readings are committed to the durable log but delivered nowhere (add an mqtt or "
                   "influx sink, or an HJ 212 uplink)")
    for i, up in enumerate(cfg.uplinks):
        why = weak_password(up.pw.get_secret_value())
        if why is not None:
            out.append(f"uplinks[{i}].pw: {why}; used because pw_assigned_by_platform is set: ask the platform for "
                       "a stronger one")
        for j, cm in enumerate(up.codes):
            if cm.code not in KNOWN_CODES:
                out.append(f"uplinks[{i}].codes[{j}].code: {cm.code} is not a pollutant code of HJ 212 that Plume "
                           "knows (gateway.hj212.names): a strict platform refuses every packet carrying it; use "
                           "the code of the platform's code table")
    return out


def check_processing(site: Site) -> list[str]:
    """Problems of the stacks, stuck, maintenance and windows sections against the devices and the uplinks."""
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
    for i, up in enumerate(cfg.uplinks):
        minute = up.send.minute
        if minute is not None:
            window = parse_period(f"{minute.interval_min}m").name
            if window not in periods:
                problems.append(f"uplinks[{i}].send.minute.interval_min: the {window} window is not computed; "
                                f"add {window} to windows.periods")
    return problems


def check_timezone(site: Site, rules: list[Rule]) -> list[str]:
    """A site whose reports follow a local clock must name its zone: HJ 212 DataTimes, the local hours and days of
    configured windows, rules judging windows or on a schedule, daily maintenance windows. UTC is a choice to
    write down, not a default to fall into (every DataTime would be 8 h off in China)."""
    cfg = site.config
    if "timezone" in cfg.site.model_fields_set:
        return []
    why = []
    if cfg.uplinks:
        why.append("HJ 212 uplinks")
    if "windows" in cfg.model_fields_set:
        why.append("a windows section")
    if any(isinstance(r, ThresholdRule) and (r.window != "raw" or r.schedule or r.max_per_day is not None)
           for r in rules):
        why.append("window or scheduled rules")
    if cfg.maintenance.windows:
        why.append("maintenance windows")
    if not why:
        return []
    return [f"site.timezone: missing: this site has {', '.join(why)}, whose times and local hours and days follow "
            "the site's clock; name its IANA zone, e.g. `timezone: Asia/Shanghai` (or `UTC` if that is meant)"]


def processing_warnings(site: Site) -> list[str]:
    """Settings that run but cannot give regulatory-valid data: a device whose kind needs n samples a minute
    (`windows.minute_min_samples`, cems: 12 after HJ 212-2017 appendix D2.2) polled slower than every 60/n s."""
    cfg = site.config
    out: list[str] = []
    for i, d in enumerate(cfg.devices):
        resolved = next((r for r in site.devices if r.config is d), None)
        if resolved is None or not d.enabled or not matches(d.name, cfg.windows.devices):
            continue
        kind = resolved.profile.kind
        need = cfg.windows.minute_min_samples.get(kind, 0)
        if need and d.poll_interval_s > 60.0 / need + 1e-9:
            out.append(f"devices[{i}].poll_interval_s: {d.name} ({kind}) is polled every {d.poll_interval_s:g} s: "
                       f"it cannot make HJ 212-valid minute data (appendix D2.2: at least {need} values a minute, "
                       f"at most {60 / need:g} s apart); its minutes, hours and days will not be N. "
                       f"Poll it every {60 / need:g} s or faster")
    return out


def _literal(pattern: str) -> bool:
    return not any(c in pattern for c in "*?[")


def check_alarms(site: Site) -> tuple[list[Rule], list[str]]:
    """The resolved rules (site rules plus packs) and the problems of the rules, packs, actuators and webhooks."""
    cfg = site.config
    rules, problems = resolve_rules(cfg.rules, cfg.rule_packs, site.base)
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
    names = index_by_name((a.name for a in cfg.actuators), "actuators", "actuator", problems)
    for i, a in enumerate(cfg.actuators):
        if a.device not in devices:
            problems.append(f"actuators[{i}].device: no device named {a.device!r} (devices: {', '.join(devices)})")
    for r in rules:
        for n in r.actuate:
            if n not in names:
                problems.append(f"rules ({r.id}).actuate: no actuator named {n!r} "
                                f"(actuators: {', '.join(names) or 'none'})")
    route_rules = [("webhooks", i, h.rules) for i, h in enumerate(cfg.notify.webhooks)]
    route_rules += [("sms", i, m.rules) for i, m in enumerate(cfg.notify.sms)]
    for section, i, patterns in route_rules:
        if not any(matches(r.id, patterns) for r in rules):
            problems.append(f"notify.{section}[{i}].rules: no rule matches {patterns}")
    problems += check_cameras(site)
    return rules, problems


def check_cameras(site: Site) -> list[str]:
    """Cameras have unique names and watch devices the site has."""
    problems: list[str] = []
    devices = [d.config.name for d in site.devices]
    index_by_name((c.name for c in site.config.cameras), "cameras", "camera", problems)
    for i, cam in enumerate(site.config.cameras):
        for name in cam.devices:
            if name not in devices:
                problems.append(f"cameras[{i}].devices: no device named {name!r} (devices: {', '.join(devices)})")
    return problems


def config_warnings(site: Site) -> list[str]:
    """What is allowed but likely wrong, as `path: message` lines: a sink with a user name and no password (the
    broker or database will refuse it, or let anyone in as that user)."""
    out: list[str] = []
    for i, sink in enumerate(site.config.sinks):
        user = getattr(sink, "username", None)
        if not user or getattr(sink, "password_file", None) or getattr(sink, "password_env", None):
            continue
        secret = getattr(sink, "password", None)
        if secret is None or not secret.get_secret_value():
            out.append(f"sinks[{i}].password: empty for username {user!r} on sink {sink.name}; set password "
                       f"(or password_env / password_file), or drop username if the server needs no login")
    out += sms_warnings(site)
    return out


def sms_warnings(site: Site) -> list[str]:
    """An SMS route whose messages would not fit one SMS (they are cut to fit); an escalation list no rule feeds."""
    from zoneinfo import ZoneInfo

    from gateway.alarms.sms import overflow_warning
    from gateway.core.clock import now_ms

    cfg = site.config
    devices = [d.config.name for d in site.devices]
    out = []
    for i, sms in enumerate(cfg.notify.sms):
        w = overflow_warning(f"notify.sms[{i}]", sms, site.rules, site.id, cfg.site.name,
                             ZoneInfo(cfg.site.timezone), devices, now_ms())
        if w:
            out.append(w)
    routes: list[tuple[str, Any]] = [("notify.sms", r) for r in cfg.notify.sms]
    routes += [("notify.email", r) for r in cfg.notify.email]
    counts: dict[str, int] = {}
    for section, route in routes:
        i = counts[section] = counts.get(section, -1) + 1
        if route.escalate_to and not any(r.escalate_after_s for r in site.rules if matches(r.id, route.rules)):
            out.append(f"{section}[{i}].escalate_to: no rule this route takes has escalate_after_s, so nothing is "
                       "ever escalated to it; set escalate_after_s on the rules (or rule_packs overrides)")
    return out

