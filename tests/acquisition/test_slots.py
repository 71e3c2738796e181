"""Poll slots: a poll that finishes a little late (the event loop was busy) still gets its next slot, polled at
once, instead of losing it; only slots that are wholly in the past are skipped, and those are counted."""

from __future__ import annotations

from gateway.acquisition.poller import DeviceHealth, DeviceState


def device(interval_s: float) -> DeviceState:
    return DeviceState(decoder=None, health=DeviceHealth("d", "b"), interval_s=interval_s,  # type: ignore[arg-type]
                       timeout_s=1.0, retries=0, address=1, backoff_max_s=60.0)


def test_a_slot_whose_time_came_during_a_late_poll_is_still_taken() -> None:
    d = device(0.05)
    d.due = 100.0
    d.schedule_next(100.06)  # the poll due at 100.00 ended at 100.06: the slot of 100.05 is late, not lost
    assert d.due == 100.05
    assert d.health.missed_slots == 0


def test_slots_wholly_in_the_past_are_skipped_and_counted() -> None:
    d = device(0.05)
    d.due = 100.0
    d.schedule_next(100.17)  # slots 100.05 and 100.10 are over (their successors began); 100.15 is taken late
    assert abs(d.due - 100.15) < 1e-9
    assert d.health.missed_slots == 2
    assert d.health.overruns == 1


def test_an_on_time_poll_moves_to_the_next_slot() -> None:
    d = device(10)
    d.due = 100.0
    d.schedule_next(100.2)
    assert d.due == 110.0
    assert d.health.missed_slots == 0 and d.health.overruns == 0
