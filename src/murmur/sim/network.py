"""The network model: link latency, jitter, uplink bandwidth and churn parameters.

Theory of operation: every node sits in a region (drawn once, weighted by where public nodes
are); each link gets a constant one-way latency from the region-pair table, scaled by a per-link
factor and clipped to ``[latency_min_ms, latency_max_ms]`` (default 10-300 ms, an
inter-continental mix). The per-link factor is a hash of ``(seed, link)``, not a draw from a
shared stream, so a link has the same latency whichever protocol runs and in whatever order links
are first used: the protocol and the diffusion baseline it is compared with see the same network.
Each message adds jitter, uniform in ``[0, jitter_fraction x latency]``, and a link delivers in
order (TCP), so jitter never reorders a link.

Uplink bandwidth: a message takes ``size x 8 / uplink_bps`` to serialise, behind the backlog of
messages the node sent at once (see :mod:`murmur.sim.engine` for the exact queueing rule).
Downlinks are not modelled.

``NetworkConfig.ideal()`` is the model of the Dandelion++ paper's simulations: no latency, no
jitter, unlimited bandwidth, no churn, so only the protocols' own random delays order events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from murmur.base.errors import ConfigError
from murmur.base.rng import Rng

REGION_WEIGHTS: tuple[float, ...] = (0.30, 0.42, 0.16, 0.05, 0.04, 0.03)
"""Share of public nodes per region (roughly the Bitcoin reachable-node census)."""
REGION_NAMES: tuple[str, ...] = ("na", "eu", "as", "sa", "oc", "af")
"""The regions' labels, in the order of ``REGION_WEIGHTS`` and ``REGION_ONE_WAY_MS``."""
REGION_ONE_WAY_MS: tuple[tuple[float, ...], ...] = (
    # NA    EU     AS     SA     OC     AF
    (22.0, 45.0, 90.0, 65.0, 80.0, 110.0),  # north america
    (45.0, 12.0, 110.0, 100.0, 140.0, 75.0),  # europe
    (90.0, 110.0, 35.0, 160.0, 65.0, 150.0),  # asia
    (65.0, 100.0, 160.0, 30.0, 150.0, 170.0),  # south america
    (80.0, 140.0, 65.0, 150.0, 15.0, 200.0),  # oceania
    (110.0, 75.0, 150.0, 170.0, 200.0, 40.0),  # africa
)
"""Typical one-way latency between regions (half the usual round-trip times)."""

_MASK64 = (1 << 64) - 1


class LatencyModel(Protocol):
    def one_way_s(self, a: int, b: int) -> float:
        """The constant one-way latency of link ``a - b`` (symmetric)."""
        ...

    def typical_one_way_s(self, a: int, b: int) -> float:
        """What anyone can tell of link ``a - b``'s latency without measuring it (from where
        the two nodes are, as IP geolocation places them): an adversary's public estimate."""
        ...


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    latency: str = "regions"
    """``regions`` (inter-continental mix), ``uniform`` (uniform in [min, max]) or ``none``."""
    latency_min_ms: float = 10.0
    latency_max_ms: float = 300.0
    link_spread: float = 0.3
    """Per-link factor on the region-pair latency: uniform in [1 - spread, 1 + spread]."""
    jitter_fraction: float = 0.1
    uplink_mbps: float | None = 10.0
    """Per-node uplink; ``None`` is unlimited."""
    churn_per_node_per_hour: float = 0.0
    """Rate at which each node leaves; it rejoins after an exponential downtime."""
    mean_downtime_s: float = 600.0

    def __post_init__(self) -> None:
        if self.latency not in ("regions", "uniform", "none"):
            raise ConfigError(f"unknown latency model {self.latency!r}")
        if not 0.0 <= self.latency_min_ms <= self.latency_max_ms:
            raise ConfigError("need 0 <= latency_min_ms <= latency_max_ms")
        if not 0.0 <= self.link_spread < 1.0 or self.jitter_fraction < 0.0:
            raise ConfigError("link spread must be in [0, 1) and jitter non-negative")
        if self.uplink_mbps is not None and self.uplink_mbps <= 0.0:
            raise ConfigError("uplink bandwidth must be positive")
        if self.churn_per_node_per_hour < 0.0 or self.mean_downtime_s <= 0.0:
            raise ConfigError("churn rate must be >= 0 and downtime > 0")

    @classmethod
    def ideal(cls) -> NetworkConfig:
        return cls(latency="none", jitter_fraction=0.0, uplink_mbps=None)

    @property
    def uplink_bps(self) -> float | None:
        return None if self.uplink_mbps is None else self.uplink_mbps * 1e6


