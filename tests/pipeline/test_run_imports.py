"""What a running `plume run` has imported (its start-up RSS is mostly the modules it imports): started as the
`plume` console script starts it, with an InfluxDB sink (its health points go through the httpx client), stopped
with SIGTERM; the child writes its module list at exit. Nothing here is timed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from .helpers import Proc
from .servers import InfluxDB, wait_for

# the console script's own lines (`plume = "gateway.cli:app"`), plus the module list written at exit
ENTRY = """
import atexit, sys
atexit.register(lambda: open({out!r}, "w").write("\\n".join(sorted(k for k, m in sys.modules.items() if m))))
from gateway.cli import app
sys.argv[0] = "plume"
sys.exit(app())
"""


def run_modules(tmp: Path, influxdb: InfluxDB, procs: Callable[..., Proc]) -> set[str]:
    influxdb.create_db()
    site = tmp / "site.yaml"
    site.write_text(f"site: {{id: imports}}\nstore: {{dir: '{tmp / 'log'}'}}\nsinks:\n"
                    f"  - {{type: influx, name: influx, url: '{influxdb.url}', database: plume, "
                    "health_interval_s: 1}\n")
    out = tmp / "modules.txt"
    gw = procs([sys.executable, "-c", ENTRY.format(out=str(out)), "run", str(site), "--log-level", "info"],
               tmp / "gw.log")
    wait_for(lambda: influxdb.count("plume_sink", "connected") > 0, 60, "a health point through the sink's client")
    assert gw.terminate() == 0, gw.output()
    return set(out.read_text().split())


def test_plume_run_imports_no_trio_even_where_it_is_installed(tmp_path: Path, influxdb: InfluxDB,
                                                              procs: Callable[..., Proc]) -> None:
    """httpcore imports trio whenever it is installed (here: selenium's dependency); the gateway never runs it."""
    modules = run_modules(tmp_path, influxdb, procs)
    assert "httpx" in modules and "httpcore" in modules  # the sink's client was built
    assert not {m for m in modules if m.split(".")[0] in ("trio", "outcome", "sortedcontainers")}


def test_plume_run_imports_no_rich(tmp_path: Path, influxdb: InfluxDB, procs: Callable[..., Proc]) -> None:
    """`plume run` comes through the whole command line (gateway.cli) but prints nothing with rich: rich's ~45
    modules are imported by the commands that print tables, not by the gateway."""
    modules = run_modules(tmp_path, influxdb, procs)
    assert "gateway.cli" in modules and "gateway.pipeline.gateway" in modules
    assert not {m for m in modules if m.split(".")[0] in ("rich", "pygments", "markdown_it")}
