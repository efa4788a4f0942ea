from __future__ import annotations

import random

from murmur.sim.rng import SeededRng


def test_exponential_draws_are_pythons_own() -> None:
    # The simulator inlines random.Random.expovariate; runs must stay comparable with it.
    ours, python = SeededRng(7), random.Random(7)
    assert [ours.expovariate(0.5) for _ in range(1000)] == [
        python.expovariate(0.5) for _ in range(1000)
    ]


def test_a_fork_is_fixed_by_the_seed_and_its_label() -> None:
    assert SeededRng(3).fork(1).random() == SeededRng(3).fork(1).random()
    assert SeededRng(3).fork(1).random() != SeededRng(3).fork(2).random()
