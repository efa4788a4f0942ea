"""Bounded tables of what was seen last: the least recently remembered entry goes first."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: OrderedDict[K, V], key: K, value: V, max_entries: int) -> None:
    """Sets ``table[key]`` as the most recent entry; beyond ``max_entries`` the least recent
    goes (state a departed peer must not shed by reconnecting, kept for the latest few)."""
    table[key] = value
    table.move_to_end(key)
    if len(table) > max_entries:
        table.popitem(last=False)
