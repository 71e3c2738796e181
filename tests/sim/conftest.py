"""Fixtures for the simulator tests: site files in tmp_path, free loopback ports, an injectable clock."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.site.load import load_site
from gateway.site.model import Site

from .helpers import RTU_SITE, FakeClock, free_port


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[..., Site]:
    """Write a site file from YAML text ({tmp} and {port} placeholders filled in) and load it."""
    counter = iter(range(1000))

    def make(text: str, **fmt: object) -> Site:
        path = tmp_path / f"site-{next(counter)}.yaml"
        path.write_text(textwrap.dedent(text).format(tmp=tmp_path, **fmt), encoding="utf-8")
        return load_site(path)

    return make


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    """An RS-485 line (9600 baud pty) with three slaves and a Modbus TCP bus with two."""
    return make_site(RTU_SITE, baud=9600, port=free_port())
