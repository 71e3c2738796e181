"""The audit trail (issue #11): platform commands, operator commands, configuration load, start and stop are
records in the durable log with time, source, parameters (secrets masked) and result; `plume audit` lists them
from the log of a real gateway run (in process, real TCP to the platform simulator)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from plume_sim.platform import PlatformSim

from tests.plume_cli import plume

from .helpers import MN, PW
from .test_clock import _gateway


async def test_every_command_and_change_is_audited_and_plume_audit_lists_it_with_secrets_masked(tmp_path: Path
                                                                                                 ) -> None:
    async with PlatformSim(pw=PW, mn=MN) as p:
        gw, stop, task = await _gateway(tmp_path, p.port)
        try:
            await p.wait_connected(MN)
            assert (await p.command("1062", {"RtdInterval": 10})).exe_rtn == 3
            assert (await p.command("1061", pw="Wr0ng1")).qn_rtn == 3
            assert (await p.command("1072", {"NewPW": "K7m2Qx"})).exe_rtn == 1
            assert gw.command({"type": "maintenance", "on": True, "by": "li.wei", "source": "mqtt:broker"}) is None
            assert gw.command({"type": "ack", "source": "mqtt:broker"}) is not None  # refused: still audited
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    site = tmp_path / "site.yaml"
    done = plume("audit", site, "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "K7m2Qx" not in done.stdout and PW not in done.stdout
    got = [json.loads(line) for line in done.stdout.splitlines()]
    actions = [e["action"] for e in got]
    assert actions[:2] == ["config load", "gateway start"] and actions[-1] == "gateway stop"
    by_action = {e["action"]: e for e in got}
    rtd = by_action["hj212 1062 set real-time data interval"]
    assert rtd["params"] == {"RtdInterval": "10"} and rtd["result"] == "QnRtn 1, ExeRtn 3"
    assert rtd["actor"]["kind"] == "hj212" and MN in rtd["actor"]["who"] and str(p.port) in rtd["actor"]["address"]
    assert by_action["hj212 1061 get real-time data interval"]["result"] == "QnRtn 3"
    pw = by_action["hj212 1072 set logger password"]
    assert pw["params"] == {"NewPW": "******"} and pw["result"] == "QnRtn 1, ExeRtn 1"
    maint = by_action["command maintenance"]
    assert maint["actor"] == {"kind": "mqtt", "who": "li.wei", "address": "broker"} and maint["result"] == "accepted"
    assert by_action["command ack"]["result"].startswith("refused: acknowledge needs alarm_id")
    assert all(e["local_time"].endswith("CST") for e in got)  # the site's local time, with its zone

    text = plume("audit", site, "--since", "1h", timeout=60)
    assert text.returncode == 0 and "hj212 1072 set logger password" in text.stdout and "NewPW=******" in text.stdout
    bad = plume("audit", site, "--since", "yesterday", timeout=60)
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr


async def test_the_disk_cap_drops_readings_but_keeps_the_audit_trail(tmp_path: Path) -> None:
    from gateway.audit import Actor, audit, entries
    from gateway.core.model import ChannelValue, DeviceReading
    from gateway.store.config import StoreConfig
    from gateway.store.log import DurableLog

    lg = DurableLog(tmp_path / "log.sqlite", StoreConfig(dir=str(tmp_path), max_disk_mb=0.2, durability="normal"))
    await lg.open(["tsdb"])
    audit(lg, Actor("hj212", "city MN 1"), "hj212 1012 set logger time", {"SystemTime": "20260301120000"}, "ok")
    for i in range(6000):
        lg.append(DeviceReading("s", "dust-1", "dust", 1_767_225_600_000 + i * 200,
                                {"pm10": ChannelValue(float(i % 97), "ug/m3")}))
    audit(lg, Actor("local", "li"), "command maintenance", {"on": True}, "accepted")
    await lg.flush()
    await lg.maintain()
    assert lg.first_id > 2, "the cap dropped the oldest rows, the first audit record's among them"
    assert lg.stats().used_bytes <= 0.2e6
    assert lg.carried >= 1 and lg.consumer("tsdb").dropped == lg.first_id - 1  # counted, never silent
    await lg.close()
    got = entries(tmp_path / "log.sqlite")
    assert sorted(e["action"] for e in got) == ["command maintenance", "hj212 1012 set logger time"]
