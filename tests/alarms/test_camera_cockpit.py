"""The cockpit shows an alarm's camera picture (or says why there is none): `plume run` with the cockpit, `plume-sim`,
two camera simulators (one answers with digest auth, one hangs) as processes, and a headless Chromium that must
decode the JPEG the page shows."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.localservers import loopback_http
from tests.cockpit.browser import DESKTOP, need_browser, screenshot, start_browser, wait_until
from tests.cockpit.rig import SCREENSHOTS, CockpitRig, login
from tests.pipeline.conftest import procs
from tests.pipeline.helpers import Proc
from tests.pipeline.servers import free_port, wait_for

__all__ = ["procs"]

CAMERAS = """
cameras:
  - {{name: gate-east, url: "http://127.0.0.1:{ok}/onvif/snapshot", username: admin, password: pw,
     devices: [dust-1], timeout_s: 2}}
  - {{name: stack-cam, url: "http://127.0.0.1:{hang}/cgi-bin/snapshot.cgi", username: admin, password: pw,
     devices: [so2-1], timeout_s: 0.5, attempts: 1}}
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    need_browser()
    b = start_browser(tmp_path / "chromium-profile")
    yield b
    b.quit()


def test_the_alarm_page_shows_the_cameras_picture_and_says_which_camera_did_not_answer(
        tmp_path: Path, procs: Callable[..., Proc], browser: Any) -> None:
    ok, hang = free_port(), free_port()
    for port, mode in ((ok, "ok"), (hang, "hang")):
        procs([sys.executable, "-m", "plume_sim.camera", "--port", str(port), "--user", "admin:pw", "--mode", mode],
              tmp_path / f"camera-{mode}.out").wait_output("ready")
    rig = CockpitRig(tmp_path, procs)
    rig.site.write_text(rig.site.read_text() + CAMERAS.format(ok=ok, hang=hang), encoding="utf-8")
    rig.start()
    rig.fault("dust-1", "dead")
    rig.fault("so2-1", "dead")
    client = rig.login_client()

    def both_judged() -> list[dict[str, Any]] | None:
        active = client.get("/api/alarms").json()["active"]
        pics = {a["device"]: a["pictures"] for a in active if a["pictures"]}
        return [pics["dust-1"][0], pics["so2-1"][0]] if {"dust-1", "so2-1"} <= set(pics) else None

    taken, missing = wait_for(both_judged, 30, "both alarms with their camera's outcome")
    assert taken["camera"] == "gate-east" and taken["url"].startswith("/snapshots/")
    image = client.get(taken["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content.startswith(b"\xff\xd8")
    assert missing["camera"] == "stack-cam" and missing["url"] is None
    assert missing["why"] == {"zh": "无响应", "en": "did not answer"}
    assert client.get("/snapshots/..%2Flog.sqlite").status_code == 404
    assert httpx_anonymous(rig.url + taken["url"]) in (303, 401), "pictures need the login like the rest"

    login(browser, rig)
    wait_until(browser, lambda b: b.find_elements("css selector", "section.device"), what="the overview")
    browser.get(rig.url + "/alarms")
    wait_until(browser, lambda b: b.find_elements("css selector", "figure.snapshot[data-camera=gate-east] img"),
               what="the picture on the alarm card")
    wait_until(browser, lambda b: b.execute_script(
        "const i = document.querySelector('figure.snapshot[data-camera=gate-east] img');"
        "return i && i.complete && i.naturalWidth > 0;"), what="Chromium decoding the JPEG")
    note = browser.find_element("css selector", ".no-picture[data-camera=stack-cam]").text
    assert "无现场照片" in note and "stack-cam" in note and "无响应" in note
    screenshot(browser, SCREENSHOTS, "alarms-with-camera-picture", DESKTOP)
    rig.stop()


def httpx_anonymous(url: str) -> int:

    return loopback_http().get(url, follow_redirects=False).status_code
