"""Bounded tables: the latest few of something seen, and penalties kept across departures."""

from __future__ import annotations

from collections import OrderedDict

from murmur.base.bounded import remember, remember_penalty


def _keep(table: OrderedDict[str, float], key: str, penalty: float, cap: int = 3) -> None:
    remember_penalty(table, key, penalty, cap, lambda p: p)


def test_remember_keeps_the_latest_few() -> None:
    table: OrderedDict[str, int] = OrderedDict()
    for i, key in enumerate("abcab"):
        remember(table, key, i, 2)
    assert list(table.items()) == [("a", 3), ("b", 4)]


def test_an_entry_at_rest_is_not_kept_and_forgets_its_key() -> None:
    table: OrderedDict[str, float] = OrderedDict()
    _keep(table, "a", 0.0)
    _keep(table, "b", -1.0)
    assert not table
    _keep(table, "a", 2.0)
    _keep(table, "a", 0.0)  # back at rest: what was kept goes
    assert not table


def test_a_full_table_gives_up_the_least_penalty_not_the_oldest() -> None:
    table: OrderedDict[str, float] = OrderedDict()
    for key, penalty in (("old", 9.0), ("b", 2.0), ("c", 5.0), ("d", 3.0)):
        _keep(table, key, penalty)
    assert list(table) == ["old", "c", "d"]
    _keep(table, "e", 1.0)  # the newcomer is the least: it goes itself
    assert list(table) == ["old", "c", "d"]


def test_equal_penalties_give_up_the_one_remembered_first() -> None:
    table: OrderedDict[str, float] = OrderedDict()
    for key in "abcd":
        _keep(table, key, 1.0)
    assert list(table) == ["b", "c", "d"]
    _keep(table, "b", 1.0)  # already there: it keeps its place, and is still the oldest
    _keep(table, "e", 1.0)
    assert list(table) == ["c", "d", "e"]


def test_an_overflow_clears_every_entry_come_to_rest() -> None:
    """Penalties are read when the table overflows (a token bucket refills meanwhile): all
    entries at rest by then go, and nothing penalised does."""
    at: dict[str, float] = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 4.0}
    now = 0.0
    table: OrderedDict[str, str] = OrderedDict()
    for key in "abc":
        remember_penalty(table, key, key, 3, lambda k: at[k] - now)
    now = 3.0  # "a" and "c" are at rest now
    remember_penalty(table, "d", "d", 3, lambda k: at[k] - now)
    assert list(table) == ["b", "d"]


def test_no_room_keeps_nothing() -> None:
    table: OrderedDict[str, float] = OrderedDict()
    _keep(table, "a", 5.0, cap=0)
    assert not table
