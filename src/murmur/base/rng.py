"""Randomness is injected, never read from the system inside the core.

The core only sees this protocol. The runtime passes an OS-backed implementation
(:class:`murmur.runtime.system.SystemRng`); the simulator and the tests pass a seeded one
(:class:`murmur.sim.rng.SeededRng`), so every run can be replayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class Rng(Protocol):
    def random_bytes(self, n: int) -> bytes:
        """``n`` uniformly random bytes (key material in production)."""
        ...

    def random(self) -> float:
        """A float uniform in [0, 1)."""
        ...

    def randrange(self, n: int) -> int:
        """An int uniform in [0, n)."""
        ...

    def uniform(self, a: float, b: float) -> float: ...

    def expovariate(self, rate: float) -> float: ...

    def choice(self, seq: Sequence[T]) -> T: ...

    def sample(self, seq: Sequence[T], k: int) -> list[T]: ...

    def shuffle(self, items: list[T]) -> None: ...
