"""Request planning: fewest requests, nothing missed, no request over the device's limit."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.acquisition.planner import Request, plan_items, plan_profile, rtu_wire_time_s
from gateway.profile import RegisterSpec, load_profile

WIDTH = {"u16": 1, "u32": 2, "f32": 2, "f64": 4}


@st.composite
def register_sets(draw):
    n = draw(st.integers(1, 40))
    items = []
    for i in range(n):
        type_ = draw(st.sampled_from(list(WIDTH)))
        address = draw(st.integers(0, 400))
        function = draw(st.sampled_from([3, 4]))
        items.append(RegisterSpec(channel=f"c{i}", address=address, function=function, type=type_))
    return items


def covered(req: Request, it: RegisterSpec) -> bool:
    return req.function == it.function and req.address <= it.address and it.address + it.words <= req.end


@settings(max_examples=300)
@given(register_sets(), st.integers(4, 125), st.integers(0, 20))
def test_plan_reads_every_register_once_within_limits(items, max_registers, max_gap):
    plan = plan_items(items, max_registers=max_registers, max_bits=2000, max_gap=max_gap)
    for req in plan:
        assert 1 <= req.count <= max_registers
    for it in items:
        carrying = [r for r in plan if it in r.items]
        assert len(carrying) == 1, "each register is read by exactly one request"
        assert covered(carrying[0], it)
    # when no two channels share a register, requests of one function never overlap: nothing is read twice
    for f in (3, 4):
        regs = [a for it in items if it.function == f for a in range(it.address, it.address + it.words)]
        if len(regs) != len(set(regs)):
            continue
        spans = sorted((r.address, r.end) for r in plan if r.function == f)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


def optimal_count(items, max_registers, max_gap) -> int:
    """Brute force over contiguous partitions in address order (dynamic programming)."""
    total = 0
    for f in (3, 4):
        xs = sorted((it for it in items if it.function == f), key=lambda it: (it.address, it.words))
        best = [0] + [10**9] * len(xs)
        for j in range(1, len(xs) + 1):
            for i in range(j):
                block = xs[i:j]
                start = block[0].address
                end = start
                ok = True
                for it in block:
                    if it.address - end > max_gap and it is not block[0]:
                        ok = False
                        break
                    end = max(end, it.address + it.words)
                if ok and end - start <= max_registers:
                    best[j] = min(best[j], best[i] + 1)
        total += best[len(xs)]
    return total


@settings(max_examples=200)
@given(register_sets(), st.integers(4, 40), st.integers(0, 10))
def test_plan_uses_the_fewest_requests(items, max_registers, max_gap):
    plan = plan_items(items, max_registers=max_registers, max_bits=2000, max_gap=max_gap)
    assert len(plan) == optimal_count(items, max_registers, max_gap)


def test_cwt_station_is_one_request_instead_of_eleven():
    plan = plan_profile(load_profile("cwt-dust-weather"))
    assert [(r.function, r.address, r.count) for r in plan] == [(3, 0x01F4, 14)]


def test_device_limit_splits_the_cems_block():
    cems = load_profile("cems-analyzer")
    assert len(plan_profile(cems)) == 1
    small = plan_profile(cems, max_registers=16)
    assert all(r.count <= 16 for r in small) and len(small) >= 2


def test_zero_gap_never_reads_unmapped_registers():
    cwt = load_profile("cwt-dust-weather")
    plan = plan_profile(cwt, max_gap=0)
    assert [(r.address, r.count) for r in plan] == [(0x01F4, 10), (0x0201, 1)]


def test_wire_time_counts_bytes_and_silences():
    # one read of 1 register at 9600 baud: 8 + 7 bytes, plus 2 x 3.5 characters, 11 bits each
    req = Request(3, 0, 1, ())
    assert rtu_wire_time_s([req], 9600) == (15 + 7) * 11 / 9600
