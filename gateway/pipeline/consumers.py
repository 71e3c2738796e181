"""The wiring table: how each log consumer the site file names becomes a running reader of the durable log.

    sinks[i] (type mqtt)     -> MqttSink        sinks[i] (type influx) -> InfluxSink
    sinks[i] (type homeassistant) -> HomeAssistantSink (native contract + Home Assistant discovery)
    sinks[i] (type thingsboard)   -> ThingsBoardSink (ThingsBoard's MQTT gateway API)
    notify.webhooks[i]       -> WebhookSink     uplinks[i]             -> UplinkSink (HJ 212)
    notify.email[i]          -> EmailSink       notify.sms[i]          -> SmsSink
    cameras (any)            -> CameraService (cursor `_cameras`; the webhooks and e-mail routes ask it for an
                                alarm's pictures)

One factory per kind; every secret (passwords, tokens, webhook URLs and signing keys, HJ 212 PW) is resolved the
one way, inline / `*_env` / `*_file`, before anything starts, and registered for redaction in the logs. Names are
unique already (gateway.site.consumers checked them when the site was loaded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gateway.config import ConfigError
from gateway.core.secrets import add_basic_auth, add_header, add_secret, add_url, add_url_credentials
from gateway.hj212.sources import AggregateFeed, LogAggregateFeed
from gateway.sinks.base import DeliveredHook, Sink
from gateway.sinks.config import (
    HomeAssistantSinkConfig,
    InfluxSinkConfig,
    MqttSinkConfig,
    ThingsBoardSinkConfig,
    resolve_secret,
)
from gateway.site.model import Site
from gateway.store.log import DurableLog

if TYPE_CHECKING:
    import ssl

    from gateway.alarms.snapshots import CameraService

ConsumerFactory = Callable[[DurableLog, "DeliveredHook | None"], Sink]


@dataclass(slots=True, frozen=True)
class ConsumerPlan:
    """A consumer ready to build once the log is open: its cursor name and its factory."""

    name: str
    section: str
    make: ConsumerFactory


Wire = Callable[[Site, int, str, list[str]], "ConsumerFactory | None"]
FeedFactory = Callable[[DurableLog], "AggregateFeed | None"]


def log_feed(lg: DurableLog) -> AggregateFeed:
    """The uplinks' minute/hour/day data (2051, 2061, 2031): the aggregate records the regulatory stage logs."""
    return LogAggregateFeed(lambda: lg)


def _broker_login(site: Site, cfg: MqttSinkConfig, where: str, problems: list[str],
                  ) -> tuple[str | None, ssl.SSLContext | None] | None:
    """An MQTT broker's password (registered for redaction) and TLS context; None when the certificates cannot be
    loaded (the problem is added)."""
    from gateway.sinks.mqtt import tls_context

    password = resolve_secret(f"{where}.password", cfg.password, cfg.password_env, cfg.password_file, problems,
                              site.base)
    add_secret(password)
    try:
        return password, tls_context(cfg, site.base)
    except (OSError, ValueError) as exc:
        problems.append(f"{where}.tls: cannot load the certificates: {exc}")
        return None


def _mqtt(site: Site, cfg: MqttSinkConfig, where: str, problems: list[str]) -> ConsumerFactory | None:
    from gateway.sinks.mqtt import MqttSink

    login = _broker_login(site, cfg, where, problems)
    if login is None:
        return None
    password, tls = login

    def make(lg: DurableLog, hook: DeliveredHook | None) -> Sink:
        return MqttSink(cfg, site.id, lg, password=password, tls=tls, on_delivered=hook)

    return make


def _homeassistant(site: Site, cfg: HomeAssistantSinkConfig, where: str, problems: list[str],
                   ) -> ConsumerFactory | None:
    from gateway.sinks.homeassistant import HaDevice, HomeAssistantSink

    login = _broker_login(site, cfg, where, problems)
    if login is None:
        return None
    password, tls = login
    devices = {d.name: HaDevice(d.name, d.profile.name, d.profile.kind, d.profile.description,
                                {r.channel: r for r in d.profile.registers})
               for d in site.devices if d.config.enabled}

    def make(lg: DurableLog, hook: DeliveredHook | None) -> Sink:
        return HomeAssistantSink(cfg, site.id, lg, devices=devices,
                                 state_path=lg.path.parent / f"homeassistant-{cfg.name}.json",
                                 password=password, tls=tls, on_delivered=hook)

    return make


