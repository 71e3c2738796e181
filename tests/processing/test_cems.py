"""CEMS arithmetic against hand-computed values (the worked numbers are in each test), flag propagation and the
O2 guard, as an operator reading the derived channels would see them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.processing.cems import (
    BOILER_DEFAULTS,
    CemsError,
    O2GuardError,
    StackConfig,
    StackDeriver,
    actual_to_standard,
    emission_rate_kg_h,
    flow_std_dry,
    flow_to_std_dry,
    nox_as_no2,
    ppm_to_mg_m3,
    reference_o2,
    wet_to_dry,
)


# --- the formulas --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ppm", "molar_mass", "expected"),
    [
        (100.0, 64.066, 286.008929),  # SO2: 100 * 64.066 / 22.4 = 286.0089 (the x2.86 factor)
        (100.0, 30.006, 133.955357),  # NO: 100 * 30.006 / 22.4 = 133.9554 (x1.34)
        (100.0, 46.006, 205.383929),  # NO2: 100 * 46.006 / 22.4 = 205.3839 (x2.05)
        (0.0, 64.066, 0.0),
    ],
)
def test_ppm_to_mg_m3_uses_molar_mass_over_22_4(ppm, molar_mass, expected):
    assert ppm_to_mg_m3(ppm, molar_mass) == pytest.approx(expected, abs=1e-6)


def test_nox_as_no2_is_no_times_1_53_plus_no2():
    # 100 mg/m3 NO * 1.53 = 153, + 20 mg/m3 NO2 = 173
    assert nox_as_no2(100.0, 20.0) == pytest.approx(173.0)


def test_wet_to_dry_divides_by_one_minus_moisture():
    # 90 / (1 - 0.10) = 100
    assert wet_to_dry(90.0, 10.0) == pytest.approx(100.0)
    # O2 the same way: 8.1 % wet at 10 % moisture = 9.0 % dry
    assert wet_to_dry(8.1, 10.0) == pytest.approx(9.0)


@pytest.mark.parametrize("moisture", [100.0, 120.0, -1.0])
def test_wet_to_dry_refuses_impossible_moisture(moisture):
    with pytest.raises(CemsError, match="moisture"):
        wet_to_dry(90.0, moisture)


def test_actual_to_standard_worked_example():
    # t = 136.5 C: (273 + 136.5) / 273 = 1.5; Ba + Ps = 80000 + 1060 = 81060 Pa: 101325 / 81060 = 1.25
    # 100 mg/m3 actual -> 100 * 1.5 * 1.25 = 187.5 mg/m3 at 273 K, 101325 Pa
    assert actual_to_standard(100.0, 136.5, 80000.0, 1060.0) == pytest.approx(187.5)
    # at standard conditions nothing changes
    assert actual_to_standard(42.0, 0.0, 101325.0, 0.0) == pytest.approx(42.0)


def test_actual_to_standard_refuses_non_positive_absolute_pressure():
    with pytest.raises(CemsError, match="absolute flue pressure"):
        actual_to_standard(10.0, 100.0, 1000.0, -1000.0)


@pytest.mark.parametrize(
    ("c", "o2", "ref", "expected"),
    [
        (100.0, 12.0, 9.0, 133.333333),  # coal boiler: 100 * (21 - 9) / (21 - 12) = 100 * 12 / 9
        (100.0, 6.0, 9.0, 80.0),  # less O2 than the reference lowers it: 100 * 12 / 15
        (100.0, 9.0, 9.0, 100.0),  # at the reference O2 nothing changes
        (100.0, 18.99, 9.0, 597.014925),  # just under the guard: 100 * 12 / 2.01
        (30.0, 15.0, 3.5, 87.5),  # gas boiler: 30 * 17.5 / 6
    ],
)
def test_reference_o2_worked_examples(c, o2, ref, expected):
    assert reference_o2(c, o2, ref, 19.0) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("o2", [19.0, 20.9, 21.0, 25.0])
def test_reference_o2_guard_refuses_instead_of_dividing(o2):
    with pytest.raises(O2GuardError, match="guard"):
        reference_o2(100.0, o2, 9.0, 19.0)


def test_flow_std_dry_worked_example():
    # A = 2 m2, v = 10 m/s: 3600 * 2 * 10 = 72000 m3/h actual wet
    # t = 91 C: 273 / 364 = 0.75; Ba + Ps = 101325 Pa: x1; moisture 20 %: x0.8 -> 72000 * 0.75 * 0.8 = 43200
    assert flow_std_dry(2.0, 10.0, 91.0, 101325.0, 0.0, 20.0) == pytest.approx(43200.0)


def test_measured_actual_wet_flow_to_standard_dry():
    # 72000 m3/h actual wet at 91 C, 101325 Pa, 20 % moisture -> the same 43200 m3/h as from velocity
    assert flow_to_std_dry(72000.0, 91.0, 101325.0, 0.0, 20.0, "actual", "wet") == pytest.approx(43200.0)
    assert flow_to_std_dry(5000.0, 91.0, 101325.0, 0.0, 20.0, "standard", "dry") == 5000.0


def test_emission_rate_kg_h():
    # 50 mg/m3 * 43200 m3/h = 2 160 000 mg/h = 2.16 kg/h
    assert emission_rate_kg_h(50.0, 43200.0) == pytest.approx(2.16)


def test_boiler_defaults_reference_o2():
    assert {k: v.reference_o2 for k, v in BOILER_DEFAULTS.items()} == {
        "coal": 9.0, "oil_gas": 3.5, "coal_power": 6.0, "gas_turbine": 15.0}


# --- a stack, end to end -------------------------------------------------------------------------------------
def cv(value, unit, flag=Flag.N):
    return ChannelValue(value, unit, flag)


def reading(device="stack-1", ts=1_000_000, **values):
    return DeviceReading("s", device, "cems", ts, dict(values))


STACK = {
    "device": "stack-1",
    "boiler": "coal",
    "o2": "o2",
    "moisture": "flue_humidity",
    "temperature": "flue_temperature",
    "static_pressure": "flue_pressure",
    "ambient_pressure": 80.0,
    "velocity": "flue_velocity",
    "area_m2": 2.0,
    "pollutants": {
        "so2": {"channel": "so2"},  # extractive, dry, the analyzer says ppm
        "nox": {"no": "no", "no2": "no2"},
        "dust": {"channel": "particulate", "conditions": "actual", "basis": "wet"},  # in-situ
    },
}


def stack_reading(**over):
    values = {
        "so2": cv(100.0, "ppm"),
        "no": cv(100.0, "mg/m3"),
        "no2": cv(10.0, "mg/m3"),
        "particulate": cv(30.0, "mg/m3"),
        "o2": cv(12.0, "%"),
        "flue_humidity": cv(20.0, "%"),
        "flue_temperature": cv(136.5, "C"),
        "flue_pressure": cv(1.06, "kPa"),
        "flue_velocity": cv(10.0, "m/s"),
    }
    values.update(over)
    return reading(**values)


def derive(stack=STACK, r=None, others=()):
    d = StackDeriver([StackConfig.model_validate(stack)])
    for o in others:
        d.apply(o)
    r = r or stack_reading()
    d.apply(r)
    return r.values


def test_stack_worked_example_all_derived_channels():
    v = derive()
    # dust: 30 mg/m3 actual wet; t 136.5 C -> x1.5; Ba 80 kPa + Ps 1.06 kPa = 81060 Pa -> x1.25: 56.25 std wet;
    # moisture 20 %: / 0.8 = 70.3125 std dry; O2 12 % vs reference 9 % (coal): x 12/9 = 93.75
    assert v["dust_std"].value == pytest.approx(70.3125)
    assert v["dust_zs"].value == pytest.approx(93.75)
    # flow: 3600 * 2 m2 * 10 m/s = 72000; x 273/409.5 = 0.6667; x 81060/101325 = 0.8; x (1 - 0.2) -> 30720 m3/h
    assert v["flow_std"].value == pytest.approx(30720.0)
    # rate: 70.3125 mg/m3 * 30720 m3/h * 1e-6 = 2.16 kg/h
    assert v["dust_rate"].value == pytest.approx(2.16)
    # SO2 100 ppm -> 286.0089 mg/m3 (ppm is at standard conditions by definition; dry analyzer)
    assert v["so2_std"].value == pytest.approx(286.008929, abs=1e-5)
    assert v["so2_zs"].value == pytest.approx(286.008929 * 12 / 9, abs=1e-5)  # 381.3452
    assert v["so2_rate"].value == pytest.approx(286.008929 * 30720e-6, abs=1e-5)  # 8.786 kg/h
    # NOx as NO2: 100 * 1.53 + 10 = 163; Zs 163 * 12 / 9 = 217.333
    assert v["nox_std"].value == pytest.approx(163.0)
    assert v["nox_zs"].value == pytest.approx(217.333333, abs=1e-5)
    assert {ch: (c.unit, c.flag) for ch, c in v.items() if ch.endswith(("_std", "_zs", "_rate"))} == {
        "so2_std": ("mg/m3", Flag.N), "so2_zs": ("mg/m3", Flag.N), "so2_rate": ("kg/h", Flag.N),
        "nox_std": ("mg/m3", Flag.N), "nox_zs": ("mg/m3", Flag.N), "nox_rate": ("kg/h", Flag.N),
        "dust_std": ("mg/m3", Flag.N), "dust_zs": ("mg/m3", Flag.N), "dust_rate": ("kg/h", Flag.N),
        "flow_std": ("m3/h", Flag.N),
    }
    assert "o2_dry" not in v  # O2 measured dry: nothing to convert


def test_calibrating_o2_analyzer_flags_every_zs_value_but_not_the_std_values():
    v = derive(r=stack_reading(o2=cv(12.0, "%", Flag.C)))
    assert v["so2_zs"].flag is Flag.C and v["so2_zs"].value == pytest.approx(381.345238, abs=1e-5)
    assert v["so2_std"].flag is Flag.N
    assert v["dust_rate"].flag is Flag.N


def test_flag_is_the_worst_of_all_inputs():
    # temperature in maintenance (M) and moisture from a faulty probe (D): dust uses both -> D; flow too
    v = derive(r=stack_reading(flue_temperature=cv(136.5, "C", Flag.M), flue_humidity=cv(20.0, "%", Flag.D)))
    assert v["dust_std"].flag is Flag.D
    assert v["flow_std"].flag is Flag.D
    assert v["so2_std"].flag is Flag.N  # a dry ppm analyzer needs neither
    assert v["so2_rate"].flag is Flag.D  # ... but its rate needs the flow


def test_o2_at_the_guard_gives_no_zs_value_and_flag_f():
    v = derive(r=stack_reading(o2=cv(20.6, "%")))  # burner off
    for p in ("so2", "nox", "dust"):
        assert v[f"{p}_zs"].value is None
        assert v[f"{p}_zs"].flag is Flag.F
        assert "guard" in v[f"{p}_zs"].note
    assert v["so2_std"].value == pytest.approx(286.008929, abs=1e-5)  # the measured values still travel


def test_guard_flag_does_not_hide_a_worse_input_flag():
    v = derive(r=stack_reading(o2=cv(20.6, "%", Flag.D)))
    assert v["so2_zs"].flag is Flag.D


def test_configurable_guard_and_reference():
    stack = {**STACK, "boiler": None, "reference_o2": 6.0, "o2_guard": 20.0}
    v = derive(stack, stack_reading(o2=cv(19.5, "%")))
    # 19.5 < 20: 286.0089 * (21 - 6) / (21 - 19.5) = 286.0089 * 10 = 2860.089
    assert v["so2_zs"].value == pytest.approx(2860.08929, abs=1e-4)


def test_communication_failure_of_an_input_propagates_as_b_without_a_value():
    v = derive(r=stack_reading(flue_temperature=ChannelValue(None, "C", Flag.B, "timeout")))
    assert v["dust_std"].value is None and v["dust_std"].flag is Flag.B
    assert v["dust_std"].note == "timeout"
    assert v["so2_std"].value is not None


def test_wet_o2_gets_a_dry_channel_and_is_used_dry():
    stack = {**STACK, "o2_basis": "wet"}
    v = derive(stack, stack_reading(o2=cv(9.6, "%")))
    # 9.6 / (1 - 0.2) = 12.0 % dry -> same Zs as the dry example
    assert v["o2_dry"].value == pytest.approx(12.0)
    assert v["so2_zs"].value == pytest.approx(381.345238, abs=1e-5)


def test_ppb_analyzer_and_unknown_unit():
    stack = {"device": "so2-1", "boiler": "coal", "o2": 12.0, "pollutants": {"so2": {"channel": "so2_ppb"}}}
    r = reading("so2-1", so2_ppb=cv(100_000.0, "ppb"))
    assert derive(stack, r)["so2_std"].value == pytest.approx(286.008929, abs=1e-5)  # 100 000 ppb = 100 ppm
    r = reading("so2-1", so2_ppb=cv(5.0, "mg/L"))
    got = derive(stack, r)["so2_std"]
    assert (got.value, got.flag) == (None, Flag.D) and "mg/L" in got.note


def test_stack_fed_by_two_devices_uses_the_latest_fresh_reading_of_the_other():
    stack = {"device": "gas-1", "boiler": "oil_gas", "o2": "o2", "temperature": "flow-1.t",
             "static_pressure": "flow-1.ps", "moisture": "flow-1.h2o", "velocity": "flow-1.v", "area_m2": 2.0,
             "max_input_age_s": 30, "pollutants": {"so2": {"channel": "so2"}}}
    flowmeter = reading("flow-1", ts=1_000_000, t=cv(91.0, "C"), ps=cv(0.0, "kPa"), h2o=cv(20.0, "%"),
                        v=cv(10.0, "m/s"))
    gas = reading("gas-1", ts=1_020_000, so2=cv(50.0, "mg/m3"), o2=cv(3.5, "%"))
    v = derive(stack, gas, [flowmeter])
    # Ba defaults to 101.325 kPa: flow 43200 m3/h (worked above); rate 50 * 43200e-6 = 2.16 kg/h
    assert v["flow_std"].value == pytest.approx(43200.0)
    assert v["so2_rate"].value == pytest.approx(2.16)
    assert v["so2_zs"].value == pytest.approx(50.0)  # at the reference O2 (3.5 %) nothing changes
    stale = reading("gas-1", ts=1_031_000, so2=cv(50.0, "mg/m3"), o2=cv(3.5, "%"))
    v = derive(stack, stale, [flowmeter])  # 31 s > 30 s
    assert v["flow_std"].value is None and v["flow_std"].flag is Flag.B and "31 s old" in v["flow_std"].note
    assert v["so2_std"].flag is Flag.N


def test_a_device_that_is_no_stack_is_left_alone():
    r = reading("dust-1", pm10=cv(40.0, "ug/m3"))
    derive(r=r)
    assert list(r.values) == ["pm10"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"boiler": None}, "reference O2 unknown"),
        ({"o2_guard": 8.0}, "must be above the reference O2"),
        ({"area_m2": None}, "velocity needs area_m2"),
        ({"moisture": None}, "need moisture"),
        ({"temperature": None}, "need temperature and static_pressure"),
        ({"o2": "O2 channel"}, "give a number, a channel name, or device.channel"),
        ({"pollutants": {"nox": {"no": "no"}}}, "needs both no and no2"),
        ({"pollutants": {"x": {"channel": "x", "gas": "xenon"}}}, "unknown gas"),
    ],
)
def test_stack_config_errors_say_what_to_fix(change, message):
    with pytest.raises(ValidationError, match=message):
        StackConfig.model_validate({**STACK, **change})
