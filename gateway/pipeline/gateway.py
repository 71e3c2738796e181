"""The running gateway of one site: acquisition -> durable log -> consumers, in one event loop.

    source (acquisition) --ingest (gateway.pipeline.ingest: quality + CEMS)--> DurableLog.append
    DurableLog --commit--> each consumer with its own cursor (gateway.pipeline.consumers: MQTT, InfluxDB,
                           HJ 212 uplinks, webhooks)
               --commit--> the regulatory stage (gateway.pipeline.stage: windows, alarms, actuation; its records
                           go back into the log)
               --commit--> on_commit listeners (plume demo)

Shutdown (stop event set by SIGTERM/SIGINT): acquisition stops, the buffer is committed, sinks get `grace_s` to
deliver what is committed (then they are cancelled; the rest stays in the log for the next start), cursors are
committed and the log is closed. A crashing sink is restarted with backoff; it never stops acquisition or the
other sinks. Acquisition or the log failing is fatal (a supervisor restarts the process; nothing committed is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from gateway.alarms.records import AlarmRecord
from gateway.audit import Actor, audit
from gateway.config import ConfigError
from gateway.core.clock import CLOCK
from gateway.core.model import DeviceReading
from gateway.health import HealthMonitor, serve_metrics
from gateway.pipeline.consumers import build_consumers
from gateway.pipeline.ingest import ingest_path
from gateway.pipeline.stage import RegulatoryStage
from gateway.sinks.backoff import Backoff
from gateway.sinks.base import DeliveredHook, Sink
from gateway.site.model import Site
from gateway.store.log import DurableLog, LogLockedError
from gateway.store.records import LogRecord
from gateway.systemd_notify import Notifier

log = logging.getLogger("plume.app")


class Source(Protocol):
    """What produces readings: the acquisition (or a simulator-free stand-in in benchmarks)."""

    async def run(self) -> None: ...

    def health(self) -> Mapping[str, Any]: ...


SourceFactory = Callable[[Site, Callable[[DeviceReading], None]], Source]


class FatalError(Exception):
    """The gateway cannot run; `str()` is the one line to show, `code` the exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def default_source(site: Site, emit: Callable[[DeviceReading], None]) -> Source:
    from gateway.acquisition.poller import Acquisition

    acq: Source = Acquisition(site, emit)
    return acq


