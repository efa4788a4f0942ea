"""A seeded :class:`murmur.base.rng.Rng` for the simulator and the tests (replayable runs)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from math import log
from typing import TypeVar

T = TypeVar("T")


class SeededRng:
    __slots__ = ("_random",)

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def random_bytes(self, n: int) -> bytes:
        return self._random.randbytes(n)

    def random(self) -> float:
        return self._random.random()

    def randrange(self, n: int) -> int:
        return self._random.randrange(n)

    def uniform(self, a: float, b: float) -> float:
        return self._random.uniform(a, b)

    def expovariate(self, rate: float) -> float:
        # random.Random.expovariate's own formula, inlined: the same draws, one call fewer
        # (diffusion draws one per relayed copy, millions per run).
        return -log(1.0 - self._random.random()) / rate

    def choice(self, seq: Sequence[T]) -> T:
        return self._random.choice(seq)

    def sample(self, seq: Sequence[T], k: int) -> list[T]:
        return self._random.sample(list(seq), k)

    def shuffle(self, items: list[T]) -> None:
        self._random.shuffle(items)

    def fork(self, label: int) -> SeededRng:
        """An independent stream, so adding a node does not shift every other node's draws."""
        return SeededRng(self._random.getrandbits(64) ^ (label * 0x9E3779B97F4A7C15))
