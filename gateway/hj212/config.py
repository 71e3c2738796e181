"""Site-file section `uplinks`: the regulator platforms this gateway reports to over HJ 212, as a data logger.

One entry per platform (city and province at once is two entries). The password is refused at config check when
it is a factory default or guessable (123456, 000000, abc123, ...): a platform that accepts it accepts anybody. The
platform assigns the password, though: `pw_assigned_by_platform: true` uses it anyway, with a warning.
"""

from __future__ import annotations

import itertools
import re
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from gateway.core.strict import NAME, Strict

CODE = r"^[A-Za-z0-9][A-Za-z0-9_]*$"

# Passwords seen as factory defaults of data loggers and platforms, and the usual keyboard walks.
_DEFAULT_PASSWORDS = {"123456", "654321", "000000", "111111", "888888", "666666", "123123", "112233", "121212",
                      "abc123", "abcdef", "qwerty", "admin", "admin1", "pass", "passwd", "hj212", "test",
                      "123abc", "a12345", "1234", "12345", "1qaz2w", "qazwsx", "password"}


def weak_password(pw: str) -> str | None:
    """Why `pw` is unfit for a platform, or None. Never repeats the password itself."""
    if not re.fullmatch(r"[A-Za-z0-9]{1,6}", pw):
        return "the HJ 212 PW field holds 1 to 6 letters or digits"
    low = pw.lower()
    if low in _DEFAULT_PASSWORDS:
        return "a factory default or common password is refused; use the password the platform assigned"
    if len(pw) < 6:
        return "shorter than 6 characters"
    if len(set(low)) == 1:
        return "one character repeated is guessable"
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(low)}
    if steps in ({1}, {-1}):
        return "a run of consecutive characters is guessable"
    return None


class CodeMap(Strict):
    """One HJ 212 pollutant code fed by one channel."""

    code: str = Field(pattern=CODE, description="HJ 212 code, e.g. a34002 (PM10), a21026 (SO2), LA (noise).")
    channel: str = Field(description="Plume channel, e.g. pm10, so2_std (a channel the processing stage derives).")
    device: str | None = Field(None, description="Device carrying the channel (needed when several have it).")
    unit: str | None = Field(None, description="Unit the platform expects (e.g. mg/m3 for dust on some platforms); "
                             "default: the channel's own unit.")
    decimals: int = Field(3, ge=0, le=6, description="At most this many decimals (trailing zeros dropped).")


class RealtimeSend(Strict):
    """2011 real-time data: the latest value of every code, once per interval (set by the platform with 1062)."""

    interval_s: int = Field(60, ge=1, le=3600, description="RtdInterval (the standard allows 30..3600 s).")


class MinuteSend(Strict):
    """2051 minute data: one packet per `interval_min` window (set by the platform with 1064)."""

    interval_min: int = Field(10, ge=1, le=60, description="MinInterval; must be one of the processing windows.")


class SendConfig(Strict):
    """Which data this platform gets. A missing entry (or null) is not sent."""

    realtime: RealtimeSend | None = Field(default_factory=RealtimeSend, description="2011.")
    minute: MinuteSend | None = Field(None, description="2051 (needs the processing windows).")
    hour: bool = Field(False, description="2061 (needs the processing windows).")
    day: bool = Field(False, description="2031 (needs the processing windows).")


