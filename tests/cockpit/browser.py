"""A real headless Chromium (Debian's `chromium` + `chromium-driver`) driven by Selenium, for the cockpit tests.

Selenium is pointed at /usr/bin/chromedriver, so Selenium Manager never downloads a browser or a driver. Missing
packages skip the test locally and fail it when CI=true (like every other real server of the test suite).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CI = os.environ.get("CI") == "true"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
DESKTOP = (1280, 900)
PHONE = (390, 844)


def need_browser() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        driver = None
    if chromium is None or driver is None:
        msg = "headless Chromium is not installed (apt-get install chromium chromium-driver; pip install selenium)"
        if CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return chromium, driver


def start_browser(profile_dir: Path, size: tuple[int, int] = DESKTOP) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = need_browser()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for f in FLAGS:
        opts.add_argument(f)
    profile_dir.mkdir(parents=True, exist_ok=True)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    opts.add_argument(f"--window-size={size[0]},{size[1]}")
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def wait_until(browser: Any, condition: Callable[[Any], Any], timeout: float = 20.0, what: str = "") -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # an element the page re-rendered while the condition looked at it: look again
        return WebDriverWait(browser, timeout, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                             ).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what or condition}; page:\n"
                             f"{browser.find_element('tag name', 'body').text[:2000]}") from None


def screenshot(browser: Any, folder: Path, name: str, size: tuple[int, int]) -> Path:
    """A full-page screenshot at this window width (Chromium's own capture beyond the viewport)."""
    import base64

    browser.set_window_size(*size)
    browser.execute_script("return document.body.offsetHeight")  # layout at the new width
    data = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{size[0]}x{size[1]}.png"
    path.write_bytes(base64.b64decode(data["data"]))
    return path
