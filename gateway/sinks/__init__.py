"""Sinks: deliver what the durable log holds to MQTT, InfluxDB and (later) HJ 212 platforms."""
