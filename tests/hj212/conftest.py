"""Fixtures of the HJ 212 tests: a fresh gateway clock for every test (site files come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.core.clock import CLOCK


@pytest.fixture(autouse=True)
def bare_clock() -> Iterator[None]:
    """The gateway's clock is one per process: a platform's 1012 in one test must not shift the next test's."""
    CLOCK.reset()
    yield
    CLOCK.reset()
