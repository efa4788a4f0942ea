"""Seed §2.10: real and cover traffic look the same to a relay and to a link observer.

Each test samples thousands of messages of production code on a fake clock (see ``observe.py``)
and compares what an observer sees of real traffic with what it sees of cover, feature by
feature, with scipy's two-sample Kolmogorov–Smirnov test: cell sizes and record lengths, burst
sizes (the cells or bytes of one message on one link), and the gaps between bursts on a link.
Indistinguishable means p > 0.05 for every feature. The negative controls show the test has the
power to see a leak: switch padding off, or give cover a different timing law, and p < 0.05.
Seeds are fixed, so every p-value is the same on every run.
"""

from __future__ import annotations

import pytest
from scipy.stats import ks_2samp

from murmur.overlay.shaping import (
    CoverConfig,
    DelayRange,
    LinkPaddingConfig,
    RateConfig,
    ShapingPolicy,
    TimingLaw,
)
from murmur.sim.rng import SeededRng
from murmur.wire.cells import CELL_BYTES

from .observe import Observation, View, observe

SLOTS = 3000
ALPHA = 0.05
RATE_PER_S = 4.0
COVER_SIZES = ((2048, 0.75), (8192, 0.25))
"""Matches the bucket mix of :func:`transaction_size`: 3 in 4 in the 2 KiB bucket, else 8 KiB."""
LINK_PADDING = LinkPaddingConfig(quiet=DelayRange(0.2, 0.6))
FEATURES = ("sizes", "bursts", "gaps")


def transaction_size(rng: SeededRng) -> int:
    """Payload bytes of a transaction: 600-1900 (typical) or 2100-7000 (multi-input, PQ)."""
    if rng.random() < 0.75:
        return int(rng.uniform(600, 1900))
    return int(rng.uniform(2100, 7000))


def policy(law: TimingLaw, *, padding: bool = True) -> ShapingPolicy:
    extra = {} if padding else {"buckets": ()}
    return ShapingPolicy(
        cover_sizes=COVER_SIZES, rate=RateConfig(rate_per_s=RATE_PER_S, law=law), **extra
    )


def mixed_stream(policy: ShapingPolicy, seed: int) -> Observation:
    """One origin with 1 tx/s of real transactions arriving into ``policy``'s lane."""
    return observe(policy, slots=SLOTS, seed=seed, real_size=transaction_size, arrivals_per_s=1.0)


def p_values(a: View, b: View) -> dict[str, float]:
    return {f: float(ks_2samp(getattr(a, f), getattr(b, f)).pvalue) for f in FEATURES}


@pytest.fixture(scope="module")
def runs() -> dict[str, Observation]:
    """Busy (every slot real) and idle (every slot cover) origins, per timing law."""
    out: dict[str, Observation] = {}
    for law in TimingLaw:
        out[f"real_{law.value}"] = observe(
            policy(law), slots=SLOTS, seed=11, real_size=transaction_size, link_padding=LINK_PADDING
        )
        out[f"cover_{law.value}"] = observe(
            policy(law), slots=SLOTS, seed=12, real_size=None, link_padding=LINK_PADDING
        )
    return out


@pytest.mark.parametrize("law", list(TimingLaw))
def test_a_busy_origin_looks_like_an_idle_one_to_relays_and_link_observers(
    runs: dict[str, Observation], law: TimingLaw
) -> None:
    real, cover = runs[f"real_{law.value}"], runs[f"cover_{law.value}"]
    assert (real.real_sent, real.cover_sent) == (SLOTS, 0)
    assert (cover.real_sent, cover.cover_sent) == (0, SLOTS)
    assert set(real.relay.sizes) == set(cover.relay.sizes) == {CELL_BYTES}
    assert len(set(real.link.sizes) | set(cover.link.sizes)) == 1  # cells and padding frames
    for view in ("relay", "link"):
        a, b = getattr(real, view), getattr(cover, view)
        assert min(len(a.gaps), len(b.gaps)) > 1000
        p = p_values(a, b)
        assert min(p.values()) > ALPHA, f"{law.value} {view}: {p}"


def test_within_one_constant_rate_stream_real_messages_look_like_cover() -> None:
    """A link observer labels each message of a mixed stream: size and preceding gap match."""
    mixed = mixed_stream(policy(TimingLaw.CONSTANT), seed=21)
    assert mixed.real_sent > 500 and mixed.cover_sent > 500
    for feature in ("bursts", "gaps"):
        real = mixed.link.split(feature, real=True)
        cover = mixed.link.split(feature, real=False)
        assert ks_2samp(real, cover).pvalue > ALPHA, feature


def test_under_background_cover_real_messages_look_like_cover() -> None:
    """The standard level: real messages leave at once, Poisson cover on its own clock. The
    departures are the superposition of two independent processes, so the gap before a real
    message and before a cover message have the same law, and cover sizes follow real ones."""
    cover = CoverConfig(rate_per_s=RATE_PER_S)
    mixed = mixed_stream(ShapingPolicy(cover=cover, cover_sizes=COVER_SIZES), seed=31)
    assert mixed.real_sent > 400 and mixed.cover_sent > 1500
    for view in ("relay", "link"):
        for feature in ("bursts", "gaps"):
            observed = getattr(mixed, view)
            real = observed.split(feature, real=True)
            cover = observed.split(feature, real=False)
            assert ks_2samp(real, cover).pvalue > ALPHA, f"{view} {feature}"


def test_poisson_slots_leak_which_message_is_real_through_the_gap_before_it() -> None:
    """Why the default is constant rate: with Poisson slots a long gap leaves time for a real
    message to arrive, so real messages follow longer gaps than cover (Loopix shares this)."""
    mixed = mixed_stream(policy(TimingLaw.POISSON), seed=21)
    real, cover = mixed.link.split("gaps", real=True), mixed.link.split("gaps", real=False)
    assert ks_2samp(real, cover).pvalue < ALPHA
    assert sum(real) / len(real) > sum(cover) / len(cover)


def test_negative_control_without_padding_message_sizes_give_real_traffic_away(
    runs: dict[str, Observation],
) -> None:
    unpadded = observe(
        policy(TimingLaw.CONSTANT, padding=False),
        slots=SLOTS,
        seed=11,
        real_size=transaction_size,
        link_padding=LINK_PADDING,
    )
    cover = runs["cover_constant"]
    for view in ("relay", "link"):
        p = p_values(getattr(unpadded, view), getattr(cover, view))
        assert p["bursts"] < ALPHA, f"{view}: {p}"


def test_negative_control_cover_on_another_timing_law_is_told_apart(
    runs: dict[str, Observation],
) -> None:
    real, cover = runs["real_poisson"], runs["cover_constant"]
    for view in ("relay", "link"):
        p = p_values(getattr(real, view), getattr(cover, view))
        assert p["gaps"] < ALPHA, f"{view}: {p}"