class UplinkConfig(Strict):
    """One regulator platform (HJ 212 over TCP)."""

    name: str = Field(pattern=NAME, description="Name of this uplink (its cursor in the log, its metrics).")
    host: str
    port: int = Field(ge=1, le=65535)
    mn: str = Field(pattern=r"^[A-Za-z0-9]{1,24}$", description="MN: the monitoring point's number (24 characters "
                    "in HJ 212-2017), assigned by the platform.")
    pw_assigned_by_platform: bool = Field(False, description="The platform assigned this PW: use it even when it is "
                                          "a common one (123456...); config check and plume run warn.")
    pw: SecretStr = Field(description="PW assigned by the platform (use ${ENV_VAR}); defaults such as 123456 are "
                          "refused unless pw_assigned_by_platform.")
    st: str = Field("39", pattern=r"^\d{2}$", description="System code: 39 construction dust, 31 flue gas, 22 "
                    "ambient air, 27 VOCs.")
    version: Literal[2017, 2025] = Field(2017, description="HJ 212 edition (Flag version bits).")
    flag_version_bits: int | None = Field(None, ge=0, le=63, description="Override the Flag version bits "
                                          "(2017: 1, 2025: 2 — the 2025 value is unverified).")
    send: SendConfig = Field(default_factory=SendConfig)
    codes: list[CodeMap] = Field(default_factory=list, description="Plume channel -> HJ 212 code, unit, decimals.")
    zs: dict[str, str] = Field(default_factory=dict, description="code -> channel holding its converted "
                               "(reference-O2) value, sent as code-ZsRtd/ZsAvg/...; same device as the code.")
    flags: bool = Field(True, description="Send code-Flag (N, D, C, M, B...) with every value.")
    answer: bool = Field(True, description="Ask for a 9014 data answer (Flag A) and resend until it comes.")
    answer_timeout_s: float = Field(10.0, gt=0, le=600, description="Wait this long for 9014 before resending.")
    retries: int = Field(3, ge=0, le=10, description="Resends after the first try, then reconnect.")
    reconnect_min_s: float = Field(1.0, gt=0, le=600)
    reconnect_max_s: float = Field(60.0, gt=0, le=3600)
    connect_timeout_s: float = Field(10.0, gt=0, le=120)
    backfill_per_s: float = Field(5.0, gt=0, le=1000, description="Packets per second while catching up.")
    backfill_max_age_h: float = Field(72.0, gt=0, description="Data older than this is not back-filled.")
    grace_s: float = Field(5.0, ge=0, le=300, description="How long after a window ends late readings may still "
                           "arrive before its packet is built.")
    heartbeat_s: float = Field(60.0, ge=0, description="HJ 212-2025: heartbeat (9015) after this much silence "
                               "(0: none). Ignored for 2017.")
    max_clock_step_s: float = Field(3600.0, ge=0, description="Refuse a 1012 set-time further than this from "
                                    "the gateway's clock (0: refuse every 1012).")

    @field_validator("pw", "mn", mode="before")
    @classmethod
    def _digits(cls, v: object) -> object:
        # `pw: 135790` (unquoted) and a whole-value ${VAR} reach us as YAML integers: the digits are the text
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("pw")
    @classmethod
    def _pw(cls, v: SecretStr, info: ValidationInfo) -> SecretStr:
        pw = v.get_secret_value()
        why = weak_password(pw)
        if why is None:
            return v
        if not re.fullmatch(r"[A-Za-z0-9]{1,6}", pw):
            raise ValueError(why)
        if info.data.get("pw_assigned_by_platform"):
            return v  # a warning at config check and at run (gateway.site.checks.site_warnings)
        raise ValueError(f"{why} (if the platform assigned it, set `pw_assigned_by_platform: true` on this uplink to "
                         "use it anyway, with a warning)")

    @field_validator("st", mode="before")
    @classmethod
    def _st(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _codes(self) -> UplinkConfig:
        if not self.codes:
            raise ValueError("codes: map at least one channel to an HJ 212 code")
        seen: set[str] = set()
        for c in self.codes:
            if c.code in seen:
                raise ValueError(f"code {c.code} mapped twice")
            seen.add(c.code)
        for code in self.zs:
            if code not in seen:
                raise ValueError(f"zs.{code}: no entry in codes for {code}")
        if self.send.realtime is None and self.send.minute is None and not self.send.hour and not self.send.day:
            raise ValueError("send: nothing to send (realtime, minute, hour or day)")
        return self

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"
