"""The platform simulator over real TCP, driven by a hand-made logger connection."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from plume_sim.platform import PlatformSim

from gateway.hj212.codec import Cp, Packet, crc16, make_flag, split
from gateway.hj212.errors import Hj212Error

from .helpers import MN, PW, RawLogger, data_packet, free_port


async def test_answers_9014_with_the_same_qn_when_flag_asks_and_records_the_packet() -> None:
    async with PlatformSim(pw=PW, mn=MN) as p:
        lg = await RawLogger.connect(p.port)
        pkt = data_packet()
        await lg.send(pkt)
        ack = await lg.read_packet()
        assert (ack.qn, ack.st, ack.cn, ack.mn, ack.pw, ack.flag) == (pkt.qn, "91", "9014", MN, PW, 4)
        assert ack.cp == Cp()
        assert p.acked("2011") == [pkt] and p.errors == []
        await lg.close()


async def test_a_packet_without_the_answer_bit_gets_no_answer() -> None:
    async with PlatformSim() as p:
        lg = await RawLogger.connect(p.port)
        quiet, loud = data_packet(answer=False), data_packet(answer=True)
        await lg.send(quiet)
        await lg.send(loud)
        assert (await lg.read_packet()).qn == loud.qn  # the first answer is for the second packet
        assert p.packets("2011") == [quiet, loud] and p.acked("2011") == [loud]
        await lg.close()


async def test_bad_packets_are_recorded_with_their_reason_and_the_connection_survives() -> None:
    async with PlatformSim() as p:
        lg = await RawLogger.connect(p.port)
        good = data_packet()
        wire = bytearray(good.data().encode())
        bad_crc = b"##%04d%s%04X\r\n" % (len(wire), bytes(wire), crc16(bytes(wire)) ^ 1)
        await lg.send(bad_crc)
        await lg.send(b"hello platform\r\n")
        await lg.send(b"##0010short\r\n")
        await lg.send(good)
        assert (await lg.read_packet()).qn == good.qn
        assert [r.reason for r in p.errors] == ["crc", "framing", "length"]
        await lg.send(b"##0101QN=2016")  # then the logger hangs up mid-packet
        await lg.close()
        await p.wait_for(lambda r: r.reason == "truncated")


async def test_content_problems_are_refused_and_not_answered() -> None:
    async with PlatformSim(pw=PW, mn=MN) as p:
        lg = await RawLogger.connect(p.port)
        await lg.send(data_packet(pw="Wr0ng1"))
        await lg.send(data_packet(values={"a34002-Rtd": "abc", "a34002-Flag": "Q"}))
        await lg.send(Packet("20240101120000000", "39", "2011", PW, MN, make_flag(2017, answer=True),
                             Cp.of({"a34002-Rtd": "1"})))  # no DataTime
        ok = data_packet()
        await lg.send(ok)
        assert (await lg.read_packet()).qn == ok.qn
        msgs = [r.error or "" for r in p.errors]
        assert "PW is not this logger's password" in msgs[0]
        assert "a34002-Rtd='abc' is not a number" in msgs[1] and "a34002-Flag='Q'" in msgs[1]
        assert "without DataTime" in msgs[2]
        await lg.close()


async def test_split_packets_are_answered_part_by_part_and_joined() -> None:
    values: dict[str, object] = {}
    for i in range(90):
        values[f"a{i:05d}-Rtd"] = f"{i}.5"
        values[f"a{i:05d}-Flag"] = "N"
    whole = data_packet(values=values)
    parts = split(whole)
    assert len(parts) >= 3
    async with PlatformSim(codes=None) as p:  # 90 made-up codes: no code table
        lg = await RawLogger.connect(p.port)
        for part in parts:
            await lg.send(part)
            assert (await lg.read_packet()).qn == whole.qn
        assert p.acked("2011") == [whole]
        await lg.close()


async def test_no_answer_for_a_count_then_behaves_again() -> None:
    async with PlatformSim() as p:
        p.misbehave("no-answer", count=2)
        lg = await RawLogger.connect(p.port)
        a, b, c = data_packet(), data_packet(), data_packet()
        for x in (a, b, c):
            await lg.send(x)
        assert (await lg.read_packet()).qn == c.qn
        assert p.acked() == [c] and len(p.packets()) == 3
        await lg.close()


async def test_garbage_answer_is_not_a_packet() -> None:
    async with PlatformSim() as p:
        p.misbehave("garbage")
        lg = await RawLogger.connect(p.port)
        await lg.send(data_packet())
        items = [await lg.read()]
        while not isinstance(items[-1], bytes | type(None)) and len(items) < 4:
            items.append(await lg.read())
        assert any(isinstance(i, Hj212Error) for i in items)
        assert p.acked() == []
        await lg.close()


async def test_disconnect_closes_the_connection_instead_of_answering() -> None:
    async with PlatformSim() as p:
        p.misbehave("disconnect")
        lg = await RawLogger.connect(p.port)
        await lg.send(data_packet())
        assert await lg.read() is None  # EOF
        assert p.received[-1].answered == "disconnect"
        await lg.close()


async def test_late_answer_arrives_after_the_delay() -> None:
    async with PlatformSim() as p:
        p.misbehave("late-answer", delay_s=0.3)
        lg = await RawLogger.connect(p.port)
        pkt = data_packet()
        t0 = time.monotonic()
        await lg.send(pkt)
        ack = await lg.read_packet()
        assert ack.qn == pkt.qn and time.monotonic() - t0 >= 0.3
        assert p.acked() == [pkt]
        await lg.close()


async def test_pause_drops_connections_refuses_new_ones_and_resume_listens_on_the_same_port() -> None:
    async with PlatformSim() as p:
        port = p.port
        lg = await RawLogger.connect(port)
        await lg.send(data_packet())
        await lg.read_packet()
        await p.pause()
        assert await lg.read() is None
        with pytest.raises(OSError):
            await RawLogger.connect(port)
        await p.resume()
        lg2 = await RawLogger.connect(port)
        pkt = data_packet()
        await lg2.send(pkt)
        assert (await lg2.read_packet()).qn == pkt.qn and p.port == port
        await lg.close()
        await lg2.close()


async def test_command_collects_9011_data_and_9012_from_the_logger() -> None:
    async with PlatformSim() as p:
        lg = await RawLogger.connect(p.port)
        await lg.send(data_packet(answer=False))
        await p.wait_connected(MN)
        task = asyncio.create_task(p.command("1011"))
        req = await lg.read_packet()
        assert (req.cn, req.st, req.pw, req.mn, req.answer_wanted) == ("1011", "39", PW, MN, True)
        v = make_flag(2017)
        await lg.send(Packet(req.qn, "91", "9011", PW, MN, v, Cp.of({"QnRtn": 1})))
        await lg.send(Packet(req.qn, "39", "1011", PW, MN, v, Cp.of({"SystemTime": "20240101120000"})))
        await lg.send(Packet(req.qn, "91", "9012", PW, MN, v, Cp.of({"ExeRtn": 1})))
        ex = await task
        assert (ex.qn_rtn, ex.exe_rtn, ex.values()) == (1, 1, {"SystemTime": "20240101120000"})
        await lg.close()


async def test_command_refused_by_9011_finishes_and_silence_times_out() -> None:
    async with PlatformSim() as p:
        lg = await RawLogger.connect(p.port)
        await lg.send(data_packet(answer=False))
        await p.wait_connected()
        task = asyncio.create_task(p.command("1072", {"NewPW": "abc123"}))
        req = await lg.read_packet()
        await lg.send(Packet(req.qn, "91", "9011", PW, MN, 4, Cp.of({"QnRtn": 2})))
        ex = await task
        assert ex.qn_rtn == 2 and ex.exe_rtn is None and ex.finished
        with pytest.raises(TimeoutError, match="9011 QnRtn=None"):
            await p.command("1061", timeout=0.3)
        await lg.close()


async def test_record_file_has_one_json_line_per_packet(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    async with PlatformSim(record=path) as p:
        lg = await RawLogger.connect(p.port)
        pkt = data_packet()
        await lg.send(b"junk##0005abcde0000\r\n")
        await lg.send(pkt)
        await lg.read_packet()
        await lg.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(x["cn"], x["reason"], x["answered"]) for x in lines] == [(None, "framing", None),
                                                                       (None, "crc", None),
                                                                       ("2011", None, "9014")]
    assert lines[-1]["qn"] == pkt.qn and lines[-1]["raw"].startswith("##")


def test_cli_listens_records_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "rec.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "plume_sim.platform", "--port", str(port), "--record", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"ready: listening on 127.0.0.1:{port}"

        async def talk() -> Packet:
            lg = await RawLogger.connect(port)
            pkt = data_packet()
            await lg.send(pkt)
            ack = await lg.read_packet()
            await lg.close()
            assert ack.qn == pkt.qn
            return pkt

        asyncio.run(talk())
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "in  2011 MN=" in out and "-> 9014" in out and "stopped: 1 packets received, 0 bad" in out
    assert len(path.read_text().splitlines()) == 1


def test_cli_refuses_an_unknown_misbehaviour() -> None:
    r = subprocess.run([sys.executable, "-m", "plume_sim.platform", "--misbehave", "sulk"], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 2 and "unknown misbehaviour 'sulk'" in r.stderr
