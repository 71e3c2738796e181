"""`plume-sim SITE` and `plume run SITE` as processes, reporting to the platform simulator.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from plume_sim.platform import PlatformSim

from .helpers import MN, PW, free_port
from .test_e2e import SITE


def script(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


async def test_plume_run_reports_2011_and_2081_and_never_logs_the_password(tmp_path: Path) -> None:
    async with PlatformSim(pw=PW, mn=MN) as city:
        path = tmp_path / "site.yaml"
        path.write_text(SITE.format(tmp=tmp_path, sim_port=free_port(), city_port=city.port,
                                    province_port=free_port(), mn=MN, pw=PW), encoding="utf-8")
        sim_out, gw_out = open(tmp_path / "sim.out", "wb"), open(tmp_path / "gw.out", "wb")  # noqa: SIM115
        sim = subprocess.Popen([script("plume-sim"), str(path), "--quiet"], stdout=sim_out, stderr=subprocess.STDOUT,
                               start_new_session=True)
        gw: subprocess.Popen[bytes] | None = None
        try:
            gw = subprocess.Popen([sys.executable, "-m", "gateway.cli_run", str(path), "--log-level", "debug"],
                                  stdout=gw_out, stderr=subprocess.STDOUT, start_new_session=True)
            await city.wait_for(lambda r: r.cn == "2011" and r.answered == "9014", count=3, timeout=30)
            assert next(p.cn for p in city.packets()) == "2081"
            assert city.errors == []
            os.kill(gw.pid, signal.SIGTERM)
            assert gw.wait(timeout=15) == 0
        finally:
            for proc in (gw, sim):
                if proc is not None and proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
            sim_out.close()
            gw_out.close()
        text = (tmp_path / "gw.out").read_text(errors="replace")
        assert "hj212[city]" in text and PW not in text
