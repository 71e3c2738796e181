"""Fixtures for the simulator tests: site files in tmp_path, free loopback ports, an injectable clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.site.model import Site

from .helpers import RTU_SITE, FakeClock, free_port


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()




@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    """An RS-485 line (9600 baud pty) with three slaves and a Modbus TCP bus with two."""
    return make_site(RTU_SITE, baud=9600, port=free_port())
