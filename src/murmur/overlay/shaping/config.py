"""Tunables of traffic shaping, with their units: delay ranges, the sending law, cover sizes.

Theory of operation. A privacy level (``murmur.node.levels``) is a set of these values; the
mechanisms in this package read them and nothing else, so the simulator can sweep any of them
without touching code. Every range is closed and in seconds; every size is in bytes of a padded
message (see :func:`murmur.wire.cells.padded_size`). Defaults here are the seed's (§2.2–2.3) and
are provisional until measured.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from murmur.base.rng import Rng
from murmur.wire.cells import MAX_ENVELOPE_BYTES, PADDING_BUCKETS_BYTES, check_buckets

MAX_DELAY_S = 60.0
"""No configured delay may exceed a minute (a bound on what a queue can hold back)."""
TYPICAL_TX_BUCKET_BYTES = PADDING_BUCKETS_BYTES[1]
"""The seed's "small: typical transactions" bucket, the default size of a cover message."""


class TimingLaw(enum.Enum):
    """When the sender's slots fall."""

    CONSTANT = "constant"
    """One slot every ``1 / rate_per_s`` seconds (after a random phase)."""
    POISSON = "poisson"
    """Exponential gaps with mean ``1 / rate_per_s`` (memoryless)."""


def _finite(value: float, name: str, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be within [{low}, {high}], got {value}")


@dataclass(frozen=True, slots=True)
class DelayRange:
    """A delay drawn uniformly from ``[min_s, max_s]`` seconds."""

    min_s: float
    max_s: float

    def __post_init__(self) -> None:
        _finite(self.min_s, "min_s", 0.0, MAX_DELAY_S)
        _finite(self.max_s, "max_s", self.min_s, MAX_DELAY_S)

    def label_ms(self) -> str:
        """``MIN-MAX`` in milliseconds, as reports print it."""
        return f"{self.min_s * 1e3:g}-{self.max_s * 1e3:g}"

    def draw(self, rng: Rng) -> float:
        if self.max_s == self.min_s:
            return self.min_s
        return rng.uniform(self.min_s, self.max_s)


@dataclass(frozen=True, slots=True)
class RateConfig:
    """Slot-based sending (seed §2.2): one message per slot, real when queued, else cover."""

    rate_per_s: float = 2.0
    law: TimingLaw = TimingLaw.CONSTANT
    cover: bool = True
    """Fill empty slots with cover messages; without it an empty slot sends nothing."""
    max_wait_s: float = 60.0
    """A real message still queued after this long (no circuit came up) fails."""

    def __post_init__(self) -> None:
        _finite(self.rate_per_s, "rate_per_s", 1e-3, 1e3)
        _finite(self.max_wait_s, "max_wait_s", 1e-3, 3600.0)

    def gap(self, rng: Rng) -> float:
        """Seconds from one slot to the next."""
        if self.law is TimingLaw.CONSTANT:
            return 1.0 / self.rate_per_s
        return rng.expovariate(self.rate_per_s)


@dataclass(frozen=True, slots=True)
class CoverConfig:
    """Background cover, independent of real sends (pq-mixnet §3.3 "loop" cover in spirit):
    cover messages leave as a Poisson process of ``rate_per_s`` while real messages leave when
    they are ready, not in slots. Against a spy at hop 1 (the adversary that decides origin
    attribution) this is what buys ambiguity cheaply: the spy sees the superposition of the
    two processes and cannot tell which departure became a transaction, and every spy's cover
    departures compete with the true one for each transaction it tries to match.

    A real message submitted while no circuit is ready is held by the lane and leaves in place
    of a cover message at one of the next cover departures, not the moment a circuit is built:
    otherwise the first cells on a node's first circuit (a node started to send a transaction)
    would be real, and its hop 1 would know. ``max_hold_s`` is how long it may wait for that:
    then it leaves on a ready circuit, or fails (``no_circuit``) if there is none. The default
    is the circuit client's own wait for a circuit (``ClientConfig.send_wait_s``, 20 s)."""

    rate_per_s: float
    max_hold_s: float = 20.0

    def __post_init__(self) -> None:
        _finite(self.rate_per_s, "cover rate_per_s", 1e-3, 1e3)
        _finite(self.max_hold_s, "cover max_hold_s", 1e-3, 3600.0)

    def gap(self, rng: Rng) -> float:
        return rng.expovariate(self.rate_per_s)


@dataclass(frozen=True, slots=True)
class ResendConfig:
    """The origin's fail-safe, Dandelion++'s embargo timer in spirit: a transaction that has
    not come back to its origin through gossip ``timeout_s`` after it left on a circuit is
    sent again (through the lane, so on a circuit drawn afresh and in a slot if the lane has
    slots), at most ``attempts`` times; after that its send fails with ``unconfirmed``.

    Circuits carry no end-to-end acknowledgement, and a circuit can lose a message with no
    one noticing in time: a relay that dropped the circuit when a link went, a cell in flight
    on a closing link. Gossip is the acknowledgement: the exit publishes the payload, so its
    message id is known in advance. The cost is one more departure a hop-1 spy can time,
    only after a loss (or a delivery slower than ``timeout_s``)."""

    timeout_s: float = 10.0
    attempts: int = 2
    max_tracked: int = 4096
    """Transactions watched at once per origin; beyond, the oldest is no longer watched."""

    def __post_init__(self) -> None:
        _finite(self.timeout_s, "resend timeout_s", 0.1, 3600.0)
        if not 0 <= self.attempts <= 16:
            raise ValueError("resend attempts must be within 0..16")
        if self.max_tracked < 1:
            raise ValueError("resend max_tracked must be positive")


@dataclass(frozen=True, slots=True)
class ShapingPolicy:
    """How one privacy level sends a private message from its origin.

    ``origin_delay`` holds each message back first (seed §2.3); then, with ``rate``, it waits
    for a slot, otherwise it leaves at once. ``cover`` adds background cover messages on their
    own clock (not with ``rate``, whose empty slots are the cover). ``buckets`` pads each
    message (``()`` switches padding off); cover messages are padded to sizes drawn from
    ``cover_sizes`` (padded size, weight), which should match the bucket mix of the real
    messages for cover to look like them.
    """

    buckets: tuple[int, ...] = PADDING_BUCKETS_BYTES
    cover_sizes: tuple[tuple[int, float], ...] = ((TYPICAL_TX_BUCKET_BYTES, 1.0),)
    origin_delay: DelayRange | None = None
    rate: RateConfig | None = None
    cover: CoverConfig | None = None
    max_pending: int = 100
    """Messages waiting at the origin (delayed or queued) per level; beyond, ``QueueFull``."""
    resend: ResendConfig | None = ResendConfig()
    """Send again what gossip has not echoed back in time (``None``: fire and forget)."""
    cover_to_second_hop: bool = False
    """Address cover to hop 2, which drops it, instead of the exit (as Tor's circuit padding
    is negotiated with the middle relay). Hop 1, the spy that decides origin attribution,
    sees the same departures either way (it cannot read which hop a cell is for); each cover
    cell then crosses two links instead of three, and hop 2 as well as the exit can tell cover
    from real."""

    def __post_init__(self) -> None:
        check_buckets(self.buckets)
        if not self.cover_sizes:
            raise ValueError("cover_sizes needs at least one size")
        for size, weight in self.cover_sizes:
            if not 0 < size <= MAX_ENVELOPE_BYTES:
                raise ValueError(f"cover size must be within 1..{MAX_ENVELOPE_BYTES} bytes")
            _finite(weight, "cover weight", 0.0, math.inf)
        if sum(w for _, w in self.cover_sizes) <= 0:
            raise ValueError("cover weights must not all be zero")
        if self.max_pending < 1:
            raise ValueError("max_pending must be positive")
        if self.rate is not None and self.cover is not None:
            raise ValueError("slot-based sending already sends cover; do not add cover to it")
