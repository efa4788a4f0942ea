from __future__ import annotations

import math

import pytest

from murmur.sim.adversary import AdversaryLog, Sighting
from murmur.sim.estimators import first_spy, stem_predecessor
from murmur.sim.metrics import mean_and_stderr, posterior_entropy_bits, precision_recall, quantile


def test_precision_and_recall_follow_fanti_et_al() -> None:
    origins = {b"t1": 1, b"t2": 2, b"t3": 3, b"t4": 4}
    guesses = {b"t1": 1, b"t2": 1, b"t3": 3}  # t4 unseen: a miss
    precision, recall = precision_recall(guesses, origins)
    # node 1 is named for {t1, t2}, one is its own: 1/2; node 3 for {t3}: 1; over 4 originators.
    assert precision == pytest.approx((1 / 2 + 1) / 4)
    assert recall == pytest.approx(2 / 4)


def test_perfect_and_empty_estimators() -> None:
    origins = {b"a": 1, b"b": 2}
    assert precision_recall(origins, origins) == (1.0, 1.0)
    assert precision_recall({}, origins) == (0.0, 0.0)
    assert precision_recall({}, {}) == (0.0, 0.0)


def test_entropy_of_the_calibrated_posterior() -> None:
    origins = {b"a": 1, b"b": 2, b"c": 3, b"d": 4}
    assert posterior_entropy_bits(origins, origins, 4) == 0.0
    assert posterior_entropy_bits({}, origins, 4) == pytest.approx(2.0)
    half = {b"a": 1, b"b": 1}  # placed 2, right once: r = 1/2; two unplaced
    placed = 1.0 + 0.5 * math.log2(3)
    expected = (2 * placed + 2 * 2.0) / 4
    assert posterior_entropy_bits(half, origins, 4) == pytest.approx(expected)


def test_quantile_and_standard_error() -> None:
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([0.0, 10.0], 0.99) == pytest.approx(9.9)
    assert math.isnan(quantile([], 0.5))
    mean, se = mean_and_stderr([1.0, 2.0, 3.0])
    assert mean == 2.0 and se == pytest.approx(1.0 / math.sqrt(3))


def _log(*sightings: Sighting) -> AdversaryLog:
    log = AdversaryLog(spies=frozenset(s.spy for s in sightings), tapped=frozenset())
    for s in sorted(sightings):
        log.sightings.append(s)
        log.first.setdefault(s.tx_id, s)
        log.first_by_phase.setdefault(s.phase, {}).setdefault(s.tx_id, s)
    return log


def test_first_spy_names_the_sender_of_the_earliest_sighting() -> None:
    log = _log(
        Sighting(2.0, 9, b"x", 4, "fluff"),
        Sighting(1.0, 8, b"x", 3, "fluff"),
        Sighting(0.5, 9, b"y", 5, "stem"),
    )
    assert first_spy(log) == {b"x": 3, b"y": 5}


def test_stem_predecessor_abstains_without_a_stem_sighting() -> None:
    log = _log(Sighting(1.0, 8, b"x", 3, "fluff"), Sighting(0.5, 9, b"y", 5, "stem"))
    assert stem_predecessor(log) == {b"y": 5}


def test_one_value_has_no_standard_error_rather_than_zero() -> None:
    mean, se = mean_and_stderr([0.25])
    assert mean == 0.25 and math.isnan(se)
