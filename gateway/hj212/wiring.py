"""How the app builds the uplinks of a site: checks that need the whole site (device names, channels, unique
cursor names) and one factory per uplink, shaped like the sink factories of gateway.app."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from gateway.config import ConfigError, Site
from gateway.hj212.config import UplinkConfig
from gateway.hj212.routes import Route, resolve
from gateway.hj212.sources import AggregateFeed
from gateway.hj212.uplink import UplinkSink
from gateway.logsetup import add_secret
from gateway.sinks.base import DeliveredHook, Sink
from gateway.store.log import DurableLog

UplinkFactory = Callable[[DurableLog, "DeliveredHook | None"], Sink]


def check_uplinks(site: Site) -> tuple[list[str], dict[str, list[Route]]]:
    """Problems of the uplinks section that pydantic cannot see, and each uplink's routes."""
    problems: list[str] = []
    taken = {s.name: f"sinks[{i}]" for i, s in enumerate(site.config.sinks)}
    routes: dict[str, list[Route]] = {}
    for i, cfg in enumerate(site.config.uplinks):
        where = f"uplinks[{i}]"
        if cfg.name in taken:
            problems.append(f"{where}.name: {cfg.name!r} is already the name of {taken[cfg.name]}; every sink and "
                            "uplink needs its own name (it names its cursor in the log)")
        taken.setdefault(cfg.name, where)
        routes[cfg.name] = resolve(cfg, site, where, problems)
    return problems, routes


def uplink_names(site: Site) -> list[str]:
    """The log consumers the uplinks need (open the log with these next to the sinks' names)."""
    return [u.name for u in site.config.uplinks]


def prepare_uplinks(site: Site, aggregates: AggregateFeed | None = None) -> list[UplinkFactory]:
    """Check the uplinks against the site; raises ConfigError naming each problem. One factory per uplink."""
    problems, routes = check_uplinks(site)
    if problems:
        raise ConfigError(problems)
    tz = ZoneInfo(site.config.site.timezone)
    factories: list[UplinkFactory] = []
    for cfg in site.config.uplinks:
        pw = cfg.pw.get_secret_value()
        add_secret(pw)

        def make(lg: DurableLog, hook: DeliveredHook | None, cfg: UplinkConfig = cfg, pw: str = pw) -> Sink:
            return UplinkSink(cfg, site.id, tz, routes[cfg.name], lg, pw=pw,
                              state_path=lg.path.parent / f"hj212-{cfg.name}.json", aggregates=aggregates,
                              on_delivered=hook)

        factories.append(make)
    return factories


def uplink_sinks(site: Site, aggregates: AggregateFeed | None = None, on_delivered: DeliveredHook | None = None
                 ) -> dict[str, Callable[[DurableLog], Sink]]:
    """The site's uplinks as `Gateway(extra_sinks=...)` takes them: cursor name -> factory(log). Raises
    ConfigError (one line per problem) when the uplinks do not fit the site."""
    out: dict[str, Callable[[DurableLog], Sink]] = {}
    for cfg, make in zip(site.config.uplinks, prepare_uplinks(site, aggregates), strict=True):

        def one(lg: DurableLog, make: UplinkFactory = make) -> Sink:
            return make(lg, on_delivered)

        out[cfg.name] = one
    return out
