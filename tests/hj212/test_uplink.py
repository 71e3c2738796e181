"""The uplink against the platform simulator over real TCP, with a real durable log: 2011 contents, 9014 waits and
resends, reconnects, back-fill after an outage, restarts without duplicates, two platforms at once."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from plume_sim.platform import PlatformSim

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.hj212.codec import split
from gateway.hj212.timefmt import time_text

from .helpers import MN, PW, TZ, free_port
from .uplink_rig import Rig, cp_dict, dust, stack, t0, uplink_yaml


def datatimes(p: PlatformSim, cn: str = "2011", acked: bool = False) -> list[str]:
    pkts = p.acked(cn) if acked else p.packets(cn)
    return [pk.cp.get("DataTime") or "" for pk in pkts]


def dt(ms: int) -> str:
    return time_text(ms, TZ)


async def test_2011_carries_the_latest_value_of_each_window_converted_with_flags_and_zs(tmp_path: Path) -> None:
    async with PlatformSim(pw=PW, mn=MN) as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port)).open()
        T = t0()
        await rig.append(dust(T + 100, pm10=70.0), stack(T + 200, flag=Flag.C), dust(T + 600, pm10=90.0))
        await rig.append(dust(T + 1100, pm10=None))  # the next window: the device did not answer
        last = await rig.append(dust(T + 2500))  # closes both windows (grace 0.5 s), opens a third
        await rig.delivered.until(lambda: len(p.acked("2011")) == 2, what="two 2011 packets acknowledged")
        first, second = p.acked("2011")
        assert (first.st, first.cn, first.pw, first.mn, first.flag) == ("39", "2011", PW, MN, 5)
        assert first.cp.text() == (
            f"&&DataTime={dt(T + 1000)};a34002-Rtd=0.09,a34002-Flag=N;a34004-Rtd=40.0,a34004-Flag=N;"
            "LA-Rtd=61.2,LA-Flag=N;a21026-Rtd=35.214,a21026-ZsRtd=41.5,a21026-Flag=C;a19001-Rtd=8.25,a19001-Flag=C&&")
        assert second.cp.text() == (f"&&DataTime={dt(T + 2000)};a34002-Flag=B;a34004-Flag=B;LA-Flag=B;"
                                    "a21026-Flag=B;a19001-Flag=B&&")  # the stack sent nothing in that second
        # the cursor stops just before the first reading of the window still open
        await rig.delivered.until(lambda: rig.acked("city") == last[0] - 1, what="cursor before the open window")
        assert p.errors == []
        await rig.close()


async def test_restart_sends_nothing_twice_and_completes_the_window_that_was_open(tmp_path: Path) -> None:
    async with PlatformSim() as p:
        text = uplink_yaml("city", p.port)
        rig = await Rig(tmp_path, text).open()
        await p.wait_for(lambda r: r.cn == "2081")  # the first start, with nothing older to send
        T = t0()
        await rig.append(*(dust(T + 100 + 1000 * i, pm10=10.0 + i) for i in range(4)))
        await rig.append(dust(T + 3700, pm10=99.0))  # window 4 is open at shutdown, with pm10 99
        await rig.delivered.until(lambda: len(p.acked("2011")) == 3, what="windows 1-3")
        await rig.close()

        rig = await Rig(tmp_path, text).open()
        await rig.append(dust(T + 2400, pm10=555.0))  # late for window 3, which was acknowledged: not sent again
        await rig.append(dust(T + 3050, pm10=5.0), dust(T + 3500, pm10=50.0), dust(T + 5000))
        await rig.delivered.until(lambda: len(p.acked("2011")) == 4, what="window 4 after the restart")
        assert datatimes(p, acked=True) == [dt(T + 1000 * i) for i in range(1, 5)]
        # window 4 has readings from both runs; the latest (99, before the restart) wins
        assert [pk.cp.get("a34002-Rtd") for pk in p.acked("2011")] == ["0.01", "0.011", "0.012", "0.099"]
        # each run's 2081 in DataTime order: window 4 was measured before the second start, so it goes first
        assert [pk.cn for pk in p.packets()] == ["2081", "2011", "2011", "2011", "2011", "2081"]
        assert rig.sinks["city"].realtime is not None and rig.sinks["city"].realtime.late == 1
        await rig.close()


async def test_no_answer_resends_the_same_packet_and_counts_it(tmp_path: Path) -> None:
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port, timeout=0.3)).open()
        await p.wait_for(lambda r: r.cn == "2081" and r.answered == "9014")
        p.misbehave("no-answer", count=1)
        T = t0()
        await rig.append(dust(T + 100), dust(T + 2000))
        await rig.delivered.until(lambda: len(p.acked("2011")) == 1, what="the resent 2011 acknowledged")
        sent = [r for r in p.received if r.cn == "2011"]
        assert len(sent) == 2 and sent[0].raw == sent[1].raw and sent[0].answered is None
        sink = rig.sinks["city"]
        assert (sink.counters["resent"], sink.counters["timeouts"], sink.status.connects) == (1, 1, 1)
        await rig.close()


async def test_no_answer_after_every_retry_reconnects_and_sends_the_packet_again(tmp_path: Path) -> None:
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port, timeout=0.2, retries=1)).open()
        await p.wait_for(lambda r: r.cn == "2081" and r.answered == "9014")
        p.misbehave("no-answer", count=2)
        T = t0()
        await rig.append(dust(T + 100), dust(T + 2000))
        await rig.delivered.until(lambda: len(p.acked("2011")) == 1, what="the 2011 after a reconnect")
        sink = rig.sinks["city"]
        assert sink.status.reconnects == 1 and "no 9014 for 2011" in sink.status.last_error
        assert len([r for r in p.received if r.cn == "2011"]) == 3
        assert datatimes(p) == [dt(T + 1000)] * 3 and len(p.acked("2011")) == 1
        await rig.close()


@pytest.mark.parametrize("mode", ["disconnect", "garbage"])
async def test_a_platform_that_hangs_up_or_answers_garbage_gets_the_packet_again(tmp_path: Path, mode: str) -> None:
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port, timeout=0.3)).open()
        await p.wait_for(lambda r: r.cn == "2081" and r.answered == "9014")
        p.misbehave(mode, count=1)
        T = t0()
        await rig.append(dust(T + 100), dust(T + 1100), dust(T + 3000))
        await rig.delivered.until(lambda: len(p.acked("2011")) == 2, what="both windows acknowledged")
        assert datatimes(p, acked=True) == [dt(T + 1000), dt(T + 2000)]
        sink = rig.sinks["city"]
        if mode == "garbage":
            assert sink.link is not None and sum(sink.link.bad.values()) >= 1 and sink.status.reconnects == 0
        else:
            assert sink.status.reconnects == 1
        await rig.close()


async def test_platform_away_gets_the_gap_in_order_afterwards_without_acknowledged_duplicates(tmp_path: Path
                                                                                          ) -> None:
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port)).open()
        T = t0()
        await rig.append(dust(T + 100), dust(T + 1600))
        await rig.delivered.until(lambda: len(p.acked("2011")) == 1, what="window 1")
        await p.pause()
        await rig.append(*(dust(T + 1600 + 1000 * i, pm10=float(i)) for i in range(1, 31)))
        before = len(p.received)
        sink = rig.sinks["city"]
        await rig.delivered.until(lambda: sink.status.failures >= 2, what="reconnects failing while away")
        assert len(p.received) == before and not sink.status.connected
        await p.resume()
        await rig.delivered.until(lambda: len(p.acked("2011")) == 31, what="the gap back-filled")
        assert datatimes(p) == datatimes(p, acked=True) == [dt(T + 1000 * i) for i in range(1, 32)]
        assert p.errors == []
        await rig.close()


async def test_two_platforms_one_dead_do_not_disturb_each_other(tmp_path: Path) -> None:
    dead_port = free_port()
    async with PlatformSim() as city:
        rig = await Rig(tmp_path, uplink_yaml("city", city.port) + uplink_yaml("province", dead_port, st="31")
                        ).open()
        T = t0()
        ids = await rig.append(*(dust(T + 100 + 1000 * i) for i in range(7)))  # windows 1-5 complete
        await rig.delivered.until(lambda: len(city.acked("2011")) == 5, what="city has everything")
        assert rig.acked("city") == ids[-2] - 1 and rig.acked("province") == 0  # windows 6 and 7 are open
        province = rig.sinks["province"]
        assert province.status.failures >= 1 and "cannot connect" in province.status.last_error
        async with PlatformSim(port=dead_port) as prov:  # the province platform comes up
            await rig.delivered.until(lambda: len(prov.acked("2011")) == 5, what="province back-filled")
            assert datatimes(prov, acked=True) == datatimes(city, acked=True)
            assert {pk.st for pk in prov.acked("2011")} == {"31"}
            await rig.close()


async def test_a_2011_longer_than_1024_bytes_is_split_and_each_part_acknowledged(tmp_path: Path) -> None:
    regs = "".join(f"      - {{channel: c{i:02d}, address: {i}, unit: mg/m3}}\n" for i in range(70))
    codes = "".join(f"      - {{code: a9{i:04d}, device: big, channel: c{i:02d}}}\n" for i in range(70))
    device = "  - name: big\n    bus: lan\n    address: 9\n    kind: cems\n    registers:\n" + regs
    async with PlatformSim(codes=None) as p:  # 70 made-up codes: no code table
        rig = await Rig(tmp_path, uplink_yaml("city", p.port, codes=codes), devices=device).open()
        T = t0()
        vals = {f"c{i:02d}": ChannelValue(100 + i + 0.123, "mg/m3") for i in range(70)}
        await rig.append(DeviceReading("s1", "big", "cems", T + 100, vals),
                         DeviceReading("s1", "big", "cems", T + 2000, vals))
        await rig.delivered.until(lambda: len(p.acked("2011")) == 1, what="the split packet")
        parts = [r.packet for r in p.received if r.cn == "2011" and r.packet is not None]
        assert len(parts) >= 2 and all(pk.pnum == len(parts) for pk in parts)
        assert all(r.answered == "9014" for r in p.received if r.cn == "2011")
        whole = p.acked("2011")[0]
        assert len(whole.cp.pollutants()) == 70 and split(whole) == parts
        await rig.close()


async def test_2025_marks_its_version_and_sends_heartbeats(tmp_path: Path) -> None:
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port, version=2025, heartbeat=0.2)).open()
        T = t0()
        await rig.append(dust(T + 100), dust(T + 2000))
        await p.wait_for(lambda r: r.cn == "9015", count=2)
        assert {(pk.cn, pk.flag) for pk in p.packets()} == {("2081", 9), ("2011", 9), ("9015", 8)}
        await rig.close()


async def test_restart_is_reported_once_per_process_start_not_per_reconnect(tmp_path: Path) -> None:
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port)).open()
        first = (await p.wait_for(lambda r: r.cn == "2081"))[0].packet
        assert first is not None
        assert cp_dict(first)["RestartTime"] == dt(rig.sinks["city"].started_ms)
        await p.pause()
        await p.resume()
        T = t0()
        await rig.append(dust(T + 100), dust(T + 2000))
        await rig.delivered.until(lambda: len(p.acked("2011")) == 1, what="data after the reconnect")
        assert [pk.cn for pk in p.packets()] == ["2081", "2011"]
        await rig.close()


async def test_hostile_bytes_from_the_platform_are_counted_and_the_uplink_carries_on(tmp_path: Path) -> None:
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port)).open()
        await p.wait_connected(MN)
        await p.send_raw(b"\x00\xff garbage\r\n##9999" + b"x" * 2000 + b"##0010QN=1;CP=&&1234\r\n")
        T = t0()
        await rig.append(dust(T + 100), dust(T + 2000))
        await rig.delivered.until(lambda: len(p.acked("2011")) == 1, what="data after the garbage")
        link = rig.sinks["city"].link
        assert link is not None and set(link.bad) >= {"framing", "oversize"}
        assert rig.sinks["city"].status.reconnects == 0
        await rig.close()


async def test_state_file_is_private_and_the_password_never_reaches_a_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port, timeout=0.2)).open()
        await p.wait_connected(MN)
        p.misbehave("no-answer", count=3)
        T = t0()
        await rig.append(dust(T + 100), dust(T + 2000))
        ex = await p.command("1072", {"NewPW": "K7m2Qx"})
        assert ex.exe_rtn == 1
        await rig.delivered.until(lambda: len(p.acked("2011")) == 1, timeout=15, what="2011")
        await rig.close()
    state = tmp_path / "log" / "hj212-city.json"
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    assert json.loads(state.read_text())["settings"]["pw"] == "K7m2Qx"
    text = "\n".join(r.getMessage() + (str(r.exc_info) if r.exc_info else "") for r in caplog.records)
    assert "hj212[city]" in text and PW not in text and "K7m2Qx" not in text


async def test_a_negative_concentration_goes_out_as_flag_d_without_a_number(tmp_path: Path) -> None:
    """A strict platform refuses a whole packet with a negative PM value; the logger sends the code with flag D
    (instrument fault: a concentration below zero is no measurement) and the other codes as they are."""
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port)).open()
        T = t0()
        await rig.append(dust(T + 100, pm10=-3.0), dust(T + 2000))
        await rig.delivered.until(lambda: len(p.acked("2011")) == 1, what="the 2011")
        got = cp_dict(p.acked("2011")[0])
        assert "a34002-Rtd" not in got and got["a34002-Flag"] == "D"
        assert got["a34004-Rtd"] == "40.0" and got["a34004-Flag"] == "N"
        assert p.errors == []
        await rig.close()


async def test_a_device_without_a_reading_in_the_interval_sends_its_codes_with_flag_b(tmp_path: Path) -> None:
    """The first 2011 after start-up, before the stack's analyser answered: its codes go out as Flag=B (no
    number), not left out."""
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port)).open()
        T = t0()
        await rig.append(dust(T + 100), dust(T + 2000))
        await rig.delivered.until(lambda: len(p.acked("2011")) == 1, what="the first 2011")
        got = cp_dict(p.acked("2011")[0])
        assert (got.get("a21026-Flag"), got.get("a19001-Flag")) == ("B", "B")
        assert "a21026-Rtd" not in got and "a21026-ZsRtd" not in got and got["a34002-Flag"] == "N"
        assert p.errors == []
        await rig.close()


async def test_the_restart_packet_follows_the_back_filled_older_data(tmp_path: Path) -> None:
    """DataTime order on the wire: what was measured before the restart goes out before the 2081."""
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port)).open(start=False)
        T = t0()
        await rig.append(*(dust(T + 100 + 1000 * i) for i in range(5)))
        rig.start("city")
        await p.wait_for(lambda r: r.cn == "2081" and r.answered == "9014")
        order = [pk.cn for pk in p.acked() if pk.cn in ("2011", "2081")]
        assert order == ["2011"] * 3 + ["2081"]  # the three windows closed before the restart, then the 2081
        await rig.close()
