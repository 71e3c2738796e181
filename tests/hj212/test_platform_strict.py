"""The platform simulator refuses what a regulator's acceptance test refuses (issue #11 finding 8), one packet each
over real TCP; the same packet made right is answered, so each refusal is caused by the one fault it names."""

from __future__ import annotations

import pytest
from plume_sim.platform import PlatformSim

from gateway.hj212.codec import Cp, Packet, make_flag

from .helpers import MN, PW, RawLogger, qn

HOUR = "20260301120000"


def packet(cn: str, fields: dict[str, str], data_time: str = HOUR, st: str = "31") -> Packet:
    return Packet(qn(), st, cn, PW, MN, make_flag(2017, answer=True),
                  Cp.from_mapping({"DataTime": data_time, **fields}))


GOOD_HOUR = {"a21026-Min": "10.0", "a21026-Avg": "20.5", "a21026-Max": "30.0", "a21026-Flag": "N"}

# (what is wrong, the faulty packet, the same packet made right, the words of the refusal)
CASES = [
    ("exponent notation", packet("2011", {"a21026-Rtd": "1e3", "a21026-Flag": "N"}, "20260301120512"),
     packet("2011", {"a21026-Rtd": "1000", "a21026-Flag": "N"}, "20260301120512"), "a21026-Rtd='1e3' is not a number"),
    ("infinity", packet("2011", {"a21026-Rtd": "inf"}, "20260301120512"),
     packet("2011", {"a21026-Rtd": "9999"}, "20260301120512"), "a21026-Rtd='inf' is not a number"),
    ("a 2061 not on the hour", packet("2061", GOOD_HOUR, "20260301123000"), packet("2061", GOOD_HOUR, HOUR),
     "DataTime 20260301123000 of 2061 is not on the hour"),
    ("a 2031 not at midnight", packet("2031", GOOD_HOUR, HOUR), packet("2031", GOOD_HOUR, "20260301000000"),
     "DataTime 20260301120000 of 2031 is not at midnight"),
    ("a 2051 not on a whole minute", packet("2051", GOOD_HOUR, "20260301121030"),
     packet("2051", GOOD_HOUR, "20260301121000"), "of 2051 is not on a whole minute"),
    ("Avg greater than Max", packet("2061", {**GOOD_HOUR, "a21026-Avg": "31.0"}), packet("2061", GOOD_HOUR),
     "a21026-Avg=31 is greater than a21026-Max=30"),
    ("Min greater than Avg", packet("2061", {**GOOD_HOUR, "a21026-Min": "21.0"}), packet("2061", GOOD_HOUR),
     "a21026-Min=21 is greater than a21026-Avg=20.5"),
    ("ZsAvg greater than ZsMax", packet("2061", {**GOOD_HOUR, "a21026-ZsMin": "1", "a21026-ZsAvg": "5",
                                                  "a21026-ZsMax": "4"}),
     packet("2061", {**GOOD_HOUR, "a21026-ZsMin": "1", "a21026-ZsAvg": "3", "a21026-ZsMax": "4"}),
     "a21026-ZsAvg=5 is greater than a21026-ZsMax=4"),
    ("an unknown pollutant code", packet("2011", {"a99999-Rtd": "1.0"}, "20260301120512"),
     packet("2011", {"a34002-Rtd": "1.0"}, "20260301120512"), "a99999: not a pollutant code"),
    ("a negative PM value", packet("2011", {"a34002-Rtd": "-3.5"}, "20260301120512", st="39"),
     packet("2011", {"a34002-Rtd": "3.5"}, "20260301120512", st="39"), "a34002-Rtd=-3.5 is negative"),
    ("an unknown ST", packet("2011", {"a34002-Rtd": "3.5"}, "20260301120512", st="77"),
     packet("2011", {"a34002-Rtd": "3.5"}, "20260301120512", st="39"), "ST 77 is not a system code"),
]


@pytest.mark.parametrize(("what", "bad", "good", "words"), CASES, ids=[c[0] for c in CASES])
async def test_strict_platform_refuses(what: str, bad: Packet, good: Packet, words: str) -> None:
    async with PlatformSim(pw=PW, mn=MN) as p:
        lg = await RawLogger.connect(p.port)
        await lg.send(bad)
        await lg.send(good)
        ack = await lg.read_packet()
        assert (ack.cn, ack.qn) == ("9014", good.qn)  # the faulty one got no answer, the right one did
        assert [r.qn for r in p.errors] == [bad.qn], what
        assert words in (p.errors[0].error or "")
        assert p.acked() == [good]
        await lg.close()


async def test_a_temperature_may_be_negative_and_a_code_table_can_be_widened() -> None:
    async with PlatformSim(codes={"a01001", "x00001"}) as p:
        lg = await RawLogger.connect(p.port)
        ok = packet("2011", {"a01001-Rtd": "-12.5", "x00001-Rtd": "1"}, "20260301120512")
        await lg.send(ok)
        assert (await lg.read_packet()).qn == ok.qn
        assert p.errors == []
        await lg.close()
