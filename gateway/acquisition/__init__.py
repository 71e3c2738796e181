"""Acquisition: turn register words and serial frames into flagged engineering values."""
