"""Fixtures of the cockpit tests: the pipeline tests' real servers and child processes, reused."""

from tests.pipeline.conftest import mosquitto, procs

__all__ = ["mosquitto", "procs"]
