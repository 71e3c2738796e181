"""Health of the gateway in one snapshot: devices (from acquisition), the log, every sink.

The same snapshot is published to MQTT (`{prefix}/{site}/health`), written to InfluxDB (`plume_device`,
`plume_sink`, `plume_log` measurements, built by gateway.sinks.lineproto) and served to Prometheus (`plume_*`
metrics, here). It is computed on demand, never on the hot path: counting costs nothing per reading beyond the
counters the stages keep anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from gateway.core.clock import CLOCK, now_ms
from gateway.core.secrets import redact
from gateway.sinks.base import SinkStatus
from gateway.store.log import Consumer, DurableLog

log = logging.getLogger("plume.health")
HEALTH_VERSION = 1


# per-device fault counters (acquisition's DeviceHealth): snapshot key -> Prometheus counter name and help
DEVICE_FAULT_COUNTERS = {
    "bad_frames": ("plume_device_bad_frames", "Answers or sensor frames that arrived invalid (CRC, framing, checksum)"),
    "resyncs": ("plume_device_resyncs", "Times a frame sensor's parser threw bytes away to find the next frame"),
    "skipped": ("plume_device_skipped_polls", "Scheduled polls not made (device backed off, bus restarting)"),
    "exceptions": ("plume_device_exception_answers", "Polls the device answered only with Modbus exceptions"),
    "bus_restarts": ("plume_device_bus_restarts", "Restarts of the device's bus after an unexpected error in it"),
}


class HasStatus(Protocol):
    name: str
    status: SinkStatus
    consumer: Consumer


class HealthSource(Protocol):
    def health(self) -> Mapping[str, Any]: ...


class HealthMonitor:
    def __init__(self, site_id: str, log_: DurableLog, sinks: Sequence[HasStatus],
                 source: Callable[[], HealthSource | None] | None = None, stage: Any = None,
                 location: tuple[float, float, str] | None = None):
        self.site_id = site_id
        self.location = location  # (lat, lon, name): the overview board's map
        self.stage = stage
        self.log = log_
        self.sinks = sinks
        self._source = source
        self.started = now_ms() / 1000
        self._started_mono = time.monotonic()  # uptime does not jump when a platform corrects the clock

    def devices(self) -> dict[str, dict[str, Any]]:
        src = self._source() if self._source is not None else None
        if src is None:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for name, h in src.health().items():
            polls = int(getattr(h, "polls", 0))
            ok = int(getattr(h, "ok", 0))
            latency = getattr(h, "last_latency_ms", None)
            out[name] = {
                "bus": getattr(h, "bus", ""),
                "polls": polls,
                "ok": ok,
                "failures": int(getattr(h, "failures", polls - ok)),
                "missed_slots": int(getattr(h, "missed_slots", 0)),
                "success_rate": round(ok / polls, 4) if polls else None,
                "online": bool(getattr(h, "online", False)),
                "latency_ms": None if latency is None else round(float(latency), 2),
                "last_error": redact(str(getattr(h, "last_error", ""))),
                **{key: int(getattr(h, key, 0)) for key in DEVICE_FAULT_COUNTERS},
            }
        return out

    async def snapshot(self) -> dict[str, Any]:
        now = now_ms() / 1000
        sinks: dict[str, dict[str, Any]] = {}
        for s in self.sinks:
            c = s.consumer
            oldest = await self.log.oldest_pending_ts(c)
            p50, p95, p99, pmax = s.status.latency_summary()
            sinks[s.name] = {
                "type": s.status.type,
                "target": redact(s.status.target),
                "connected": s.status.connected,
                "depth": self.log.depth(c),
                "age_s": None if oldest is None else round(max(0.0, now - oldest / 1000), 3),
                "delivered": c.delivered,
                "delivered_values": c.delivered_values,
                "dropped": c.dropped,
                "rejected": c.rejected,
                "reconnects": s.status.reconnects,
                "failures": s.status.failures,
                "latency_p50_ms": None if p50 is None else round(p50, 1),
                "latency_p95_ms": None if p95 is None else round(p95, 1),
                "latency_p99_ms": None if p99 is None else round(p99, 1),
                "latency_max_ms": None if pmax is None else round(pmax, 1),
                "last_error": redact(s.status.last_error),
                "problem": redact(s.status.problem),
            }
        st = self.log.stats()
        extra: dict[str, Any] = {}
        if self.location is not None:
            lat, lon, name = self.location
            extra["location"] = {"lat": lat, "lon": lon, "name": name}
        if self.stage is not None:
            active = self.stage.alarms.active()
            extra["alarms"] = {"active": len(active), "ids": [a.alarm_id for a in active],
                               "late_readings": self.stage.windows.late, **self.stage.counters}
        return {
            "v": HEALTH_VERSION,
            "site": self.site_id,
            "ts": int(now * 1000),
            "uptime_s": round(time.monotonic() - self._started_mono, 1),
            "devices": self.devices(),
            "sinks": sinks,
            "log": {
                "readings": max(0, st.committed_id - st.first_id + 1),
                "bytes": st.used_bytes,
                "committed": st.committed_records,
                "commits": st.commits,
                "buffered": st.buffered,
                "commit_failures": self.log.commit_failures,
                "dropped": st.dropped_total,
                "lost": st.lost,
                "max_buffered": st.max_buffered,
                "disk_full": self.log.disk_full,
                "disk_free_bytes": st.disk_free,
            },
            "clock": CLOCK.state(),
            **extra,
        }


class PrometheusCollector:
    """prometheus-client collector: takes a fresh snapshot from the event loop at every scrape."""

    def __init__(self, monitor: HealthMonitor, loop: asyncio.AbstractEventLoop):
        self.monitor = monitor
        self.loop = loop

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        try:
            snap = asyncio.run_coroutine_threadsafe(self.monitor.snapshot(), self.loop).result(timeout=5)
        except Exception as exc:
            log.warning("metrics: no snapshot: %s", str(exc) or type(exc).__name__)
            return
        site = snap["site"]

        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=["site", *labels])

        def counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=["site", *labels])

        polls = counter("plume_device_polls", "Polls of the device since start", ["device"])
        fails = counter("plume_device_poll_failures", "Failed polls since start", ["device"])
        rate = gauge("plume_device_poll_success_ratio", "Successful polls / polls since start", ["device"])
        online = gauge("plume_device_online", "1 while the device answers", ["device"])
        lat = gauge("plume_device_poll_latency_ms", "Latency of the last poll", ["device"])
        missed = counter("plume_device_poll_slots_missed", "Scheduled poll slots skipped (overrun) since start",
                         ["device"])
        for name, d in snap["devices"].items():
            polls.add_metric([site, name], d["polls"])
            missed.add_metric([site, name], d["missed_slots"])
            fails.add_metric([site, name], d["failures"])
            if d["success_rate"] is not None:
                rate.add_metric([site, name], d["success_rate"])
            online.add_metric([site, name], 1.0 if d["online"] else 0.0)
            if d["latency_ms"] is not None:
                lat.add_metric([site, name], d["latency_ms"])
        yield from (polls, fails, rate, online, lat, missed)
        for key, (metric, doc) in DEVICE_FAULT_COUNTERS.items():
            fam = counter(metric, doc, ["device"])
            for name, d in snap["devices"].items():
                fam.add_metric([site, name], d.get(key, 0))
            yield fam

        depth = gauge("plume_sink_log_depth", "Readings committed and not yet delivered", ["sink"])
        age = gauge("plume_sink_log_age_seconds", "Age of the oldest undelivered reading", ["sink"])
        delivered = counter("plume_sink_delivered", "Readings delivered since start", ["sink"])
        values = counter("plume_sink_delivered_values", "Values delivered since start", ["sink"])
        dropped = counter("plume_sink_dropped", "Readings dropped by the disk cap before delivery (total)", ["sink"])
        rejected = counter("plume_sink_rejected", "Readings refused by the target as malformed (total)", ["sink"])
        reconnects = counter("plume_sink_reconnects", "Reconnections since start", ["sink"])
        problem = gauge("plume_sink_problem", "1 while the sink reports a standing problem (see health)", ["sink"])
        connected = gauge("plume_sink_connected", "1 while the target is reachable", ["sink"])
        p50 = gauge("plume_sink_latency_p50_ms", "Median poll-to-confirmation latency (recent)", ["sink"])
        p95 = gauge("plume_sink_latency_p95_ms", "95th percentile poll-to-confirmation latency (recent)", ["sink"])
        p99 = gauge("plume_sink_latency_p99_ms", "99th percentile poll-to-confirmation latency (recent)", ["sink"])
        pmax = gauge("plume_sink_latency_max_ms", "Longest poll-to-confirmation latency (recent)", ["sink"])
        for name, s in snap["sinks"].items():
            labels = [site, name]
            depth.add_metric(labels, s["depth"])
            age.add_metric(labels, s["age_s"] or 0.0)
            delivered.add_metric(labels, s["delivered"])
            values.add_metric(labels, s["delivered_values"])
            dropped.add_metric(labels, s["dropped"])
            rejected.add_metric(labels, s["rejected"])
            reconnects.add_metric(labels, s["reconnects"])
            problem.add_metric(labels, 1.0 if s.get("problem") else 0.0)
            connected.add_metric(labels, 1.0 if s["connected"] else 0.0)
            if s["latency_p50_ms"] is not None:
                p50.add_metric(labels, s["latency_p50_ms"])
                p95.add_metric(labels, s["latency_p95_ms"])
                p99.add_metric(labels, s["latency_p99_ms"])
                pmax.add_metric(labels, s["latency_max_ms"])
        yield from (depth, age, delivered, values, dropped, rejected, reconnects, problem, connected, p50, p95, p99,
                    pmax)

        lg = snap["log"]
        for key, doc in (("readings", "Readings held in the log"), ("bytes", "Bytes of the log holding data"),
                         ("buffered", "Readings waiting for the next commit"),
                         ("disk_free_bytes", "Free space on the log's file system")):
            if lg[key] is None:
                continue
            g = GaugeMetricFamily(f"plume_log_{key}", doc, labels=["site"])
            g.add_metric([site], lg[key])
            yield g
        for key, doc in (("committed", "Readings committed since start"), ("commits", "Transactions since start"),
                         ("commit_failures", "Failed commits since start"),
                         ("lost", "Readings refused while max_buffered waited for a commit (full disk)")):
            c = CounterMetricFamily(f"plume_log_{key}", doc, labels=["site"])
            c.add_metric([site], lg[key])
            yield c
        yield from alarm_metrics(site, snap.get("alarms"))


def alarm_metrics(site: str, alarms: Mapping[str, Any] | None) -> Iterator[Any]:
    """`plume_alarms_active` (count), `plume_alarm_active{rule,device,channel}` 1 per active alarm (an alarm id
    is rule/device/channel/start; `-` for an empty device or channel) and `plume_alarm_events_total`."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    if alarms is None:
        return
    count = GaugeMetricFamily("plume_alarms_active", "Alarms raised and not cleared now", labels=["site"])
    count.add_metric([site], alarms.get("active", 0))
    each = GaugeMetricFamily("plume_alarm_active", "1 for each alarm active now", labels=["site", "rule", "device",
                                                                                          "channel"])
    for alarm_id in alarms.get("ids", []):
        rule, device, channel, _start = str(alarm_id).rsplit("/", 3)
        each.add_metric([site, rule, "" if device == "-" else device, "" if channel == "-" else channel], 1.0)
    events = CounterMetricFamily("plume_alarm_events", "Alarm events (raised, cleared, ...) since start",
                                 labels=["site"])
    events.add_metric([site], alarms.get("alarm_events", 0))
    yield from (count, each, events)


def serve_metrics(monitor: HealthMonitor, port: int, host: str = "127.0.0.1") -> Callable[[], None]:
    """Serve /metrics on host:port (a daemon thread); returns a function that stops it."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(PrometheusCollector(monitor, asyncio.get_running_loop()))
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)

    return stop
