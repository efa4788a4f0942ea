"""Items held back until their release time: the one structure every jitter mechanism uses.

Theory of operation. A heap of ``(release_at, sequence, item)``: items leave in release order,
and items with equal release times leave in the order they were pushed, so a caller that keeps
release times non-decreasing per stream (``max(now + delay, last release)``) keeps that stream
in order. The caller bounds the size (it knows what dropping would break).
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

T = TypeVar("T")


class DelayLine(Generic[T]):
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: T, release_at: float) -> None:
        heapq.heappush(self._heap, (release_at, next(self._seq), item))

    def pop_due(self, now: float) -> list[T]:
        """Every item whose release time has come, in release (then push) order."""
        due: list[T] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[2])
        return due

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def drain(self) -> list[T]:
        """Every item still held, in release (then push) order; the line is left empty."""
        items = [entry[2] for entry in sorted(self._heap)]
        self._heap.clear()
        return items
