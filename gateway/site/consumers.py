"""The registry of log consumers: every sink, HJ 212 uplink, webhook, e-mail and SMS route reads the durable log with a
cursor named after it, so their names must be unique across the sections. This is the one place that checks it."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.alarms.webhooks import Route
from gateway.config import SiteConfig
from gateway.site.model import Consumer


def register_consumers(cfg: SiteConfig) -> tuple[list[Consumer], dict[str, list[str]]]:
    """The consumers in the order the pipeline builds them (sinks, webhooks, e-mail routes, SMS routes, uplinks) and
    the name problems of each section (`sinks`, `notify.webhooks`, `notify.email`, `notify.sms`, `uplinks`)."""
    problems: dict[str, list[str]] = {"sinks": [], "notify.webhooks": [], "notify.email": [], "notify.sms": [],
                                   "uplinks": []}
    sinks: dict[str, int] = {}
    for i, s in enumerate(cfg.sinks):
        if s.name in sinks:
            problems["sinks"].append(f"sinks[{i}].name: duplicate sink name {s.name!r} (also sinks[{sinks[s.name]}])")
        sinks.setdefault(s.name, i)
    brokers: dict[tuple[str, int, str], int] = {}
    for i, s in enumerate(cfg.sinks):
        if s.type in ("mqtt", "homeassistant"):
            key = (s.host, s.effective_port, s.topic_prefix)
            if key in brokers and "homeassistant" in (s.type, cfg.sinks[brokers[key]].type):
                problems["sinks"].append(
                    f"sinks[{i}]: the same broker and topic_prefix as sinks[{brokers[key]}]; a homeassistant sink "
                    "already publishes the native contract there: keep one of the two")
            brokers.setdefault(key, i)
    taken = {name: f"sinks[{i}]" for name, i in sinks.items()}
    for i, u in enumerate(cfg.uplinks):
        if u.name in taken:
            problems["uplinks"].append(
                f"uplinks[{i}].name: {u.name!r} is already the name of {taken[u.name]}; every sink and uplink needs "
                "its own name (it names its cursor in the log)")
        taken.setdefault(u.name, f"uplinks[{i}]")
    notify: list[tuple[str, Sequence[Route], str]] = [("notify.webhooks", cfg.notify.webhooks, "webhook"),
                                                      ("notify.email", cfg.notify.email, "e-mail route"),
                                                      ("notify.sms", cfg.notify.sms, "SMS route")]
    for section, routes, what in notify:
        first: dict[str, int] = {}
        for i, r in enumerate(routes):
            if r.name in first:
                problems[section].append(f"{section}[{i}].name: duplicate {what} {r.name!r}")
            if r.name in taken:
                other = taken[r.name].split("[", 1)[0]
                problems[section].append(
                    f"{section}[{i}].name: {r.name!r} is also a name in {other} (each is a cursor in the log): "
                    "rename one")
            first.setdefault(r.name, i)
        taken.update({name: f"{section}[{i}]" for name, i in first.items() if name not in taken})
    consumers = [Consumer(s.name, f"sinks[{i}]") for i, s in enumerate(cfg.sinks)]
    consumers += [Consumer(h.name, f"notify.webhooks[{i}]") for i, h in enumerate(cfg.notify.webhooks)]
    consumers += [Consumer(m.name, f"notify.email[{i}]") for i, m in enumerate(cfg.notify.email)]
    consumers += [Consumer(m.name, f"notify.sms[{i}]") for i, m in enumerate(cfg.notify.sms)]
    consumers += [Consumer(u.name, f"uplinks[{i}]") for i, u in enumerate(cfg.uplinks)]
    return consumers, problems
