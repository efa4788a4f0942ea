"""Transaction workloads: Poisson arrivals from uniformly chosen honest origins.

Theory of operation: arrivals form a Poisson process of rate ``rate_per_s`` starting at
``start_s``. :func:`poisson_arrivals` draws each origin uniformly among the honest nodes;
:func:`one_per_honest` gives every honest node exactly one transaction, in random order (the
Dandelion++ paper's setup). Bodies are random bytes, so transaction ids never collide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from murmur.base.errors import ConfigError
from murmur.base.rng import Rng
from murmur.overlay.diffusion import Transaction


@dataclass(frozen=True, slots=True)
class TxArrival:
    time: float
    origin: int
    tx: Transaction


def poisson_arrivals(
    count: int,
    *,
    honest: Sequence[int],
    rate_per_s: float,
    size_bytes: int,
    rng: Rng,
    start_s: float = 0.0,
) -> list[TxArrival]:
    _check(honest, rate_per_s)
    origins = [honest[rng.randrange(len(honest))] for _ in range(count)]
    return _timed(origins, rate_per_s, size_bytes, rng, start_s)


def one_per_honest(
    *, honest: Sequence[int], rate_per_s: float, size_bytes: int, rng: Rng, start_s: float = 0.0
) -> list[TxArrival]:
    _check(honest, rate_per_s)
    origins = list(honest)
    rng.shuffle(origins)
    return _timed(origins, rate_per_s, size_bytes, rng, start_s)


def _check(honest: Sequence[int], rate_per_s: float) -> None:
    if not honest:
        raise ConfigError("a workload needs at least one honest node")
    if rate_per_s <= 0.0:
        raise ConfigError("the transaction rate must be positive")


def _timed(
    origins: list[int], rate_per_s: float, size_bytes: int, rng: Rng, start_s: float
) -> list[TxArrival]:
    arrivals = []
    t = start_s
    for origin in origins:
        t += rng.expovariate(rate_per_s)
        arrivals.append(TxArrival(t, origin, Transaction(rng.random_bytes(size_bytes))))
    return arrivals
