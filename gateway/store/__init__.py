"""The durable log: every reading is committed here before any sink sees it."""