class ZeroLatency:
    __slots__ = ()

    def one_way_s(self, a: int, b: int) -> float:
        return 0.0

    def typical_one_way_s(self, a: int, b: int) -> float:
        return 0.0


class UniformLatency:
    """Per-link latency uniform in ``[low_s, high_s]``, fixed by ``(seed, link)``."""

    __slots__ = ("_high", "_low", "_seed")

    def __init__(self, low_s: float, high_s: float, *, seed: int) -> None:
        self._low, self._high, self._seed = low_s, high_s, seed

    def one_way_s(self, a: int, b: int) -> float:
        return self._low + (self._high - self._low) * link_uniform(self._seed, a, b)

    def typical_one_way_s(self, a: int, b: int) -> float:
        """The same for every link: nothing public tells two links apart in this model."""
        return (self._low + self._high) / 2.0


class RegionLatency:
    """Region-pair latency times a per-link factor, clipped to ``[low_s, high_s]``."""

    __slots__ = ("_high", "_low", "_regions", "_seed", "_spread", "_table")

    def __init__(
        self,
        regions: Sequence[int],
        *,
        seed: int,
        spread: float,
        low_s: float,
        high_s: float,
        table_ms: Sequence[Sequence[float]] = REGION_ONE_WAY_MS,
    ) -> None:
        self._regions = list(regions)
        self._table = [[ms / 1000.0 for ms in row] for row in table_ms]
        self._seed, self._spread, self._low, self._high = seed, spread, low_s, high_s

    @property
    def regions(self) -> tuple[int, ...]:
        """Each node's region, an index into the table (and ``REGION_NAMES``)."""
        return tuple(self._regions)

    def one_way_s(self, a: int, b: int) -> float:
        base = self._table[self._regions[a]][self._regions[b]]
        factor = 1.0 + self._spread * (2.0 * link_uniform(self._seed, a, b) - 1.0)
        return min(self._high, max(self._low, base * factor))

    def typical_one_way_s(self, a: int, b: int) -> float:
        """The region pair's latency, without the link's own factor (which needs a ping)."""
        return self._table[self._regions[a]][self._regions[b]]


def draw_regions(n: int, rng: Rng, weights: Sequence[float] = REGION_WEIGHTS) -> list[int]:
    cumulative: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    regions = []
    for _ in range(n):
        x = rng.random() * total
        regions.append(next(i for i, c in enumerate(cumulative) if x < c))
    return regions


def build_latency(config: NetworkConfig, n: int, rng: Rng) -> LatencyModel:
    seed = int.from_bytes(rng.random_bytes(8), "big")
    low, high = config.latency_min_ms / 1000.0, config.latency_max_ms / 1000.0
    if config.latency == "none":
        return ZeroLatency()
    if config.latency == "uniform":
        return UniformLatency(low, high, seed=seed)
    return RegionLatency(
        draw_regions(n, rng), seed=seed, spread=config.link_spread, low_s=low, high_s=high
    )


def link_uniform(seed: int, a: int, b: int) -> float:
    """A uniform float in [0, 1) fixed by ``(seed, {a, b})`` (SplitMix64 finaliser)."""
    lo, hi = (a, b) if a <= b else (b, a)
    z = (seed ^ (lo * 0x9E3779B97F4A7C15) ^ (hi * 0xC2B2AE3D27D4EB4F)) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)
