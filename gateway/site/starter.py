"""`plume init`: a commented starter site file (site, zone, one bus, devices), so a first site file is edited from a
working example instead of written from the schema. The text is checked by the same loader as any site file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StarterDevice:
    name: str
    profile: str
    address: int


def starter_site(site_id: str, timezone: str, *, port: str | None, tcp: str | None, baudrate: int, parity: str,
                 devices: list[StarterDevice]) -> str:
    """The text of a starter site file for one RS-485 line (`port`) or one Modbus TCP endpoint (`tcp` HOST:PORT)."""
    if tcp is not None:
        host, _, p = tcp.rpartition(":")
        bus = (f"  - name: lan\n    type: tcp                 # Modbus TCP (or rtu_over_tcp: RTU through a serial "
               f"server)\n    host: {host}\n    port: {p}\n")
        bus_name = "lan"
    else:
        bus = (f"  - name: rs485\n    type: rtu                 # Modbus RTU on RS-485\n    port: {port}\n"
               f"    baudrate: {baudrate}            # what the devices are set to (plume scan finds it)\n"
               f"    parity: {parity}                 # N, E or O\n")
        bus_name = "rs485"
    devs = devices or [StarterDevice("dust-1", "dust-monitor", 1)]
    lines = "".join(f"  - name: {d.name}\n    bus: {bus_name}\n    address: {d.address}               # the Modbus "
                    f"slave id\n    profile: {d.profile}       # `plume profiles list`\n"
                    "    poll_interval_s: 10\n" for d in devs)
    return f"""\
# Plume site file, written by `plume init`. Check it with `plume config check THIS_FILE`, see the requests with
# `plume plan THIS_FILE`, poll once with `plume read THIS_FILE`, run it with `plume run THIS_FILE`.
site:
  id: {site_id}                  # MQTT topic segment and InfluxDB tag: letters, digits, _ . -
  name: ""
  timezone: {timezone}      # the site's local clock: windows, HJ 212 times, every time shown

buses:
{bus}
devices:
{lines}
store:
  dir: /var/lib/plume           # the durable log: every reading is committed here first

# Where readings go. Without a sink they stay in the log only (config check warns). For example:
# sinks:
#   - type: mqtt
#     host: 127.0.0.1
#     port: 1883
#   - type: influx
#     url: http://127.0.0.1:8086
#     database: plume
"""
