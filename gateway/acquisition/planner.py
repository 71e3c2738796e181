"""Request planning: coalesce a device's registers into the fewest reads the device accepts.

Greedy in address order is optimal here: blocks are contiguous address ranges, and any contiguous run of a
feasible block is itself feasible, so extending the current block as far as allowed never costs a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.profile import Profile, RegisterSpec, StatusSpec

Item = RegisterSpec | StatusSpec


@dataclass(frozen=True, slots=True)
class Request:
    """One Modbus read: function, first address, count (registers, or bits for FC 1/2) and what it carries."""

    function: int
    address: int
    count: int
    items: tuple[Item, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


def plan_items(
    items: Iterable[Item], *, max_registers: int, max_bits: int, max_gap: int
) -> list[Request]:
    by_function: dict[int, list[Item]] = {}
    for it in items:
        by_function.setdefault(it.function, []).append(it)
    requests: list[Request] = []
    for function in sorted(by_function):
        limit = max_bits if function in (1, 2) else max_registers
        ordered = sorted(by_function[function], key=lambda it: (it.address, it.words))
        start = end = -1
        block: list[Item] = []
        for it in ordered:
            it_end = it.address + it.words
            if block and it.address - end <= max_gap and max(end, it_end) - start <= limit:
                end = max(end, it_end)
                block.append(it)
                continue
            if block:
                requests.append(Request(function, start, end - start, tuple(block)))
            start, end, block = it.address, it_end, [it]
        if block:
            requests.append(Request(function, start, end - start, tuple(block)))
    return requests


def split_request(req: Request) -> list[Request]:
    """The same items read without crossing any unmapped register (max_gap 0); one request when there is no gap."""
    return plan_items(req.items, max_registers=req.count, max_bits=req.count, max_gap=0)


def plan_profile(
    profile: Profile,
    *,
    max_registers: int | None = None,
    max_gap: int | None = None,
    extra: Sequence[RegisterSpec] = (),
) -> list[Request]:
    """The read plan of one device; per-device overrides narrow the profile's own limits."""
    return plan_items(
        [*profile.registers, *extra, *profile.status],
        max_registers=max_registers or profile.max_registers_per_request,
        max_bits=profile.max_bits_per_request,
        max_gap=profile.max_gap if max_gap is None else max_gap,
    )


def one_request_per_item(profile: Profile) -> list[Request]:
    """The naive plan (what many gateways do): one read per channel. Used for comparison in `plume plan`."""
    items: list[Item] = [*profile.registers, *profile.status]
    return [Request(it.function, it.address, it.words, (it,)) for it in items]


# --- wire cost -------------------------------------------------------------------------------------------

RTU_REQUEST_BYTES = 8  # id, fc, addr(2), count(2), crc(2)
TCP_MBAP_BYTES = 7


def response_pdu_bytes(req: Request) -> int:
    """fc + byte count + data."""
    data = (req.count + 7) // 8 if req.function in (1, 2) else 2 * req.count
    return 2 + data


def rtu_bytes(req: Request) -> tuple[int, int]:
    """(request, response) frame sizes on an RTU line."""
    return RTU_REQUEST_BYTES, 1 + response_pdu_bytes(req) + 2


def tcp_bytes(req: Request) -> tuple[int, int]:
    return TCP_MBAP_BYTES + 5, TCP_MBAP_BYTES + response_pdu_bytes(req)


def rtu_wire_time_s(requests: Iterable[Request], baudrate: int, bits_per_char: int = 11) -> float:
    """Theoretical bus time: every byte at bits_per_char / baud, plus a 3.5-character silence after each frame."""
    char_s = bits_per_char / baudrate
    total = 0.0
    for r in requests:
        q, a = rtu_bytes(r)
        total += (q + a) * char_s + 2 * 3.5 * char_s
    return total