def _thingsboard(site: Site, cfg: ThingsBoardSinkConfig, where: str, problems: list[str],
                 ) -> ConsumerFactory | None:
    from gateway.sinks.mqtt import tls_context
    from gateway.sinks.thingsboard import ThingsBoardSink

    token = resolve_secret(f"{where}.token", cfg.token, cfg.token_env, cfg.token_file, problems, site.base)
    add_secret(token)
    try:
        tls = tls_context(cfg, site.base)  # type: ignore[arg-type]  # it reads only cfg.tls
    except (OSError, ValueError) as exc:
        problems.append(f"{where}.tls: cannot load the certificates: {exc}")
        return None
    devices = {d.name: {"site": site.id, "kind": d.profile.kind, "profile": d.profile.name, "bus": d.config.bus,
                        "address": d.config.address} for d in site.devices if d.config.enabled}

    def make(lg: DurableLog, hook: DeliveredHook | None) -> Sink:
        return ThingsBoardSink(cfg, site.id, lg, devices=devices, token=token, tls=tls, on_delivered=hook)

    return make


def _influx(site: Site, cfg: InfluxSinkConfig, where: str, problems: list[str]) -> ConsumerFactory | None:
    from gateway.acquisition.codec import exact_channels
    from gateway.sinks.influx import InfluxSink

    if cfg.api == "v1":
        secret = resolve_secret(f"{where}.password", cfg.password, cfg.password_env, cfg.password_file, problems,
                                site.base)
    else:
        secret = resolve_secret(f"{where}.token", cfg.token, cfg.token_env, cfg.token_file, problems, site.base)
    if cfg.api == "v1":
        add_basic_auth(cfg.username, secret)  # sent as HTTP Basic: its base64 is a secret too
    add_secret(secret)
    add_url(cfg.url)

    def make(lg: DurableLog, hook: DeliveredHook | None) -> Sink:
        return InfluxSink(cfg, site.id, lg, secret=secret, on_delivered=hook, exact=exact_channels(site.devices))

    return make


_SINKS: dict[str, Callable[[Site, Any, str, list[str]], ConsumerFactory | None]] = {
    "mqtt": _mqtt, "influx": _influx, "homeassistant": _homeassistant, "thingsboard": _thingsboard}


def _sink(site: Site, i: int, where: str, problems: list[str]) -> ConsumerFactory | None:
    cfg = site.config.sinks[i]
    return _SINKS[cfg.type](site, cfg, where, problems)


CameraFactory = Callable[[DurableLog], "CameraService"]


def _cameras(site: Site, problems: list[str]) -> CameraFactory | None:
    """The site's cameras as one service per log (the same for its consumer plan and every notification route)."""
    from gateway.alarms.snapshots import CameraService, SnapshotStore

    cams = site.config.cameras
    if not cams:
        return None
    passwords: dict[str, str | None] = {}
    for i, cam in enumerate(cams):
        pw = resolve_secret(f"cameras[{i}].password", cam.password, cam.password_env, cam.password_file, problems,
                            site.base)
        add_basic_auth(cam.username, pw)
        add_url_credentials(cam.url)  # the URL itself is no secret (it names the camera in the logs)
        passwords[cam.name] = pw
    made: list[CameraService] = []

    def service(lg: DurableLog) -> CameraService:
        if not made or made[0].log is not lg:
            store = SnapshotStore(site.config.snapshots.folder(lg.path.parent, site.base), site.config.snapshots)
            made[:] = [CameraService(cams, passwords, store, site.id, lg)]
        return made[0]

    return service


def _webhook(site: Site, i: int, where: str, problems: list[str], cameras: CameraFactory | None = None,
             ) -> ConsumerFactory | None:
    from gateway.alarms.delivery import WebhookSink

    cfg = site.config.notify.webhooks[i]
    before = len(problems)
    url = resolve_secret(f"{where}.url", cfg.url, cfg.url_env, cfg.url_file, problems, site.base)
    if not url and len(problems) == before:
        problems.append(f"{where}.url: the URL is empty")
    secret = resolve_secret(f"{where}.secret", cfg.secret, cfg.secret_env, cfg.secret_file, problems, site.base)
    add_url(url)
    add_secret(secret)
    for name, value in cfg.headers.items():
        add_header(name, value)
    if not url:
        return None
    tz = ZoneInfo(site.config.site.timezone)

    def make(lg: DurableLog, hook: DeliveredHook | None) -> Sink:
        sink = WebhookSink(cfg, site.id, site.config.site.name, tz, lg, url=url, secret=secret, on_delivered=hook)
        sink.cameras = cameras(lg) if cameras is not None else None
        return sink

    return make


