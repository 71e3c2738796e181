"""`plume-sim` and `plume run` as processes for a site with the cockpit enabled on a free loopback port."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from gateway.cockpit.auth import hash_password
from tests.pipeline.helpers import Proc, gateway_cmd, read_truth, sim_cmd, sim_control
from tests.pipeline.servers import free_port, wait_for

PASSWORD = "correct horse battery"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "cockpit-screenshots"  # gitignored; kept after the run for people to look at

SITE = """\
site:
  id: cockpit-site
  name: 河畔工地 Riverside
  timezone: {timezone}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
devices:
  - {{name: dust-1, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 0.5, timeout_s: 0.3}}
  - {{name: so2-1, bus: lan, address: 2, profile: so2-analyzer-cdab, poll_interval_s: 0.5, timeout_s: 0.3,
     backoff_max_s: 2}}
  - {{name: stack-1, bus: lan, address: 3, profile: cems-analyzer, poll_interval_s: 0.5, timeout_s: 0.3}}
store:
  dir: {tmp}/log
  commit_interval_ms: 100
rules:
  - {{id: offline, type: offline, after_s: 1}}
cockpit:
  enabled: true
  port: {cockpit_port}
  password_hash: "{password_hash}"
{sinks}
"""

MQTT_SINK = """\
sinks:
  - {{type: mqtt, name: broker, host: 127.0.0.1, port: {port}, reconnect_min_s: 0.1, reconnect_max_s: 0.5}}
"""


class CockpitRig:
    def __init__(self, tmp: Path, procs: Callable[..., Proc], *, mqtt_port: int | None = None,
                 timezone: str = "Asia/Shanghai"):
        self.tmp = tmp
        self.procs = procs
        self.truth = tmp / "truth.jsonl"
        self.control_port = free_port()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.site = tmp / "site.yaml"
        sinks = MQTT_SINK.format(port=mqtt_port) if mqtt_port is not None else ""
        self.site.write_text(SITE.format(tmp=tmp, sim_port=free_port(), cockpit_port=self.port, timezone=timezone,
                                         password_hash=hash_password(PASSWORD), sinks=sinks), encoding="utf-8")
        self.log_file = tmp / "log" / "log.sqlite"
        self.sim: Proc | None = None
        self.gateway: Proc | None = None

    def start(self) -> CockpitRig:
        self.sim = self.procs(sim_cmd(self.site, self.truth, "--control", f"127.0.0.1:{self.control_port}"),
                              self.tmp / "sim.out")
        self.sim.wait_output("ready:")
        self.gateway = self.procs(gateway_cmd(self.site), self.tmp / "gateway.out")
        self.gateway.wait_output("running:")
        return self

    def fault(self, device: str, fault: str | None) -> None:
        sim_control(self.control_port, device, fault)

    def served(self) -> dict[str, dict[str, list[tuple[int, object]]]]:
        return read_truth(self.truth) if self.truth.exists() else {}

    def login_client(self) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=10)
        r = c.post("/api/login", json={"password": PASSWORD})
        assert r.status_code == 200, r.text
        return c

    def stop(self) -> None:
        assert self.gateway is not None and self.sim is not None
        assert self.gateway.terminate() == 0, self.gateway.output()[-2000:]
        self.sim.terminate()


def login(browser: Any, rig: CockpitRig, password: str = PASSWORD) -> None:
    from tests.cockpit.browser import wait_until

    browser.get(rig.url + "/")
    wait_until(browser, lambda b: b.find_elements("id", "password"), what="the login form")
    browser.find_element("id", "password").send_keys(password)
    browser.find_element("id", "login").click()


def page_devices(browser: Any) -> list[dict[str, Any]]:
    """What the overview shows, read in one go (the page may redraw between two Selenium calls)."""
    raw = browser.execute_script("""
        return JSON.stringify(Array.from(document.querySelectorAll('section.device')).map(s => ({
          device: s.dataset.device, state: s.dataset.state, last_poll: Number(s.dataset.lastPoll),
          badge: s.querySelector('.state').textContent,
          values: Array.from(s.querySelectorAll('tr[data-channel]')).map(r => ({
            channel: r.dataset.channel, value: r.dataset.value, flag: r.dataset.flag,
            shown: r.querySelector('td.v').textContent}))})));""")
    return list(json.loads(raw))


__all__ = ["PASSWORD", "SCREENSHOTS", "CockpitRig", "login", "page_devices", "wait_for"]