class Gateway:
    """One site's gateway. `await Gateway(site).run(stop)` runs until `stop` is set.

    - `log_path`: where the durable log lives (default: the site's store section).
    - `with_sinks=False`: no delivery at all (e.g. `plume demo`); readings are still committed to the log.
    - `source`: what produces readings (default: the acquisition polling the site's devices).
    - `on_commit(callback)`: `callback(records)` runs on the loop after every commit, with the LogRecords
      just made durable, one type per kind (gateway.store.records): ReadingRecord (seq, DeviceReading),
      AggregateRecord, AlarmRecord, ActuationRecord, CommandRecord (each with its `payload`).
    - `on_alarm(callback)`: `callback(record)` for every committed AlarmRecord (`record.payload.event` is the
      AlarmEvent, `record.payload.active` the alarm's state after it); `stage.alarms.active()` lists what is
      active now.
    - `extra_sinks`: more log consumers built in code (e.g. an HJ 212 uplink): cursor name -> factory(log); each
      gets its own cursor, health entry and supervision like the configured sinks.
    """

    def __init__(
        self,
        site: Site,
        *,
        log_path: Path | None = None,
        with_sinks: bool = True,
        source: SourceFactory | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        grace_s: float = 3.0,
        health_interval_s: float | None = None,
        on_delivered: DeliveredHook | None = None,
        extra_sinks: Mapping[str, Callable[[DurableLog], Sink]] | None = None,
    ):
        self.site = site
        self.extra_sinks = dict(extra_sinks or {})
        self.log_path = log_path or site.config.store.log_path(site.path)
        self.with_sinks = with_sinks
        self._source_factory = source or default_source
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.grace_s = grace_s
        self.health_interval_s = health_interval_s
        self._on_delivered = on_delivered
        self._listeners: list[Callable[[list[LogRecord]], None]] = []
        self._alarm_listeners: list[Callable[[AlarmRecord], None]] = []
        self.stage: RegulatoryStage | None = None
        self.log: DurableLog | None = None
        self.sinks: list[Sink] = []
        self.source: Source | None = None
        self.monitor: HealthMonitor | None = None
        self.started = asyncio.Event()
        self.reloading = False  # set before `stop` when a new configuration replaces this one (SIGHUP)

    def on_commit(self, callback: Callable[[list[LogRecord]], None]) -> None:
        self._listeners.append(callback)
        if self.log is not None:
            self.log.on_commit(callback)

    def on_alarm(self, callback: Callable[[AlarmRecord], None]) -> None:
        self._alarm_listeners.append(callback)
        if self.stage is not None:
            self.stage.on_alarm(callback)

    def command(self, cmd: dict[str, Any]) -> str | None:
        """An operator command (acknowledge, maintenance, override; see RegulatoryStage.command)."""
        if self.stage is None or self.log is None:
            return "the gateway is not running"
        return self.stage.command(cmd)

    async def health(self) -> dict[str, Any]:
        if self.monitor is None:
            return {}
        return await self.monitor.snapshot()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set. Raises ConfigError (exit 2) or FatalError (exit 1)."""
        site = self.site
        plans = build_consumers(site) if self.with_sinks else []
        clash = sorted({p.name for p in plans} & set(self.extra_sinks))
        if clash:
            raise ConfigError([f"sinks: name {n!r} is also used by a built-in consumer" for n in clash])
        lg = DurableLog(self.log_path, site.config.store)
        try:
            await lg.open([*(p.name for p in plans), *self.extra_sinks])
        except LogLockedError as exc:
            raise FatalError(f"{exc}: stop the other gateway, or give this site its own store.dir") from None
        except OSError as exc:
            raise FatalError(f"cannot open the log {self.log_path}: {exc.strerror or exc}") from None
        self.log = lg
        CLOCK.attach(self.log_path.parent / "clock.json", set_system=site.config.clock.set_system)
        me = Actor("local", _user(), f"pid {os.getpid()}")
        try:
            digest = hashlib.sha256(site.path.read_bytes()).hexdigest()[:16]
        except OSError:
            digest = "unreadable"
        audit(lg, me, "config load", {"file": str(site.path), "sha256": digest}, site=site.id)
        audit(lg, me, "gateway start", {"devices": len(site.devices), "consumers": len(plans)}, site=site.id)
        stop_metrics: Callable[[], None] | None = None
        cockpit: Any = None
        tasks: list[asyncio.Task[Any]] = []
        try:
            self.sinks = [p.make(lg, self._on_delivered) for p in plans]
            self.sinks += [make_extra(lg) for make_extra in self.extra_sinks.values()]
            source: Source | None = None

            async def write(device: str, function: int, address: int, value: int) -> str | None:
                writer = getattr(source, "write", None)
                if writer is None:
                    return "this source cannot write to devices"
                result: str | None = await writer(device, function, address, value)
                return result

            stage = self.stage = RegulatoryStage(site, writer=write)
            stage.sink_problems = lambda: {s.name: s.status.problem for s in self.sinks}
            for acb in self._alarm_listeners:
                stage.on_alarm(acb)
            lg.on_commit(stage.on_commit)
            for cb in self._listeners:
                lg.on_commit(cb)
            try:
                await stage.restore(lg)
            except Exception:  # a bug here must not stop the data: windows/alarms start afresh
                log.exception("regulatory stage: restoring from the log failed; windows and alarms start afresh")
                stage.go_live()
            self.source = source = self._source_factory(site, ingest_path(stage.prepare, lg.append))
            for s in self.sinks:
                set_handler = getattr(s, "set_command_handler", None)
                if set_handler is not None:
                    set_handler(stage.command)
            info = site.config.site
            location = ((info.latitude, info.longitude, info.name)
                        if info.latitude is not None and info.longitude is not None else None)
            monitor = self.monitor = HealthMonitor(site.id, lg, self.sinks, lambda: source, stage=stage,
                                                   location=location)
            for s in self.sinks:
                s.set_health(monitor.snapshot, self.health_interval_s)
            if self.metrics_port is not None:
                try:
                    stop_metrics = serve_metrics(monitor, self.metrics_port, self.metrics_host)
                except OSError as exc:
                    raise FatalError(f"cannot serve metrics on {self.metrics_host}:{self.metrics_port}: "
                                     f"{exc.strerror or exc}") from None
                log.info("metrics: http://%s:%d/metrics", self.metrics_host, self.metrics_port)
            if site.config.cockpit.enabled:  # the local web page and the API of `plume status` (gateway.cockpit)
                from gateway.cockpit.server import Cockpit
                cockpit = Cockpit(self)
                try:
                    await cockpit.start()
                except OSError as exc:
                    raise FatalError(f"cannot serve the cockpit on {cockpit.cfg.host}:{cockpit.cfg.port}: "
                                     f"{exc.strerror or exc}") from None
            committer = asyncio.create_task(lg.run(), name="log.committer")
            acquisition = asyncio.create_task(source.run(), name="acquisition")
            stage_task = asyncio.create_task(stage.run(), name="stage")
            sink_tasks = [asyncio.create_task(self._supervise(s), name=f"sink[{s.name}]") for s in self.sinks]
            tasks = [committer, acquisition, stage_task, *sink_tasks]
            stopper = asyncio.create_task(stop.wait(), name="stop")
            log.info("gateway %s running: %d devices, %d sinks (%s), log %s", site.id,
                     sum(1 for d in site.devices if d.config.enabled), len(self.sinks),
                     ", ".join(f"{s.status.type}:{s.name}" for s in self.sinks) or "none", self.log_path)
            self.started.set()
            # systemd (Type=notify, WatchdogSec): ready now; alive while the log commits
            notifier = Notifier.from_env()
            notifier.ready(f"{site.id}: {len(self.sinks)} sinks, log {self.log_path}")
            if notifier.watchdog_interval_s is not None:
                tasks.append(asyncio.create_task(notifier.watchdog_loop(lambda: not committer.done()),
                                                 name="systemd.watchdog"))
            watched = {stopper, committer, acquisition}
            failure: BaseException | None = None
            what = "acquisition"
            try:
                while not stop.is_set() and failure is None:
                    done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                    if committer in done:
                        what = "the log"
                        failure = committer.exception() or RuntimeError("the log committer ended on its own")
                    elif acquisition in done:
                        failure = acquisition.exception()
                        if failure is None:  # nothing to poll: keep delivering what the log holds
                            log.warning("acquisition has nothing (more) to poll; sinks keep delivering the log")
                            watched.discard(acquisition)
            finally:
                stopper.cancel()
            if self.reloading:
                notifier.notify("RELOADING=1", "STATUS=reloading the site file")
            else:
                notifier.stopping("stopping: committing and delivering what is committed")
            await self._shutdown(acquisition, committer, sink_tasks, stage_task)
            if failure is not None:
                raise FatalError(f"{what} failed: {failure}") from failure
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if stop_metrics is not None:
                stop_metrics()
            audit(lg, me, "gateway stop", {"committed_this_run": lg.committed_records}, site=site.id)
            if cockpit is not None:
                await cockpit.stop()
            await lg.close()

    async def _shutdown(self, acquisition: asyncio.Task[Any], committer: asyncio.Task[Any],
                        sink_tasks: list[asyncio.Task[None]], stage_task: asyncio.Task[Any]) -> None:
        assert self.log is not None
        lg = self.log
        drain = getattr(self.source, "drain", None)
        if drain is not None and not acquisition.done():
            # the polls in flight finish (their answers were served: they are readings to keep), no new one starts
            try:
                async with asyncio.timeout(self.grace_s):
                    await drain()
            except TimeoutError:
                log.info("stopping: a poll in flight did not finish within %.1f s", self.grace_s)
        acquisition.cancel()
        stage_task.cancel()
        await asyncio.gather(acquisition, stage_task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await lg.flush()
        lg.begin_close()
        if sink_tasks:
            _, pending = await asyncio.wait(sink_tasks, timeout=self.grace_s)
            if pending:
                left = {s.name: lg.depth(s.consumer) for s in self.sinks}
                log.info("stopping: sinks did not finish within %.1f s; undelivered readings stay in the log (%s)",
                         self.grace_s, ", ".join(f"{k}: {v}" for k, v in left.items()))
            for t in pending:
                t.cancel()
            await asyncio.gather(*sink_tasks, return_exceptions=True)
        committer.cancel()
        await asyncio.gather(committer, return_exceptions=True)
        delivered = ", ".join(f"{s.name}: {s.consumer.delivered}" for s in self.sinks)
        log.info("stopped: %d readings committed this run%s", lg.committed_records,
                 f"; delivered {delivered}" if delivered else "")

    async def _supervise(self, sink: Sink) -> None:
        """Run a sink; a bug in it is logged and the sink restarted, never taking the gateway down."""
        backoff = Backoff(1.0, 60.0)
        assert self.log is not None
        while True:
            try:
                await sink.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sink %s failed unexpectedly; restarting it", sink.name)
                if self.log.closing:
                    return
                await asyncio.sleep(backoff.next())