def _email(site: Site, i: int, where: str, problems: list[str], cameras: CameraFactory | None = None,
           ) -> ConsumerFactory | None:
    from gateway.alarms.delivery import EmailSink
    from gateway.alarms.mail import tls_context

    cfg = site.config.notify.email[i]
    password = resolve_secret(f"{where}.password", cfg.password, cfg.password_env, cfg.password_file, problems,
                              site.base)
    add_secret(password)
    try:
        tls = tls_context(cfg, site.base)
    except (OSError, ValueError) as exc:
        problems.append(f"{where}.ca_file: cannot load the CA bundle: {exc}")
        return None
    tz = ZoneInfo(site.config.site.timezone)

    def make(lg: DurableLog, hook: DeliveredHook | None) -> Sink:
        sink = EmailSink(cfg, site.id, site.config.site.name, tz, lg, password=password, tls=tls, on_delivered=hook)
        sink.cameras = cameras(lg) if cameras is not None else None
        return sink

    return make


def _sms(site: Site, i: int, where: str, problems: list[str]) -> ConsumerFactory | None:
    from gateway.alarms.delivery import SmsSink

    cfg = site.config.notify.sms[i]
    before = len(problems)
    url = resolve_secret(f"{where}.url", cfg.url, cfg.url_env, cfg.url_file, problems, site.base)
    if not url and len(problems) == before:
        problems.append(f"{where}.url: the URL is empty")
    a = cfg.auth
    password = resolve_secret(f"{where}.auth.password", a.password, a.password_env, a.password_file, problems,
                              site.base)
    token = resolve_secret(f"{where}.auth.token", a.token, a.token_env, a.token_file, problems, site.base)
    add_url(url)
    add_basic_auth(a.username, password)
    add_secret(token)
    for name, value in cfg.headers.items():
        add_header(name, value)
    if not url:
        return None
    tz = ZoneInfo(site.config.site.timezone)

    def make(lg: DurableLog, hook: DeliveredHook | None) -> Sink:
        return SmsSink(cfg, site.id, site.config.site.name, tz, lg, url=url, password=password, token=token,
                       on_delivered=hook)

    return make


def _uplink(site: Site, i: int, where: str, problems: list[str], feed: FeedFactory = log_feed,
            ) -> ConsumerFactory | None:
    from gateway.hj212.uplink import UplinkSink

    cfg = site.config.uplinks[i]
    pw = cfg.pw.get_secret_value()
    add_secret(pw)
    tz = ZoneInfo(site.config.site.timezone)
    routes = site.routes[cfg.name]

    def make(lg: DurableLog, hook: DeliveredHook | None) -> Sink:
        return UplinkSink(cfg, site.id, tz, routes, lg, pw=pw, state_path=lg.path.parent / f"hj212-{cfg.name}.json",
                          aggregates=feed(lg), on_delivered=hook)

    return make


WIRING: dict[str, Wire] = {"sinks": _sink, "notify.webhooks": _webhook, "notify.email": _email,
                          "notify.sms": _sms, "uplinks": _uplink}


def build_consumers(site: Site, *, feed: FeedFactory = log_feed) -> list[ConsumerPlan]:
    """Every consumer of the site, checked against the world (secrets, certificates, packages) before anything
    starts; raises ConfigError naming every field that cannot be used. `feed` gives the uplinks their minute/hour/day
    data (default: the log's aggregate records; a test rig may give its own, or none)."""
    problems: list[str] = []
    plans: list[ConsumerPlan] = []
    cameras = _cameras(site, problems)
    if cameras is not None:
        from gateway.alarms.snapshots import CURSOR

        service = cameras

        def camera_plan(lg: DurableLog, hook: DeliveredHook | None) -> Sink:
            return service(lg)

        plans.append(ConsumerPlan(CURSOR, "cameras", camera_plan))
    wiring: dict[str, Wire] = {**WIRING, "uplinks": partial(_uplink, feed=feed),
                               "notify.webhooks": partial(_webhook, cameras=cameras),
                               "notify.email": partial(_email, cameras=cameras)}
    for consumer in site.consumers:
        section, _, rest = consumer.section.partition("[")
        index = int(rest.rstrip("]"))
        make = wiring[section](site, index, consumer.section, problems)
        if make is not None:
            plans.append(ConsumerPlan(consumer.name, section, make))
    if problems:
        raise ConfigError(problems)
    return plans
