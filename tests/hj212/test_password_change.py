"""CN 1072 (the platform sets a new password): the platform assigns the password, so an authenticated platform's
new password is accepted even when it is weak or common (the site file's side of the same fact is
`pw_assigned_by_platform: true`) — persisted, audited, and logged with a WARNING that it is weak. Only what the PW
field cannot carry (1 to 6 letters or digits) is refused with ExeRtn 3. Refusing a weak one used to leave the
platform and the logger with different passwords' worth of expectations: the platform believes what it assigned."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from plume_sim.platform import PlatformSim

from gateway.audit.trail import entries

from .helpers import MN, PW
from .uplink_rig import Rig, dust, t0, uplink_yaml

SEND = "{realtime: {interval_s: 1}}"


@pytest.fixture
async def linked(tmp_path: Path) -> AsyncIterator[tuple[PlatformSim, Rig]]:
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port, send=SEND)).open()
        await p.wait_connected(MN)
        yield p, rig
        await rig.close()


async def test_a_weak_password_from_the_authenticated_platform_is_taken_persisted_audited_and_warned(
        linked: tuple[PlatformSim, Rig], caplog: pytest.LogCaptureFixture) -> None:
    p, rig = linked
    with caplog.at_level(logging.WARNING, logger="plume.hj212"):
        ex = await p.command("1072", {"NewPW": "123456"})
    assert (ex.qn_rtn, ex.exe_rtn) == (1, 1)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "1072" in r.getMessage()]
    assert len(warned) == 1 and "weak" in warned[0] and "123456" not in caplog.text, caplog.text
    # what follows carries it, and only it opens the logger
    T = t0()
    await rig.append(dust(T + 100), dust(T + 2000))
    await rig.delivered.until(lambda: len(p.acked("2011")) == 1, what="2011 after the change")
    assert p.acked("2011")[0].pw == "123456"
    assert (await p.command("1011", pw=PW)).qn_rtn == 3
    assert (await p.command("1011", pw="123456")).exe_rtn == 1
    # persisted (owner-only file) ...
    state = rig.tmp / "log" / "hj212-city.json"
    assert json.loads(state.read_text())["settings"]["pw"] == "123456"
    assert os.stat(state).st_mode & 0o777 == 0o600
    # ... and audited with the password masked and the weakness said
    assert rig.log is not None
    await rig.log.flush()
    (entry,) = [e for e in entries(rig.log.path) if e["action"] == "hj212 1072 set logger password"]
    assert entry["params"] == {"NewPW": "******"}
    assert entry["result"].startswith("QnRtn 1, ExeRtn 1") and "weak" in entry["result"]
    assert "123456" not in json.dumps(entry)


async def test_the_password_the_platform_set_survives_a_restart(tmp_path: Path) -> None:
    async with PlatformSim() as p:
        rig = await Rig(tmp_path, uplink_yaml("city", p.port, send=SEND)).open()
        await p.wait_connected(MN)
        assert (await p.command("1072", {"NewPW": "000000"})).exe_rtn == 1
        await rig.close()
        rig = await Rig(tmp_path, uplink_yaml("city", p.port, send=SEND)).open()
        try:
            assert rig.sinks["city"].pw == "000000"
        finally:
            await rig.close()


@pytest.mark.parametrize("new", ["Zq7x2K9", "ab-c1", "密码12"])
async def test_a_new_password_the_pw_field_cannot_carry_is_refused_and_the_old_one_stays(
        linked: tuple[PlatformSim, Rig], new: str) -> None:
    p, _ = linked
    assert (await p.command("1072", {"NewPW": new})).exe_rtn == 3
    assert (await p.command("1011", pw=PW)).exe_rtn == 1


async def test_1072_without_newpw_or_from_a_platform_with_the_wrong_password_changes_nothing(
        linked: tuple[PlatformSim, Rig]) -> None:
    p, rig = linked
    assert (await p.command("1072", {})).exe_rtn == 3
    assert (await p.command("1072", {"NewPW": "K7m2Qx"}, pw="Wr0ng1")).qn_rtn == 3
    assert rig.sinks["city"].pw == PW
