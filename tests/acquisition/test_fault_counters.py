"""Faults are visible: bad frames, resyncs, skipped polls and exception answers of each device reach the health
snapshot (published on MQTT as is), the InfluxDB health points and Prometheus /metrics, served for real here."""

from __future__ import annotations

import asyncio
import re
import time

from plume_sim import Simulator

from gateway.acquisition.poller import Acquisition
from gateway.health import HealthMonitor, serve_metrics
from gateway.localservers import free_port, loopback_http
from gateway.sinks.lineproto import health_lines
from gateway.store.log import DurableLog

TCP_BUS = {"name": "lan", "type": "tcp", "host": "127.0.0.1", "port": "{port}"}
UART = {"name": "uart", "type": "serial", "port": "{tmp}/ttyPMS"}
FAST = {"poll_interval_s": 0.1, "timeout_s": 0.2, "retries": 0, "backoff_max_s": 0.4}


async def test_bad_frames_resyncs_and_skipped_polls_reach_health_mqtt_influx_and_metrics(make_site, tmp_path):
    site = make_site([TCP_BUS, UART], [
        {"name": "garbled", "bus": "lan", "address": 1, "profile": "dust-monitor", **FAST},
        {"name": "dead", "bus": "lan", "address": 2, "profile": "dust-monitor", **FAST},
        {"name": "pm", "bus": "uart", "profile": "pms5003", "poll_interval_s": 0.2},
    ])
    async with Simulator(site, pace=False, frame_period_s=0.05, faults=["garbled:short", "dead:dead", "pm:crc"]):
        acq = Acquisition(site, lambda r: None)
        task = asyncio.create_task(acq.run())
        deadline = time.monotonic() + 15
        h = acq.health()
        while not (h["garbled"].bad_frames >= 2 and h["dead"].skipped >= 2 and h["pm"].bad_frames >= 2):
            assert time.monotonic() < deadline and not task.done(), h
            await asyncio.sleep(0.05)
        lg = DurableLog(tmp_path / "log.sqlite")
        await lg.open([])
        port = free_port()
        stop = serve_metrics(HealthMonitor(site.id, lg, [], lambda: acq), port)
        try:
            snap = await HealthMonitor(site.id, lg, [], lambda: acq).snapshot()
            url = f"http://127.0.0.1:{port}/metrics"
            text = await asyncio.to_thread(lambda: loopback_http().get(url, timeout=5).text)
        finally:
            stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await lg.close()
    devices = snap["devices"]
    assert devices["garbled"]["bad_frames"] >= 2
    assert devices["dead"]["skipped"] >= 2
    assert devices["pm"]["bad_frames"] >= 2 and "resyncs" in devices["pm"]
    influx = "\n".join(health_lines(snap, 1000))
    assert re.search(r"plume_device,site=test-site,device=garbled \S*bad_frames=[1-9]", influx), influx
    assert re.search(r"plume_device,site=test-site,device=dead \S*skipped=[1-9]", influx), influx

    def metric(name: str, device: str) -> float:
        m = re.search(rf'^{name}\{{[^}}]*device="{device}"[^}}]*\}} (\S+)$', text, re.M)
        assert m, (name, device, text)
        return float(m.group(1))

    assert metric("plume_device_bad_frames_total", "garbled") >= 2
    assert metric("plume_device_bad_frames_total", "pm") >= 2
    assert metric("plume_device_skipped_polls_total", "dead") >= 2
    assert metric("plume_device_resyncs_total", "pm") >= 0
    assert metric("plume_device_exception_answers_total", "garbled") == 0
