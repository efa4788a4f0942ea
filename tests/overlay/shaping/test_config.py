"""Shaping tunables validate themselves and draw from the laws they name."""

from __future__ import annotations

import statistics

import pytest

from murmur.overlay.shaping import DelayRange, RateConfig, ShapingPolicy, TimingLaw
from murmur.sim.rng import SeededRng
from murmur.wire.cells import MAX_ENVELOPE_BYTES


def test_delay_range_draws_uniformly_within_its_bounds() -> None:
    rng = SeededRng(1)
    draws = [DelayRange(0.05, 0.15).draw(rng) for _ in range(5000)]
    assert min(draws) >= 0.05 and max(draws) <= 0.15
    assert statistics.fmean(draws) == pytest.approx(0.10, abs=0.003)
    # uniform, not a point or a lump in the middle: sd = width / sqrt(12), quartiles at 1/4, 3/4
    assert statistics.pstdev(draws) == pytest.approx(0.1 / 12**0.5, rel=0.05)
    quartiles = statistics.quantiles(draws, n=4)
    assert quartiles[0] == pytest.approx(0.075, abs=0.003)
    assert quartiles[2] == pytest.approx(0.125, abs=0.003)
    assert DelayRange(0.2, 0.2).draw(rng) == 0.2


@pytest.mark.parametrize(
    ("low", "high"), [(-0.1, 1.0), (0.5, 0.4), (0.0, 61.0), (0.0, float("nan"))]
)
def test_delay_range_rejects_bad_bounds(low: float, high: float) -> None:
    with pytest.raises(ValueError):
        DelayRange(low, high)


def test_rate_gaps_follow_their_law() -> None:
    rng = SeededRng(2)
    assert RateConfig(rate_per_s=4.0, law=TimingLaw.CONSTANT).gap(rng) == 0.25
    gaps = [RateConfig(rate_per_s=4.0, law=TimingLaw.POISSON).gap(rng) for _ in range(20_000)]
    assert statistics.fmean(gaps) == pytest.approx(0.25, rel=0.03)
    assert statistics.pstdev(gaps) == pytest.approx(0.25, rel=0.05)  # exponential: sd = mean
    with pytest.raises(ValueError):
        RateConfig(rate_per_s=0.0)


def test_policy_validates_buckets_cover_sizes_and_bounds() -> None:
    for bad in [
        {"buckets": (2048, 512)},
        {"buckets": (MAX_ENVELOPE_BYTES + 1,)},
        {"cover_sizes": ()},
        {"cover_sizes": ((2048, 0.0),)},
        {"cover_sizes": ((0, 1.0),)},
        {"cover_sizes": ((MAX_ENVELOPE_BYTES + 1, 1.0),)},  # no message pads that far
        {"max_pending": 0},
    ]:
        with pytest.raises(ValueError):
            ShapingPolicy(**bad)  # type: ignore[arg-type]
    assert ShapingPolicy(buckets=()).buckets == ()
