"""CLI tests reuse the pipeline tests' process fixture (children stopped by pid)."""

from tests.pipeline.conftest import procs

__all__ = ["procs"]
