"""Fixtures of the HJ 212 tests: site files with uplinks written to tmp_path."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.core.clock import CLOCK
from gateway.site.load import load_site
from gateway.site.model import Site


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[..., Site]:
    """Write a site file from YAML text (`{tmp}` replaced by the test's folder) and load it."""
    counter = iter(range(1000))

    def make(text: str) -> Site:
        path = tmp_path / f"site-{next(counter)}.yaml"
        path.write_text(textwrap.dedent(text).replace("{tmp}", str(tmp_path)), encoding="utf-8")
        return load_site(path)

    return make


@pytest.fixture(autouse=True)
def bare_clock() -> Iterator[None]:
    """The gateway's clock is one per process: a platform's 1012 in one test must not shift the next test's."""
    CLOCK.reset()
    yield
    CLOCK.reset()
