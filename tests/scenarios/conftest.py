"""The scenario tests use the pipeline tests' real servers and process fixtures."""

from tests.pipeline.conftest import mosquitto, procs

__all__ = ["mosquitto", "procs"]
