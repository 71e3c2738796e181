"""Plume: edge gateway for construction-dust and stack-emission monitoring."""

__version__ = "0.1.0"
