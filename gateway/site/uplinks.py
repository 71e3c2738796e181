"""Each HJ 212 uplink's code map resolved against the site's devices: which device and channel feeds each code,
and whether its unit converts; every problem is `uplinks[i].codes[j].field: message`."""

from __future__ import annotations

from gateway.hj212.config import UplinkConfig
from gateway.hj212.routes import Route, convert, derived
from gateway.site.model import Site


def check_uplinks(site: Site) -> tuple[list[str], dict[str, list[Route]]]:
    """The problems of every uplink's code map, and each uplink's routes (by uplink name)."""
    problems: list[str] = []
    routes = {cfg.name: resolve(cfg, site, f"uplinks[{i}]", problems) for i, cfg in enumerate(site.config.uplinks)}
    return problems, routes


def resolve(cfg: UplinkConfig, site: Site, where: str, problems: list[str]) -> list[Route]:
    """Routes for an uplink's code map; every problem is `where.codes[i].field: message`."""
    devices = {d.name: d for d in site.devices if d.config.enabled}
    routes: list[Route] = []
    for i, c in enumerate(cfg.codes):
        at = f"{where}.codes[{i}]"
        if c.device is not None:
            dev = devices.get(c.device)
            if dev is None:
                problems.append(f"{at}.device: no enabled device named {c.device!r}")
                continue
            name = dev.name
        else:
            having = [d.name for d in devices.values() if any(r.channel == c.channel for r in d.profile.registers)]
            if len(having) != 1:
                problems.append(f"{at}.device: " + (f"channel {c.channel} is on {', '.join(having)}; say which"
                                                    if having else f"no enabled device has a channel {c.channel}"))
                continue
            name = having[0]
            dev = devices[name]
        spec = next((r for r in dev.profile.registers if r.channel == c.channel), None)
        if spec is None and not derived(c.channel):
            problems.append(f"{at}.channel: device {name} has no channel {c.channel!r} (channels: "
                            f"{', '.join(r.channel for r in dev.profile.registers)})")
            continue
        if spec is not None and c.unit is not None and spec.unit and convert(1.0, spec.unit, c.unit) is None:
            problems.append(f"{at}.unit: cannot convert {c.channel} from {spec.unit} to {c.unit}")
            continue
        zs = cfg.zs.get(c.code)
        if zs is not None and not derived(zs) and not any(r.channel == zs for r in dev.profile.registers):
            problems.append(f"{where}.zs.{c.code}: device {name} has no channel {zs!r}")
            continue
        routes.append(Route(c.code, name, c.channel, c.unit, c.decimals, zs))
    return routes
