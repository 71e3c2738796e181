"""2051/2061 through the AggregateFeed plug, fed by the processing stage's real WindowEngine.

How the aggregates reach the uplink in production (stored in the log by the processing stage, read back for
history) is not built yet; `EngineFeed` here runs the engine over the records the uplink reads and keeps what it
closed, which is enough to show that the packets, their order, the cursor and history requests work with the
aggregates the processing stage really produces.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from plume_sim.platform import PlatformSim

from gateway.core.model import Flag
from gateway.hj212.sources import Aggregate
from gateway.hj212.timefmt import time_text
from gateway.processing.windows import WindowAggregate, WindowEngine, WindowsConfig
from gateway.store.records import LogRecord, ReadingRecord

from .helpers import TZ
from .uplink_rig import Rig, cp_dict, dust, uplink_yaml


class EngineFeed:
    """An AggregateFeed over the real WindowEngine (test stand-in for the processing stage's stored windows)."""

    def __init__(self) -> None:
        self.engine = WindowEngine(WindowsConfig(periods=["1m", "1h", "1d"]), site="s1", tz=TZ)
        self.closed: list[WindowAggregate] = []

    def aggregates(self, rec: LogRecord) -> Sequence[Aggregate]:
        if not isinstance(rec, ReadingRecord):
            return []
        out = self.engine.feed(rec.reading)
        self.closed += out
        return out

    async def history(self, window: str, begin_ms: int, end_ms: int) -> Sequence[Aggregate]:
        return [a for a in self.closed if a.window == window and begin_ms <= a.start <= end_ms]


def hour_ago() -> int:
    now = int(time.time() * 1000)
    return now - now % 3_600_000 - 3_600_000


async def test_minute_and_hour_packets_from_the_window_engine_and_a_history_request(tmp_path: Path) -> None:
    feed = EngineFeed()
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port, send="{realtime: null, minute: {interval_min: 1}, "
                                              "hour: true}")).open(aggregates=feed)
        H = hour_ago()
        # one reading every 20 s for an hour; pm10 = minute index * 10 + 0, 1, 2 (ug/m3)
        readings = [dust(H + 20_000 * i, pm10=float((i // 3) * 10 + i % 3)) for i in range(180)]
        # the engine closes the hour with the last minute; the uplink knows nothing more can come for that hour once
        # a later window closes (the next minute, closed by a reading one lateness later)
        await rig.append(*readings, dust(H + 3_600_000 + 61_000), dust(H + 3_600_000 + 181_000))
        await rig.delivered.until(lambda: len(p.acked("2061")) == 1 and len(p.acked("2051")) == 60,
                                  what="the hour and its minutes")
        minutes = p.acked("2051")
        assert [m.cp.get("DataTime") for m in minutes] == [time_text(H + 60_000 * i, TZ) for i in range(60)]
        m5 = cp_dict(minutes[5])
        assert (m5["a34002-Min"], m5["a34002-Avg"], m5["a34002-Max"], m5["a34002-Flag"]) == \
               ("0.05", "0.051", "0.052", "N")  # ug/m3 -> mg/m3 for this platform
        assert "a34002-Rtd" not in m5 and m5["LA-Avg"] == "61.2"
        hour = cp_dict(p.acked("2061")[0])
        assert hour["DataTime"] == time_text(H, TZ) and hour["a34002-Flag"] == "N"
        assert hour["a34002-Min"] == "0.0" and hour["a34002-Max"] == "0.592"
        # order on the wire: DataTime order (a back-filled hour goes out right after its first minute)
        times = [(pk.cp.get("DataTime"), pk.cn) for pk in p.packets() if pk.cn in ("2051", "2061")]
        assert times == sorted(times)
        assert p.errors == []

        ex = await p.command("2061", {"BeginTime": time_text(H, TZ), "EndTime": time_text(H + 1, TZ)})
        assert (ex.qn_rtn, ex.exe_rtn, len(ex.data)) == (1, 1, 1)
        assert ex.data[0].cp == p.acked("2061")[0].cp
        # HJ 212-2017 table C.20: each data packet of a history reply has its own QN (and the platform answers it
        # with a 9014 of that QN); 9011 and 9012 carry the request's
        assert ex.data[0].qn != ex.qn
        five = await p.command("2051", {"BeginTime": time_text(H, TZ), "EndTime": time_text(H + 240_000, TZ)})
        assert (five.qn_rtn, five.exe_rtn) == (1, 1)
        assert [d.cp.get("DataTime") for d in five.data] == [time_text(H + 60_000 * i, TZ) for i in range(5)]
        qns = [d.qn for d in five.data]
        assert len(set(qns)) == 5 and five.qn not in qns and qns == sorted(qns)
        assert all(d.answer_wanted for d in five.data)
        answered = {r.qn for r in p.received if r.cn == "2051" and r.answered == "9014"}
        assert set(qns) <= answered
        empty = await p.command("2051", {"BeginTime": "20200101000000", "EndTime": "20200101010000"})
        assert empty.exe_rtn == 100
        await rig.close()


async def test_minute_data_is_refused_when_the_site_does_not_send_it_and_warned_when_not_wired(
        tmp_path: Path) -> None:
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port, send="{realtime: {interval_s: 1}, hour: true}")).open()
        await p.wait_connected()
        ex = await p.command("2051", {"BeginTime": "20260101000000", "EndTime": "20260101010000"})
        assert ex.qn_rtn == 2
        assert rig.sinks["city"].aggregate_sources == {}
        await rig.close()


def test_an_aggregate_below_zero_goes_out_as_flag_d_and_no_value_uses_exponent_notation() -> None:
    from gateway.hj212.aggregates import aggregate_cp
    from gateway.hj212.routes import Route
    from gateway.processing.windows import ChannelAggregate

    chans = {"pm10": ChannelAggregate("ug/m3", -4.0, -1.0, 2.0, 60, 60, Flag.N, None, ""),
             "noise": ChannelAggregate("dB(A)", 1e-9, 5e-7, 12345678.9, 60, 60, Flag.N, None, "")}
    agg = WindowAggregate("s1", "dust-1", "dust", "1h", 0, 3_600_000, 60, False, chans)
    routes = [Route("a34002", "dust-1", "pm10", "mg/m3", 3), Route("LA", "dust-1", "noise", None, 1)]
    got = {k: v for g in aggregate_cp(0, [agg], routes, TZ, True).groups for k, v in g}
    assert got["a34002-Flag"] == "D" and "a34002-Avg" not in got and "a34002-Min" not in got
    assert (got["LA-Min"], got["LA-Avg"], got["LA-Max"]) == ("0.0", "0.0", "12345678.9")
