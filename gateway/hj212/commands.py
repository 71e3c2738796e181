"""The platform's commands and the logger's answers (HJ 212 request / notice flows).

    request (1000, 10xx, 2011, 2051/2061/2031 history): 9011 QnRtn, then data packets if any, then 9012 ExeRtn
    notice (2012, 2022): 9013

QnRtn says whether the packet itself is acceptable (3 wrong PW, 4 wrong MN, 2 refused: a command Plume does not
carry out, 8 an unknown CN); ExeRtn how the execution went (1 done, 3 a parameter out of bounds, 100 no data).
Every change the platform makes is logged at INFO (WARNING when refused), never with the password.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo

from gateway.hj212.codec import PW_FIELD, Cp, Packet, make_flag, split
from gateway.hj212.config import weak_password
from gateway.hj212.errors import QN_BAD_CN, QN_BAD_MN, QN_BAD_PW, QN_READY, QN_REFUSED
from gateway.hj212.timefmt import parse_time, time_text

log = logging.getLogger("plume.hj212")

EXE_OK = 1
EXE_FAILED = 2
EXE_BAD_REQUEST = 3
EXE_NO_DATA = 100

NOTICES = {"2012", "2022"}
HISTORY = {"2051", "2061", "2031"}
# CNs of the standard Plume does not carry out (calibration, sampling, equipment status...): refused (QnRtn 2)
KNOWN_UNSUPPORTED = {"1013", "2021", "2041", "3011", "3012", "3013", "3014", "3015", "3016", "3017", "3018",
                     "3019", "3020", "3021", "3022", "3023", "3024"}
REPLIES = {"9011", "9012", "9013", "9014"}
# HJ 212-2017 table 6 (data fields): the ranges a platform may set; outside them the answer is ExeRtn 3
MINUTE_INTERVALS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)  # MinInterval, minutes
RTD_INTERVAL_S = (30, 3600)  # RtdInterval: 30 <= n <= 3600 s
OVER_TIME_S = (1, 99)  # OverTime: 0 < n <= 99 s
RE_COUNT = (1, 99)  # ReCount: 0 < n <= 99


class History(Protocol):
    async def history(self, begin_ms: int, end_ms: int) -> list[Cp]: ...


class Controls(Protocol):
    """What a command may read and change on the uplink."""

    mn: str
    st: str
    version_bits: int
    tz: ZoneInfo
    name: str

    @property
    def pw(self) -> str: ...

    def clock_ms(self) -> int: ...

    def next_qn(self) -> str: ...

    @property
    def answer(self) -> bool: ...

    def set_clock(self, platform_ms: int) -> bool: ...

    def rtd_interval_s(self) -> int | None: ...

    def set_rtd_interval(self, seconds: int) -> None: ...

    def min_interval_min(self) -> int | None: ...

    def set_min_interval(self, minutes: int) -> None: ...

    def set_answer(self, timeout_s: float, retries: int) -> None: ...

    def set_pw(self, pw: str) -> None: ...

    def history(self, cn: str) -> History | None: ...

    def sends(self, cn: str) -> bool: ...


@dataclass(slots=True)
class Reply:
    """What to send back, in order; `after` runs once the answers are sent (a new password takes effect then).
    A packet that wants an answer (a history upload) is delivered like data: split, and each part resent until
    its 9014 comes."""

    packets: list[Packet]
    after: Callable[[], None] | None = None
    note: str | None = None  # added to the audit record's result (e.g. a weak password taken)


class CommandHandler:
    def __init__(self, ctl: Controls):
        self.ctl = ctl
        self.handled = 0
        self.refused = 0

    def _answer(self, req: Packet, cn: str, cp: Cp, st: str = "91") -> Packet:
        """An answer carries the request's QN and the logger's own MN and PW (not a wrong one it was sent)."""
        return Packet(req.qn, st, cn, self.ctl.pw, self.ctl.mn, make_flag(version_bits=self.ctl.version_bits), cp)

    def qn_rtn(self, req: Packet, code: int) -> Packet:
        return self._answer(req, "9011", Cp.of({"QnRtn": code}))

    def exe_rtn(self, req: Packet, code: int) -> Packet:
        return self._answer(req, "9012", Cp.of({"ExeRtn": code}))

    def data(self, req: Packet, cp: Cp) -> list[Packet]:
        """A data answer to a get command (1011, 1061, 1063): the request's QN, no answer wanted."""
        return split(self._answer(req, req.cn, cp, st=self.ctl.st))

    def upload(self, req: Packet, cp: Cp) -> Packet:
        """A data packet of a history reply: its own QN (HJ 212-2017 table C.20), a 9014 wanted like any upload;
        the uplink splits it and waits for each part's answer."""
        ctl = self.ctl
        qn = ctl.next_qn()
        if qn == req.qn:  # both sides stamp QNs from their clocks: never answer with the request's
            qn = ctl.next_qn()
        return Packet(qn, ctl.st, req.cn, ctl.pw, ctl.mn,
                      make_flag(version_bits=ctl.version_bits, answer=ctl.answer), cp)

    async def handle(self, req: Packet) -> Reply:
        """The answers to one packet from the platform (none for stray answers)."""
        ctl = self.ctl
        if req.cn in REPLIES:
            return Reply([])
        self.handled += 1
        if req.mn != ctl.mn:
            return self._refuse(req, QN_BAD_MN, f"MN {req.mn} is not this logger's")
        if req.pw != ctl.pw:
            return self._refuse(req, QN_BAD_PW, "wrong PW")
        if req.cn in NOTICES:
            log.info("hj212[%s]: platform notice %s; answered 9013", ctl.name, req.cn)
            return Reply([self._answer(req, "9013", Cp())])
        handler = getattr(self, f"_cn{req.cn}", None)
        if handler is None and req.cn in HISTORY:
            return await self._history(req)
        if handler is None:
            if req.cn in KNOWN_UNSUPPORTED:
                return self._refuse(req, QN_REFUSED, f"command {req.cn} is not supported by Plume")
            return self._refuse(req, QN_BAD_CN, f"unknown command {req.cn}")
        result: Reply = handler(req)
        return result

    def _refuse(self, req: Packet, code: int, why: str) -> Reply:
        self.refused += 1
        log.warning("hj212[%s]: refused command %s (QnRtn %d): %s", self.ctl.name, req.cn, code, why)
        return Reply([self.qn_rtn(req, code)])

    def _done(self, req: Packet, code: int = EXE_OK, data: list[Packet] | None = None) -> Reply:
        return Reply([self.qn_rtn(req, QN_READY), *(data or []), self.exe_rtn(req, code)])

    def _int(self, req: Packet, key: str, lo: int, hi: int) -> int | None:
        v = req.cp.get(key)
        if v is None or not v.isdigit() or not lo <= int(v) <= hi:
            log.warning("hj212[%s]: command %s: %s=%s is not %d..%d; refused (ExeRtn 3)", self.ctl.name, req.cn,
                        key, v, lo, hi)
            return None
        return int(v)

    # --- 1000: answer timeout and retries --------------------------------------------------------------------
    def _cn1000(self, req: Packet) -> Reply:
        timeout = self._int(req, "OverTime", *OVER_TIME_S)
        retries = self._int(req, "ReCount", *RE_COUNT)
        if timeout is None or retries is None:
            return self._done(req, EXE_BAD_REQUEST)
        self.ctl.set_answer(float(timeout), retries)
        log.info("hj212[%s]: platform set answer timeout %d s, %d retries", self.ctl.name, timeout, retries)
        return self._done(req)

    # --- 1011/1012: the logger's clock ----------------------------------------------------------------------
    def _cn1011(self, req: Packet) -> Reply:
        fields: dict[str, object] = {}
        pol = req.cp.get("PolId")
        if pol is not None:
            fields["PolId"] = pol
        fields["SystemTime"] = time_text(self.ctl.clock_ms(), self.ctl.tz)
        return self._done(req, data=self.data(req, Cp.from_mapping(fields)))

    def _cn1012(self, req: Packet) -> Reply:
        text = req.cp.get("SystemTime")
        try:
            ms = parse_time(text or "", self.ctl.tz)
        except ValueError as exc:
            log.warning("hj212[%s]: set time refused: %s", self.ctl.name, exc)
            return self._done(req, EXE_BAD_REQUEST)
        if not self.ctl.set_clock(ms):
            return self._done(req, EXE_BAD_REQUEST)
        return self._done(req)

    # --- 1061..1064: intervals ------------------------------------------------------------------------------
    def _cn1061(self, req: Packet) -> Reply:
        v = self.ctl.rtd_interval_s()
        if v is None:
            return self._refuse(req, QN_REFUSED, "real-time data (2011) is not sent to this platform")
        return self._done(req, data=self.data(req, Cp.of({"RtdInterval": v})))

    def _cn1062(self, req: Packet) -> Reply:
        if self.ctl.rtd_interval_s() is None:
            return self._refuse(req, QN_REFUSED, "real-time data (2011) is not sent to this platform")
        v = self._int(req, "RtdInterval", *RTD_INTERVAL_S)
        if v is None:
            return self._done(req, EXE_BAD_REQUEST)
        self.ctl.set_rtd_interval(v)
        log.info("hj212[%s]: platform set the real-time interval to %d s", self.ctl.name, v)
        return self._done(req)

    def _cn1063(self, req: Packet) -> Reply:
        v = self.ctl.min_interval_min()
        if v is None:
            return self._refuse(req, QN_REFUSED, "minute data (2051) is not sent to this platform")
        return self._done(req, data=self.data(req, Cp.of({"MinInterval": v})))

    def _cn1064(self, req: Packet) -> Reply:
        if self.ctl.min_interval_min() is None:
            return self._refuse(req, QN_REFUSED, "minute data (2051) is not sent to this platform")
        v = self._int(req, "MinInterval", 1, 30)
        if v is None or v not in MINUTE_INTERVALS:
            if v is not None:
                log.warning("hj212[%s]: command 1064: MinInterval=%d is not one of %s; refused (ExeRtn 3)",
                            self.ctl.name, v, ", ".join(map(str, MINUTE_INTERVALS)))
            return self._done(req, EXE_BAD_REQUEST)
        self.ctl.set_min_interval(v)
        log.info("hj212[%s]: platform set the minute-data interval to %d min", self.ctl.name, v)
        return self._done(req)

    # --- 1072: password -----------------------------------------------------------------------------------
    def _cn1072(self, req: Packet) -> Reply:
        """The platform assigns the password: an authenticated platform's new one is taken even when weak (with a
        WARNING, and the weakness in the audit record); only one the PW field cannot carry is refused."""
        new = req.cp.get("NewPW")
        if new is None or not PW_FIELD.fullmatch(new):
            why = "NewPW missing" if new is None else "the HJ 212 PW field holds 1 to 6 letters or digits"
            log.warning("hj212[%s]: platform's new password (1072) refused: %s", self.ctl.name, why)
            return self._done(req, EXE_BAD_REQUEST)
        reply = self._done(req)
        weak = weak_password(new)
        if weak is None:
            log.info("hj212[%s]: platform changed the password", self.ctl.name)
        else:
            reply.note = f"weak password: {weak}"
            log.warning("hj212[%s]: platform set a weak password by 1072 (%s); taken, as the platform assigns it: "
                        "ask the platform for a stronger one", self.ctl.name, weak)
        reply.after = lambda: self.ctl.set_pw(new)
        return reply

    # --- 2011: start real-time data -------------------------------------------------------------------------
    def _cn2011(self, req: Packet) -> Reply:
        if not self.ctl.sends("2011"):
            return self._refuse(req, QN_REFUSED, "real-time data (2011) is not sent to this platform")
        return self._done(req)

    # --- 2051/2061/2031: history from the log ---------------------------------------------------------------
    async def _history(self, req: Packet) -> Reply:
        if not self.ctl.sends(req.cn):
            return self._refuse(req, QN_REFUSED, f"{req.cn} data is not sent to this platform")
        try:
            begin = parse_time(req.cp.get("BeginTime") or "", self.ctl.tz)
            end = parse_time(req.cp.get("EndTime") or "", self.ctl.tz)
        except ValueError as exc:
            log.warning("hj212[%s]: history request %s refused: %s", self.ctl.name, req.cn, exc)
            return self._done(req, EXE_BAD_REQUEST)
        if end < begin:
            return self._done(req, EXE_BAD_REQUEST)
        source = self.ctl.history(req.cn)
        cps = await source.history(begin, end) if source is not None else []
        log.info("hj212[%s]: history %s %s..%s: %d packets", self.ctl.name, req.cn, req.cp.get("BeginTime"),
                 req.cp.get("EndTime"), len(cps))
        if not cps:
            return self._done(req, EXE_NO_DATA)
        return self._done(req, data=[self.upload(req, cp) for cp in cps])
