"""The slot clock: its law never depends on the queue; real first, then cover; bounded waits."""

from __future__ import annotations

import itertools
import statistics

import pytest

from murmur.overlay.shaping import RateConfig, RateSender, TimingLaw
from murmur.sim.rng import SeededRng


def _run(sender: RateSender[str], until: float, queue: list[str]) -> list[tuple[float, str | None]]:
    """Drives the sender slot by slot; ``queue`` is enqueued at the start."""
    for item in queue:
        sender.enqueue(item, 0.0)
    out: list[tuple[float, str | None]] = []
    while (t := sender.next_deadline()) <= until:
        assert sender.slot_due(t)
        out.append((t, sender.take_slot(t)))
    return out


def test_constant_rate_slots_are_evenly_spaced_after_a_random_phase() -> None:
    phases = set()
    for seed in range(5):
        sender: RateSender[str] = RateSender(RateConfig(rate_per_s=2.0), SeededRng(seed), 10.0)
        slots = _run(sender, 20.0, ["tx1", "tx2"])
        times = [t for t, _ in slots]
        assert 10.0 <= times[0] < 10.5
        assert all(b - a == pytest.approx(0.5) for a, b in itertools.pairwise(times))
        assert [item for _, item in slots][:3] == ["tx1", "tx2", None]
        phases.add(round(times[0], 6))
    assert len(phases) == 5


def test_poisson_slots_have_exponential_gaps_whatever_the_queue_holds() -> None:
    config = RateConfig(rate_per_s=5.0, law=TimingLaw.POISSON, max_wait_s=3600.0)
    busy = _run(RateSender(config, SeededRng(1), 0.0), 2000.0, [f"tx{i}" for i in range(20_000)])
    idle = _run(RateSender(config, SeededRng(1), 0.0), 2000.0, [])
    assert [t for t, _ in busy] == [t for t, _ in idle]  # same draws, same slots
    assert all(item is not None for _, item in busy) and all(item is None for _, item in idle)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(idle)]
    assert statistics.fmean(gaps) == pytest.approx(0.2, rel=0.03)


def test_skipped_slots_keep_the_queue_and_late_timers_do_not_burst() -> None:
    sender: RateSender[str] = RateSender(RateConfig(rate_per_s=10.0), SeededRng(4), 0.0)
    sender.enqueue("tx", 0.0)
    first = sender.next_deadline()
    sender.skip_slot(first)
    assert len(sender) == 1 and sender.counters.get("slots_skipped") == 1
    late = first + 1.05  # the slot due at first + 0.1 is used late; nine more were missed
    assert sender.take_slot(late) == "tx"
    assert sender.counters.get("slots_missed") == 9
    assert late < sender.next_deadline() <= late + 0.1
    assert not sender.slot_due(late)


def test_a_late_timer_on_a_poisson_clock_does_not_burst() -> None:
    """The next slot after a late one is a fresh gap after it, not at once."""
    config = RateConfig(rate_per_s=10.0, law=TimingLaw.POISSON)
    for seed in range(20):
        sender: RateSender[str] = RateSender(config, SeededRng(seed), 0.0)
        for item in ("a", "b"):
            sender.enqueue(item, 0.0)
        late = sender.next_deadline() + 5.0  # some fifty slots late
        assert sender.take_slot(late) == "a"
        assert not sender.slot_due(late) and sender.next_deadline() > late
        assert len(sender) == 1


def test_messages_that_wait_too_long_expire_in_order() -> None:
    sender: RateSender[str] = RateSender(
        RateConfig(rate_per_s=0.01, max_wait_s=5.0), SeededRng(5), 0.0
    )
    sender.enqueue("a", 0.0)
    sender.enqueue("b", 1.0)
    sender.enqueue("c", 3.0)
    # the first slot falls after "a" has waited its 5 s: the sender wakes for the expiry
    assert sender.slot_due(5.0) is False and sender.next_deadline() == 5.0
    assert sender.expire(4.9) == []
    assert sender.expire(6.0) == ["a", "b"]
    assert len(sender) == 1 and sender.counters.get("expired") == 2
