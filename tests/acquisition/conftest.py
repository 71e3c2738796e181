"""Fixtures: site files on free loopback ports and pty paths, served by the real simulator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.localservers import free_port
from gateway.site.load import load_site
from gateway.site.model import Site


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[..., Site]:
    """Write a site file with the given buses/devices; `{port}` and `{tmp}` in values are filled in."""

    def make(buses: list[dict[str, Any]], devices: list[dict[str, Any]], profiles: dict[str, Any] | None = None,
             ) -> Site:
        port = free_port()

        def fill(v: Any) -> Any:
            if isinstance(v, str):
                return v.replace("{port}", str(port)).replace("{tmp}", str(tmp_path))
            if isinstance(v, dict):
                return {k: fill(x) for k, x in v.items()}
            if isinstance(v, list):
                return [fill(x) for x in v]
            return v

        doc: dict[str, Any] = {"site": {"id": "test-site", "timezone": "Asia/Shanghai"},
                               "buses": fill(buses), "devices": fill(devices)}
        if profiles:
            pdir = tmp_path / "profiles"
            pdir.mkdir(exist_ok=True)
            for name, body in profiles.items():
                (pdir / f"{name}.yaml").write_text(yaml.safe_dump(body))
            doc["profiles_dir"] = ["profiles"]
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return load_site(path)

    return make
