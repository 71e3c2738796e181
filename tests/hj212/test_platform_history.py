"""A history request's answer at the platform simulator: the data packets of a history reply have QNs of their own
(HJ 212-2017 table C.20), so the platform tells them from live uploads of the same CN by their DataTime, which lies
in the request's BeginTime..EndTime. A live 2051 that arrives while the reply is under way (the logger keeps
reporting) is a live packet, not part of the answer (the end-to-end test saw the platform count it in)."""

from __future__ import annotations

import asyncio

from plume_sim.platform import PlatformSim

from gateway.hj212.codec import Cp, Packet, make_flag

from .helpers import MN, PW, RawLogger, data_packet, qn


def minute(data_time: str) -> Packet:
    return Packet(qn(), "39", "2051", PW, MN, make_flag(2017, answer=True),
                  Cp.from_mapping({"DataTime": data_time, "a34002-Avg": "0.085", "a34002-Flag": "N"}))


async def test_a_live_upload_during_a_history_reply_is_not_part_of_the_answer() -> None:
    async with PlatformSim(pw=PW, mn=MN) as p:
        lg = await RawLogger.connect(p.port)
        await lg.send(data_packet(answer=False))
        await p.wait_connected(MN)
        task = asyncio.create_task(p.command("2051", {"BeginTime": "20260301100000", "EndTime": "20260301100100"}))
        req = await lg.read_packet()
        v = make_flag(2017)
        await lg.send(Packet(req.qn, "91", "9011", PW, MN, v, Cp.of({"QnRtn": 1})))
        for dt in ("20260301100000", "20260301120500", "20260301100100"):  # the middle one: a live minute
            await lg.send(minute(dt))
            assert (await lg.read_packet()).cn == "9014"  # each answered like any upload
        await lg.send(Packet(req.qn, "91", "9012", PW, MN, v, Cp.of({"ExeRtn": 1})))
        ex = await task
        assert [d.cp.get("DataTime") for d in ex.data] == ["20260301100000", "20260301100100"]
        assert [m.cp.get("DataTime") for m in p.acked("2051")] == ["20260301100000", "20260301120500",
                                                                   "20260301100100"]
        await lg.close()
