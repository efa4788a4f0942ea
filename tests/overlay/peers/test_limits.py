import dataclasses

import pytest

from murmur.overlay.peers.limits import (
    FLOOD_DROPS_BURST,
    FLOOD_DROPS_FORGIVEN_PER_S,
    MIB,
    PeerLimits,
    PeerRateLimiter,
)


def test_defaults() -> None:
    limits = PeerLimits()
    assert (limits.max_inbound, limits.max_outbound) == (32, 8)
    assert (limits.bytes_per_s, limits.bytes_burst) == (4 * MIB, 8 * MIB)
    assert (limits.messages_per_s, limits.messages_burst) == (2000, 4000)
    assert (limits.pings_per_s, limits.pings_burst, limits.ban_s) == (2.0, 5, 3600.0)


@pytest.mark.parametrize(
    "change",
    [
        {"max_inbound": 0},
        {"bytes_per_s": -1},
        {"ban_s": float("nan")},
        # Wrong types: __post_init__'s checks; a compiled build refuses them at the boundary
        # instead (a TypeError, and a bool passes as an int there).
        pytest.param({"max_outbound": 1.5}, marks=pytest.mark.interpreted_only),
        pytest.param({"pings_burst": True}, marks=pytest.mark.interpreted_only),
        pytest.param({"messages_per_s": "9"}, marks=pytest.mark.interpreted_only),
    ],
)
def test_invalid_limits_cannot_exist(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(PeerLimits(), **change)


def test_admit_charges_bytes_and_messages_atomically() -> None:
    limits = PeerLimits(bytes_per_s=100, bytes_burst=1000, messages_per_s=1, messages_burst=3)
    limiter = PeerRateLimiter(limits)
    assert limiter.admit(0.0, 600)
    # Too many bytes: refused, and the message slot is not spent.
    assert not limiter.admit(0.0, 600)
    assert limiter.admit(0.0, 400)
    assert limiter.admit(0.0, 0)
    # Out of messages while bytes are there: refused, and the bytes are not spent.
    assert not limiter.admit(0.5, 10)
    assert limiter.admit(1.0, 100)
    assert not limiter.admit(1.0, 10)  # the message bucket refills at 1/s
    assert limiter.admit(2.0, 10)


def test_message_flood_is_cut_at_burst_then_rate() -> None:
    limiter = PeerRateLimiter(PeerLimits(messages_per_s=2000, messages_burst=4000))
    admitted = sum(limiter.admit(t * 0.0002, 100) for t in range(50_000))
    # 10 s of five messages per millisecond: the burst plus 2000/s for the 10 s.
    assert 4000 + 2000 * 9 <= admitted <= 4000 + 2000 * 10


def test_drops_are_a_flood_past_an_allowance_that_refills() -> None:
    limiter = PeerRateLimiter(PeerLimits())
    assert not any(limiter.record_drop(0.0) for _ in range(FLOOD_DROPS_BURST))
    assert limiter.record_drop(0.0)
    # Forgiven at the configured pace: ten seconds later, ten more drops are not a flood.
    later = 10.0 / FLOOD_DROPS_FORGIVEN_PER_S
    assert not any(limiter.record_drop(later) for _ in range(10))
    assert limiter.record_drop(later)


def test_bursts_long_apart_are_never_a_flood() -> None:
    limiter = PeerRateLimiter(PeerLimits())
    for burst in range(20):
        now = burst * FLOOD_DROPS_BURST / FLOOD_DROPS_FORGIVEN_PER_S
        assert not any(limiter.record_drop(now) for _ in range(FLOOD_DROPS_BURST - 1))
