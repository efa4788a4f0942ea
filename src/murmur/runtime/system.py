"""The production :class:`murmur.base.rng.Rng`: every draw comes from the OS (``secrets``)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

_SYSTEM = secrets.SystemRandom()


class SystemRng:
    __slots__ = ()

    def random_bytes(self, n: int) -> bytes:
        return secrets.token_bytes(n)

    def random(self) -> float:
        return _SYSTEM.random()

    def randrange(self, n: int) -> int:
        return secrets.randbelow(n)

    def uniform(self, a: float, b: float) -> float:
        return _SYSTEM.uniform(a, b)

    def expovariate(self, rate: float) -> float:
        return _SYSTEM.expovariate(rate)

    def choice(self, seq: Sequence[T]) -> T:
        return secrets.choice(seq)

    def sample(self, seq: Sequence[T], k: int) -> list[T]:
        return _SYSTEM.sample(list(seq), k)

    def shuffle(self, items: list[T]) -> None:
        _SYSTEM.shuffle(items)
