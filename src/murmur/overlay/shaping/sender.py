"""The slot clock of constant-rate (or Poisson) sending: a bounded FIFO served one per slot.

Theory of operation (seed §2.2, Loopix-style). Slots fall by a fixed law (:class:`TimingLaw`)
that never depends on the traffic: a constant-rate clock starts at a random phase so nodes are
not in lockstep, a Poisson clock draws exponential gaps. At each slot the owner takes the head of
the queue (a real message) or, when it is empty, gets ``None`` and sends cover or nothing. So an
observer of the slots sees the same law whether the node is busy or idle; only the queueing
delay of real messages depends on the load. A slot the owner cannot use (no circuit yet) is
skipped, real or cover alike; a message that waited ``max_wait_s`` is expired and handed back.
A timer that fires late does not burst: the missed slots of a constant clock are skipped.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Generic, TypeVar

from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.overlay.shaping.config import RateConfig, TimingLaw

T = TypeVar("T")


class RateSender(Generic[T]):
    __slots__ = ("_next_slot", "_queue", "_rng", "config", "counters")

    def __init__(self, config: RateConfig, rng: Rng, now: float) -> None:
        self.config = config
        self.counters = Counters()
        self._rng = rng
        self._queue: deque[tuple[T, float]] = deque()
        first = config.gap(rng)
        if config.law is TimingLaw.CONSTANT:
            first *= rng.random()
        self._next_slot = now + first

    def __len__(self) -> int:
        return len(self._queue)

    def enqueue(self, item: T, now: float) -> None:
        """Queues a real message (the owner bounds the queue)."""
        self._queue.append((item, now))

    def slot_due(self, now: float) -> bool:
        return now >= self._next_slot

    def take_slot(self, now: float) -> T | None:
        """Uses the due slot: the oldest queued message, or None (send cover, or nothing)."""
        self._advance(now)
        if self._queue:
            self.counters.inc("slots_real")
            return self._queue.popleft()[0]
        self.counters.inc("slots_empty")
        return None

    def skip_slot(self, now: float) -> None:
        """The due slot cannot be used (no circuit): nothing is sent, the queue waits."""
        self._advance(now)
        self.counters.inc("slots_skipped")

    def expire(self, now: float) -> list[T]:
        """Messages that have waited ``max_wait_s``, oldest first, removed from the queue."""
        expired: list[T] = []
        wait = self.config.max_wait_s
        while self._queue and self._queue[0][1] + wait <= now:  # the deadline's own expression
            expired.append(self._queue.popleft()[0])
        if expired:
            self.counters.inc("expired", len(expired))
        return expired

    def drain(self) -> list[T]:
        """Every queued message, oldest first; the queue is left empty."""
        items = [item for item, _ in self._queue]
        self._queue.clear()
        return items

    def next_deadline(self) -> float:
        if self._queue:
            return min(self._next_slot, self._queue[0][1] + self.config.max_wait_s)
        return self._next_slot

    def _advance(self, now: float) -> None:
        nxt = self._next_slot + self.config.gap(self._rng)
        if nxt <= now:
            if self.config.law is TimingLaw.CONSTANT:
                interval = 1.0 / self.config.rate_per_s
                missed = math.floor((now - nxt) / interval) + 1
                nxt += missed * interval
                self.counters.inc("slots_missed", missed)
            else:
                nxt = now + self.config.gap(self._rng)
        self._next_slot = nxt
