"""Per-peer limits and the rate limiter that enforces them for one peer.

Theory of operation: :class:`PeerLimits` is the configuration (slot counts, rates, ban length).
:class:`PeerRateLimiter` holds two token buckets for one peer: bytes and messages (the node keeps
it by node id, so it outlives the peer's links until ``full_at``: see
``murmur.node.node.DEPARTED_LIMITERS``).
``admit`` charges one message of ``nbytes`` against both atomically (either both are charged or
neither), so a refused message costs nothing and a peer is never billed twice. The peer manager
decides what a refusal means: a drop, and :meth:`PeerRateLimiter.record_drop` tells it when the
drops amount to a flood worth a ban. Drops are an allowance of ``FLOOD_DROPS_BURST`` refilled
at ``FLOOD_DROPS_FORGIVEN_PER_S``, not a lifetime total: a peer that bursts over its rate now
and then (a node catching up after a pause) is never banned for it, however long it stays
linked, while one that keeps sending above its rate is.
``bytes_burst`` must exceed the largest frame, or a frame of that size can never be admitted.
The ping limits are the link's own (``LinkConfig``: at most ``pings_burst`` pings in any
``pings_burst / pings_per_s`` seconds), since pings never leave the link.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from murmur.overlay.peers.token_bucket import TokenBucket

MIB = 1024 * 1024
FLOOD_DROPS_BURST = 200
"""Messages dropped over the limits, in one go, before the peer is deemed to flood."""
FLOOD_DROPS_FORGIVEN_PER_S = 1.0
"""How fast past drops are forgiven: a peer dropping more than one message a second for
longer than the burst lasts is flooding."""


@dataclass(frozen=True, slots=True)
class PeerLimits:
    max_inbound: int = 32
    max_outbound: int = 8
    bytes_per_s: int = 4 * MIB
    bytes_burst: int = 8 * MIB
    messages_per_s: int = 2000
    messages_burst: int = 4000
    pings_per_s: float = 2.0
    pings_burst: int = 5
    ban_s: float = 3600.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{f.name} must be a number")
            if f.type in ("int", int) and not isinstance(value, int):
                raise ValueError(f"{f.name} must be an integer")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{f.name} must be positive")


class PeerRateLimiter:
    __slots__ = ("_bytes", "_drops", "_messages")

    def __init__(self, limits: PeerLimits) -> None:
        self._bytes = TokenBucket(limits.bytes_per_s, limits.bytes_burst)
        self._messages = TokenBucket(limits.messages_per_s, limits.messages_burst)
        self._drops = TokenBucket(FLOOD_DROPS_FORGIVEN_PER_S, FLOOD_DROPS_BURST)

    def admit(self, now: float, nbytes: int) -> bool:
        """Charge one message of ``nbytes``; False (nothing charged) when over either limit."""
        if self._bytes.available(now) < nbytes or self._messages.available(now) < 1:
            return False
        self._bytes.consume(now, nbytes)
        self._messages.consume(now, 1)
        return True

    def record_drop(self, now: float) -> bool:
        """Count one refused message; True when the drop allowance is spent: a flood."""
        return not self._drops.consume(now)

    def full_at(self) -> float:
        """When every budget is full again (``-inf`` if each already is): from then on the
        limiter is the same as a new peer's, and the node need not keep it for a departed
        peer (``murmur.node.node.DEPARTED_LIMITERS``)."""
        return max(self._bytes.full_at(), self._messages.full_at(), self._drops.full_at())
