"""A token bucket with the clock passed in.

Theory of operation: the bucket holds up to ``burst`` tokens and starts full. Tokens flow in at
``rate_per_s``; the refill is computed lazily from the time elapsed since the last call, so the
bucket needs no timer. ``consume`` takes ``cost`` tokens if they are all there and otherwise
takes nothing: the balance never goes negative, so a peer cannot borrow against the future. A
clock that steps backwards refills nothing (and does not punish anyone). A cost larger than
``burst`` can never be paid. ``full_at`` tells when a bucket that is left alone is back to a new
one's state (what a table of departed peers' buckets needs to know, ``murmur.base.bounded``).
"""

from __future__ import annotations

import math


class TokenBucket:
    __slots__ = ("_last", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if not (math.isfinite(rate_per_s) and rate_per_s > 0):
            raise ValueError("rate_per_s must be a positive finite number")
        if not (math.isfinite(burst) and burst > 0):
            raise ValueError("burst must be a positive finite number")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._last: float | None = None

    def _refill(self, now: float) -> None:
        if self._last is None:
            self._last = now
            return
        elapsed_s = now - self._last
        if elapsed_s > 0:
            self._tokens = min(self.burst, self._tokens + elapsed_s * self.rate_per_s)
            self._last = now

    def available(self, now: float) -> float:
        """Tokens in the bucket at ``now``."""
        self._refill(now)
        return self._tokens

    def full_at(self) -> float:
        """When the bucket is full again if nothing more is taken (``-inf`` while it is full):
        from then on it is the same as a new one. It does not move as the bucket refills, so it
        ranks departed peers' buckets without a clock."""
        if self._last is None or self._tokens >= self.burst:
            return -math.inf
        return self._last + (self.burst - self._tokens) / self.rate_per_s

    def consume(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if they are all there; otherwise take none and return False."""
        if cost < 0:
            raise ValueError("cost must not be negative")
        self._refill(now)
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def wait_s(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are there (0 if now, ``inf`` if ``cost > burst``).

        Lets a caller wait for the tokens instead of dropping (the circuit relay wakes its cell
        queue for a peer then).
        """
        if cost > self.burst:
            return math.inf
        missing = cost - self.available(now)
        return max(0.0, missing / self.rate_per_s)
