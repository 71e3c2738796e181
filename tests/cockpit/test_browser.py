"""The cockpit in a real headless Chromium against `plume run` polling `plume-sim` (both as processes), as the
installer on the site's LAN sees it. Screenshots of every page at desktop and phone widths are saved to
build/cockpit-screenshots/."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cockpit.browser import DESKTOP, PHONE, need_browser, screenshot, start_browser, wait_until
from tests.cockpit.rig import SCREENSHOTS, CockpitRig, login, page_devices
from tests.pipeline.helpers import Proc
from tests.pipeline.servers import Mosquitto, MqttCollector, wait_for

MAX_LAG_MS = 1500


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    need_browser()
    b = start_browser(tmp_path / "chromium-profile")
    yield b
    b.quit()


def served_for(served: dict[str, dict[str, list[tuple[int, object]]]], device: str, channel: str,
               poll_ts: int) -> object | None:
    """The value the simulator served for the poll that started at poll_ts (the first one served after it)."""
    for ts, value in served.get(device, {}).get(channel, []):
        if poll_ts <= ts <= poll_ts + MAX_LAG_MS:
            return value
    return None


def test_overview_shows_every_device_with_the_simulators_values_and_a_silenced_device_turns_offline_live(
        tmp_path: Path, procs: Callable[..., Proc], browser: Any) -> None:
    rig = CockpitRig(tmp_path, procs).start()
    login(browser, rig)
    wait_until(browser, lambda b: len(b.find_elements("css selector", "section.device[data-state=online]")) == 3,
               what="three devices online on the overview")
    assert browser.execute_script("return document.documentElement.lang") == "zh-CN"  # a China zone: Chinese
    assert "Asia/Shanghai UTC+08:00" in browser.find_element("id", "clock").text
    legend = browser.find_element("id", "legend").text
    assert "HJ 212" in legend and "通讯异常" in legend  # B, communication fault

    # every value on the page is what the simulator served for the poll the page names: a moment where every
    # shown poll was answered (on a loaded machine one poll may time out: flag B, nothing served to compare with)
    # and the truth log holds its answers
    def answered_page() -> list[dict[str, Any]] | None:
        page = page_devices(browser)
        if any(v["flag"] != "N" for d in page for v in d["values"]):
            return None
        served = rig.served()
        covered = all(served_for(served, d["device"], ch, d["last_poll"]) is not None
                      for d in page for ch in served.get(d["device"], {}))
        return page if covered else None

    shown = wait_for(answered_page, 10, "a page of answered polls the simulator's truth log holds", interval=0.1)
    assert [d["device"] for d in shown] == ["dust-1", "so2-1", "stack-1"]
    served = rig.served()
    compared = 0
    for d in shown:
        values = {v["channel"]: v for v in d["values"]}
        assert set(served[d["device"]]) <= set(values), f"{d['device']}: channels missing on the page"
        for channel in served[d["device"]]:
            want = served_for(served, d["device"], channel, d["last_poll"])
            got = values[channel]
            assert float(got["value"]) == float(want), (d["device"], channel, got, want)  # type: ignore[arg-type]
            assert got["flag"] == "N"
            compared += 1
    assert compared >= 20
    for size in (DESKTOP, PHONE):
        screenshot(browser, SCREENSHOTS, "overview", size)

    # silence so2-1: the page turns it offline by itself (no reload: the marker set on this page survives); its
    # device page draws its history later, so it has answered a few polls first
    wait_for(lambda: len(rig.served().get("so2-1", {}).get("so2_ppb", [])) >= 3, 10, "three answers of so2-1",
             interval=0.1)
    browser.execute_script("window.__sameDocument = 1")
    rig.fault("so2-1", "dead")
    wait_until(browser, lambda b: b.find_elements(
        "css selector", "section.device[data-device=so2-1][data-state=offline], "
                        "section.device[data-device=so2-1][data-state=backed_off]"), what="so2-1 offline")
    assert browser.execute_script("return window.__sameDocument") == 1
    so2 = next(d for d in page_devices(browser) if d["device"] == "so2-1")
    assert so2["badge"].startswith("离线")
    assert all(v["flag"] == "B" and v["shown"] == "—" for v in so2["values"])  # no value, never a silent zero
    others = [d["state"] for d in page_devices(browser) if d["device"] != "so2-1"]
    assert others == ["online", "online"]

    # the other pages, at both widths
    for page, ready in (("/device/dust-1", "#charts svg polyline"), ("/delivery", "#log"),
                        ("/alarms", "#active"), ("/commissioning", "button.read")):
        browser.get(rig.url + page)
        wait_until(browser, lambda b, css=ready: b.find_elements("css selector", css), what=page)
        for size in (DESKTOP, PHONE):
            screenshot(browser, SCREENSHOTS, page.strip("/").replace("/", "-"), size)

    # the silent device's page: its errors with cause and hint, its plan, its last hour drawn from the log
    browser.get(rig.url + "/device/so2-1")
    wait_until(browser, lambda b: b.find_elements("css selector", "#errors td"), what="so2-1's errors")
    errors = browser.find_element("id", "errors").text
    assert "超时未应答" in errors or "设备不再应答" in errors  # the cause, in Chinese
    assert "从站地址" in errors or "检查电源" in errors  # and what to check
    assert "so2_ppb" in browser.find_element("id", "plan").text
    assert browser.find_elements("css selector", "#charts figure[data-channel=so2_ppb] svg polyline")
    screenshot(browser, SCREENSHOTS, "device-so2-1-offline", DESKTOP)
    browser.get(rig.url + "/commissioning")
    wait_until(browser, lambda b: b.find_elements("css selector", "button.read"), what="the commissioning page")

    # commissioning: read dust-1 now (as `plume read` does) while the gateway polls; so2-1 is silent
    browser.find_element("css selector", "[data-device=dust-1] button.read").click()
    wait_until(browser, lambda b: b.find_elements("css selector", "[data-device=dust-1] .result [data-ts]"),
               what="the reading of dust-1")
    read = json.loads(browser.execute_script("""
        const card = document.querySelector('[data-device=dust-1] .result');
        return JSON.stringify({ts: Number(card.querySelector('[data-ts]').dataset.ts),
          values: Object.fromEntries(Array.from(card.querySelectorAll('tr[data-channel]')).map(
            r => [r.dataset.channel, r.dataset.value]))});"""))
    wait_for(lambda: served_for(rig.served(), "dust-1", "pm10", read["ts"]) is not None, 10, "the read in the truth")
    served = rig.served()
    for channel in served["dust-1"]:
        assert float(read["values"][channel]) == float(served_for(served, "dust-1", channel, read["ts"]))  # type: ignore[arg-type]
    browser.find_element("css selector", "[data-device=so2-1] button.read").click()
    wait_until(browser, lambda b: b.find_elements("css selector", "[data-device=so2-1] .result .err"),
               what="the failed read of so2-1")
    assert "no answer" in browser.find_element("css selector", "[data-device=so2-1] .result .err").text
    screenshot(browser, SCREENSHOTS, "commissioning-read", DESKTOP)
    rig.stop()


def test_a_wrong_password_is_refused_and_nothing_answers_without_a_session(
        tmp_path: Path, procs: Callable[..., Proc], browser: Any) -> None:
    rig = CockpitRig(tmp_path, procs).start()
    with httpx.Client(base_url=rig.url, timeout=10) as anon:
        for path in ("/", "/alarms", "/delivery", "/device/dust-1", "/commissioning"):
            r = anon.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/login", path
        for path in ("/api/overview", "/api/alarms", "/api/delivery", "/api/device/dust-1", "/api/status",
                     "/api/log/tail", "/api/events"):
            r = anon.get(path)
            assert r.status_code == 401, path
            assert "dust-1" not in r.text
        for path, body in (("/api/alarms/ack", {"alarm_id": "x", "by": "me"}), ("/api/read/dust-1", {})):
            assert anon.post(path, json=body).status_code == 401
        assert anon.post("/api/login", json={"password": "wrong"}).status_code == 401
        assert anon.get("/api/overview", headers={"cookie": "plume_session=made-up"}).status_code == 401

    login(browser, rig, "not the password")
    wait_until(browser, lambda b: b.find_element("id", "login-error").text, what="the login error")
    assert browser.find_element("id", "login-error").text == "密码错误"
    assert browser.current_url.endswith("/login")
    browser.get(rig.url + "/api/overview")
    assert "dust-1" not in browser.page_source
    browser.find_element("tag name", "body")

    # the right password, then the language switch (and it stays switched on the next page)
    login(browser, rig)
    wait_until(browser, lambda b: b.find_elements("css selector", "section.device"), what="the overview")
    assert browser.find_element("css selector", "nav a[data-page=overview]").text == "总览"
    browser.find_element("id", "lang").click()
    wait_until(browser, lambda b: b.find_element("css selector", "nav a[data-page=overview]").text == "Overview",
               what="English navigation")
    assert browser.execute_script("return document.documentElement.lang") == "en"
    assert "HJ 212 data flags" in browser.find_element("id", "legend").text
    assert "Local time" in browser.find_element("id", "clock").text
    browser.get(rig.url + "/alarms")
    wait_until(browser, lambda b: b.find_elements("id", "active"), what="the alarms page")
    assert browser.find_element("css selector", "nav a[data-page=alarms]").text.startswith("Alarms")
    browser.find_element("id", "lang").click()
    wait_until(browser, lambda b: b.find_element("css selector", "nav a[data-page=alarms]").text.startswith("报警"),
               what="Chinese again")
    login_shot = start_browser(tmp_path / "chromium-login")
    try:
        login_shot.get(rig.url + "/login")
        wait_until(login_shot, lambda b: b.find_elements("id", "password"), what="login page")
        screenshot(login_shot, SCREENSHOTS, "login", PHONE)
    finally:
        login_shot.quit()
    rig.stop()


def test_an_alarm_is_acknowledged_from_the_page_and_the_acknowledgement_reaches_mqtt_and_the_log(
        tmp_path: Path, procs: Callable[..., Proc], browser: Any, mosquitto: Mosquitto) -> None:
    collector = MqttCollector(mosquitto.port, "plume/cockpit-site/alarms/#", client_id="cockpit-test")
    rig = CockpitRig(tmp_path, procs, mqtt_port=mosquitto.port).start()
    login(browser, rig)
    wait_until(browser, lambda b: b.find_elements("css selector", "section.device"), what="the overview")
    rig.fault("so2-1", "dead")
    browser.get(rig.url + "/alarms")
    card_css = "section.alarm[data-alarm^='offline/so2-1/']"
    wait_until(browser, lambda b: b.find_elements("css selector", card_css), what="the offline alarm of so2-1")
    card = browser.find_element("css selector", card_css)
    alarm_id = card.get_attribute("data-alarm")
    assert "+08:00" in browser.find_element("css selector", "#events th").text  # times carry their zone
    card.find_element("name", "by").send_keys("李工 Li")
    card.find_element("name", "comment").send_keys("cable checked 电缆已查")
    screenshot(browser, SCREENSHOTS, "alarms-active", DESKTOP)
    card.find_element("css selector", "button[type=submit]").click()
    wait_until(browser, lambda b: b.find_elements("css selector", "section.alarm[data-acked=true]"),
               what="the alarm shown acknowledged")
    assert "李工 Li" in browser.find_element("css selector", "section.alarm[data-acked=true]").text

    def acked_on_mqtt() -> list[dict[str, Any]]:
        events = [json.loads(p) for t, p, _ in collector.snapshot() if t.endswith("/alarms/events") and p]
        return [e for e in events if e.get("type") == "acknowledged" and e.get("alarm_id") == alarm_id]

    wait_for(lambda: bool(acked_on_mqtt()), 15, "the acknowledged event on MQTT")
    ev = acked_on_mqtt()[0]
    assert ev["by"] == "李工 Li" and ev["note"] == "cable checked 电缆已查"
    wait_until(browser, lambda b: "李工 Li" in b.find_element("id", "events").text, what="the event in the list")

    # delivery: the broker connected, what waits for it, the log against its cap
    browser.get(rig.url + "/delivery")
    wait_until(browser, lambda b: b.find_elements("css selector", "tr[data-sink=broker][data-connected=true]"),
               what="the broker connected on the delivery page")
    assert "127.0.0.1" in browser.find_element("css selector", "tr[data-sink=broker]").text
    assert "2048 MB" in browser.find_element("id", "log").text  # the default disk cap
    rig.stop()
    collector.close()

    # the log holds the command (marked as from the cockpit) and the acknowledged event
    import asyncio

    from gateway.alarms.records import AlarmRecord
    from gateway.store.log import DurableLog
    from gateway.store.records import ALARM, COMMAND

    async def read_log() -> tuple[list[Any], list[Any]]:
        lg = DurableLog(rig.log_file)
        await lg.open()
        try:
            return await lg.records_of_kind(COMMAND, 0), await lg.records_of_kind(ALARM, 0)
        finally:
            await lg.close()

    commands, alarms = asyncio.run(read_log())
    assert [(c.payload["type"], c.payload["alarm_id"], c.payload["by"], c.payload["source"]) for c in commands] == [
        ("ack", alarm_id, "李工 Li", "cockpit:127.0.0.1")]
    acked = [a for a in alarms if isinstance(a, AlarmRecord) and a.payload.event.type.value == "acknowledged"]
    assert [a.payload.event.alarm_id for a in acked] == [alarm_id]
    # and the audit trail: who acknowledged, from where, with what comment, and that it was accepted
    from gateway.audit.trail import entries

    acks = [e for e in entries(rig.log_file) if e["action"] == "command ack"]
    assert [(e["actor"]["kind"], e["actor"]["who"], e["actor"]["address"], e["result"]) for e in acks] == [
        ("cockpit", "李工 Li", "127.0.0.1", "accepted")]
    assert acks[0]["params"]["alarm_id"] == alarm_id
