"""Counters with stable names, shared by every state machine.

Each core object owns a :class:`Counters`; the node merges them for ``murmur status``.
"""

from __future__ import annotations


class Counters:
    __slots__ = ("_values",)

    def __init__(self) -> None:
        # A plain dict, not a ``Counter``: a Python subclass of dict makes every ``+=`` a
        # method call, and the node counts on every frame.
        self._values: dict[str, int] = {}

    def inc(self, name: str, by: int = 1) -> None:
        values = self._values
        values[name] = values.get(name, 0) + by

    def get(self, name: str) -> int:
        return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self._values.items()))

    def merge_into(self, target: dict[str, int], prefix: str = "") -> None:
        for name, value in self._values.items():
            key = prefix + name
            target[key] = target.get(key, 0) + value
