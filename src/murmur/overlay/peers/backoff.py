"""Reconnect back-off: capped exponential with full jitter.

Theory of operation: after the n-th consecutive failure the next attempt waits a delay drawn
uniformly from [0, min(max_s, base_s * 2**n)) ("full jitter"), so peers that lost the same
node do not reconnect in lock-step. ``reset`` after a connection succeeds. The rng is passed in.
"""

from __future__ import annotations

import math

from murmur.base.rng import Rng

_MAX_EXPONENT = 62  # 2**62 * base_s already exceeds any sane max_s; stops the counter growing.


class ReconnectBackoff:
    __slots__ = ("_failures", "base_s", "max_s")

    def __init__(self, base_s: float = 1.0, max_s: float = 60.0) -> None:
        if not (math.isfinite(base_s) and base_s > 0):
            raise ValueError("base_s must be a positive finite number")
        if not (math.isfinite(max_s) and max_s >= base_s):
            raise ValueError("max_s must be finite and at least base_s")
        self.base_s = base_s
        self.max_s = max_s
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures

    def ceiling_s(self) -> float:
        """The upper bound of the next delay."""
        return min(self.max_s, self.base_s * 2.0**self._failures)

    def next_delay(self, rng: Rng) -> float:
        """The delay before the next attempt; counts one more failure."""
        delay_s = rng.uniform(0.0, self.ceiling_s())
        self._failures = min(self._failures + 1, _MAX_EXPONENT)
        return delay_s

    def reset(self) -> None:
        self._failures = 0
