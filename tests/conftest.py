"""Fixtures every test folder shares."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from itertools import count
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from gateway.site.load import load_site
from gateway.site.model import Site

# Property tests judge what the code does, never how fast this machine is (no timed assertions in the suite): no
# per-example deadline and no "input generation is slow" failure on a loaded machine. The number of examples each
# test asks for is unchanged.
settings.register_profile("plume", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("plume")


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[..., Site]:
    """Write a site file from YAML text and load it (through the one assembly path, as `plume run` does). The text
    is a str.format template: `{tmp}` is the test's folder, every other `{name}` a keyword given, and braces meant
    for YAML are doubled (`{{id: s1}}`)."""
    numbers = count()

    def make(text: str, **fill: object) -> Site:
        path = tmp_path / f"site-{next(numbers)}.yaml"
        path.write_text(textwrap.dedent(text).format(tmp=tmp_path, **fill), encoding="utf-8")
        return load_site(path)

    return make
