"""Message ids seen recently: each expires a fixed time after it was first seen.

Theory of operation: the router asks :meth:`SeenCache.add` for every message it receives or
publishes; ``False`` means "already seen", so the message is neither delivered nor forwarded
again. Ids are kept in first-seen order, which (with a fixed TTL and a clock that does not go
backwards) is also expiry order, so :meth:`expire` only looks at the oldest end. The cache is
bounded: past ``capacity`` the oldest id is forgotten early and counted in :attr:`evicted`, which
at worst lets a very late duplicate through once.
"""

from __future__ import annotations

from collections import OrderedDict


class SeenCache:
    __slots__ = ("_capacity", "_expiry", "_ttl_s", "evicted")

    def __init__(self, *, ttl_s: float, capacity: int) -> None:
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._expiry: OrderedDict[bytes, float] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, message_id: bytes) -> bool:
        return message_id in self._expiry

    def add(self, message_id: bytes, now: float) -> bool:
        """Record ``message_id``; ``True`` if it was not already there."""
        expiry = self._expiry
        if message_id in expiry:
            return False
        expiry[message_id] = now + self._ttl_s
        if len(expiry) > self._capacity:
            expiry.popitem(last=False)
            self.evicted += 1
        return True

    def expire(self, now: float) -> int:
        """Forget every id whose time is up; returns how many were forgotten."""
        expiry = self._expiry
        removed = 0
        while expiry:
            oldest = next(iter(expiry))
            if expiry[oldest] > now:
                break
            del expiry[oldest]
            removed += 1
        return removed
