"""plume-sim: the devices of a Plume site file, simulated on the buses the file names.

Serves the same profiles the gateway decodes (gateway/profiles/*.yaml): Modbus RTU on ptys (paced at the bus's baud
rate), Modbus TCP, RTU over TCP, and PMS5003 / SDS011 frames on ptys; with deterministic, realistic values, faults
on demand and a truth log of every value served.

Values are a pure function of (seed, site, device, channel, time): the signal is chosen by channel name (pm10, pm25,
pm1, tsp, *_cf1, n0_3..n10, noise, wind_speed, wind_dir, wind_dir_sector, wind_force, temperature, humidity,
pressure, rainfall, heater_on, so2, so2_ppb, no, no2, nox, o2, particulate, flue_velocity, flue_temperature,
flue_pressure, flue_humidity, flow, run_hours, cell_temperature, ai1..ai4), else a slow random walk inside the
register's min..max (0..100 without one; a bits register toggles). Values stay inside min..max unless a fault
says otherwise.

A register's `sim:` mapping in a profile or site file overrides the choice (unknown keys are errors):

    constant: 12.5          serve this value (a number, or text for a string register), always
    signal: pm10            serve this named signal (any of the names above, or `walk`, `toggle`, `load`,
                            `activity`) instead of the one the channel name picks
    base: 80                re-centre the signal: its nominal level becomes 80 ...
    amplitude: 40           ... and its nominal swing 40 (out = base + (signal - nominal) * amplitude / nominal swing);
                            for `walk` the value wanders around base by +-amplitude
    period_s: 900           time scale of the random walk
    area_m2: 3.14           flue cross-section used by the `flow` signal

Fault kinds (see plume_sim.faults.KINDS): dead, timeout:P, exception:CODE, crc, garbage, stuck, reboot:S, nan,
status:FLAG, overrange, slow:MS; frame sensors take dead, garbage, crc, stuck, overrange.
"""

from plume_sim.faults import KINDS as FAULT_KINDS
from plume_sim.faults import Fault, FaultError, parse_fault
from plume_sim.simulator import SimError, Simulator

__all__ = ["FAULT_KINDS", "Fault", "FaultError", "SimError", "Simulator", "parse_fault"]
