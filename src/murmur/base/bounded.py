"""Bounded tables of what was seen last, and of penalties that must outlive a departure.

``remember`` keeps the latest few: the least recently remembered entry goes first. That is right
for a cache, and wrong for a penalty a peer must not shed by leaving (a spent rate limit, a
negative score): identities are cheap, so a peer that leaves with a penalty could have a thousand
fresh identities connect, behave and leave, each pushing one entry, until its own fell off the
end and it came back clean. ``remember_penalty`` keeps such tables instead: an entry that says
no more than a fresh peer's state would (at rest: buckets refilled, a score back at neutral) is
not kept at all, and a full table gives up the entry that would be forgiven soonest (one already
at rest first). Fresh identities that behave push nothing out; ones that misbehave push out only
entries less penalised than their own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: OrderedDict[K, V], key: K, value: V, max_entries: int) -> None:
    """Sets ``table[key]`` as the most recent entry; beyond ``max_entries`` the least recent
    goes (the latest few of something seen, where recency is all that matters: a penalty to
    keep across departures takes ``remember_penalty``)."""
    table[key] = value
    table.move_to_end(key)
    if len(table) > max_entries:
        table.popitem(last=False)


def remember_penalty(
    table: OrderedDict[K, V],
    key: K,
    value: V,
    max_entries: int,
    penalty: Callable[[V], float],
) -> None:
    """Keeps ``value`` under ``key`` while it carries a penalty, bounded to ``max_entries``.

    ``penalty(value)`` is how far the entry is from a fresh one's state, in a unit where the
    table's entries compare (for token buckets, the seconds until they are full again): 0 or
    less means at rest, and such a value is not kept (and ``key`` is forgotten). A key already
    in the table keeps its place, so ties go to the entry remembered first. Beyond
    ``max_entries`` every entry at rest goes, and if none is, the one with the least penalty
    (the newcomer itself, if that is the least). Adding is O(1) while the table has room; a full
    one is scanned once per overflow, O(``max_entries``)."""
    if penalty(value) <= 0:
        table.pop(key, None)
        return
    table[key] = value
    if len(table) <= max_entries:
        return
    at_rest: list[K] = []
    least_key, least = key, float("inf")
    for k, v in table.items():  # oldest first: the first of equal penalties is the oldest
        p = penalty(v)
        if p <= 0:
            at_rest.append(k)
        elif p < least:
            least_key, least = k, p
    for k in at_rest or [least_key]:
        del table[k]
