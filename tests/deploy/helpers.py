"""Helpers of the deployment tests: where the repository's deploy files are, tools that must exist in CI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CI = os.environ.get("CI") == "true"

# Tools CI has (installed by .ci/run, or in the base image): missing there is a failure, not a skip.
CI_TOOLS = {
    "mosquitto": "mosquitto",
    "mosquitto_passwd": "mosquitto",
    "mosquitto_pub": "mosquitto-clients",
    "openssl": "openssl",
    "systemd-analyze": "systemd",
    "useradd": "passwd",
    "influxd": "influxdb",
    "nats-server": "nats-server",
    "docker-compose": "docker-compose",
    "shellcheck": "shellcheck",
}


def need(binary: str) -> str:
    """The tool's path; skips (locally) or fails (CI=true, for a tool CI has) when it is missing."""
    path = shutil.which(binary)
    if path is None:
        package = CI_TOOLS.get(binary, binary)
        msg = f"{binary} is not installed (apt-get install {package})"
        if CI and binary in CI_TOOLS:
            pytest.fail(msg)
        pytest.skip(msg)
    return path
