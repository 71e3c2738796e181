"""The query tests' InfluxDB: started once per test module and filled by the real pipeline (fill.py).

Needs influxd (Debian `influxdb`): skipped with the reason when it is missing, and failed when CI=true.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pipeline.helpers import need

from .fill import Filled, fill


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    need("influxd")
    with fill(tmp_path_factory.mktemp("grafana-fill")) as f:
        yield f
