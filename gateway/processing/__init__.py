"""Regulatory processing: data-quality flags, CEMS corrections and time windows. Pure and deterministic: no I/O,
time is passed in as UTC epoch milliseconds, so the state can be rebuilt by replaying the durable log."""
