"""`plume run` as a process against `plume-sim` serving a device whose every FC 1 answer has byte count 0 (the
answer that used to kill every bus with an IndexError): the gateway keeps running and polling its neighbours, the
bad answers are counted in /metrics, nothing is a traceback, and SIGTERM stops it cleanly."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from .helpers import Proc, gateway_cmd, sim_cmd
from .servers import free_port, loopback_http, wait_for

SITE = """\
site: {{id: faults-site}}
buses:
  - {{name: lan, type: tcp, host: 127.0.0.1, port: {sim_port}}}
  - {{name: rs485, type: rtu, port: "{tmp}/ttyRS485", baudrate: 19200}}
devices:
  - name: bad
    bus: lan
    address: 5
    kind: dust
    poll_interval_s: 0.2
    timeout_s: 0.3
    registers:
      - {{channel: fan_on, address: 0, function: 1, type: bits, sim: {{constant: 1}}}}
  - {{name: good, bus: lan, address: 1, profile: dust-monitor, poll_interval_s: 0.2}}
  - {{name: wind, bus: rs485, address: 1, profile: cwt-dust-weather, poll_interval_s: 0.2}}
store:
  dir: {tmp}/log
"""


def metric(text: str, name: str, device: str) -> float:
    m = re.search(rf'^{name}\{{[^}}]*device="{device}"[^}}]*\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_byte_count_0_answer_does_not_stop_plume_run(tmp_path: Path, procs: Callable[..., Proc]) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(sim_port=free_port(), tmp=tmp_path))
    sim = procs(sim_cmd(site, tmp_path / "truth.jsonl", "--fault", "bad:bytecount:0"), tmp_path / "sim.out")
    sim.wait_output("ready:")
    port = free_port()
    gw = procs(gateway_cmd(site, "--metrics-port", str(port)), tmp_path / "gateway.out")
    gw.wait_output("running:")

    def scraped() -> str:
        return loopback_http().get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    def enough() -> bool:
        assert gw.running(), gw.output()[-3000:]
        text = scraped()
        return (metric(text, "plume_device_bad_frames_total", "bad") >= 3
                and metric(text, "plume_device_polls_total", "good") >= 10
                and metric(text, "plume_device_polls_total", "wind") >= 10)

    wait_for(enough, 30, "bad answers counted while the neighbours are polled")
    text = scraped()
    assert metric(text, "plume_device_poll_failures_total", "good") == 0
    assert metric(text, "plume_device_poll_failures_total", "wind") == 0
    assert gw.terminate() == 0
    out = gw.output()
    assert "Traceback" not in out and "CRITICAL" not in out, out[-3000:]
