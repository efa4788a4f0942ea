"""The delay line releases by time, and in push order among equal times."""

from __future__ import annotations

from murmur.overlay.shaping import DelayLine


def test_items_leave_in_release_order_and_ties_in_push_order() -> None:
    line: DelayLine[str] = DelayLine()
    assert line.next_deadline() is None and line.pop_due(100.0) == []
    for item, at in [("c", 3.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("b3", 2.0)]:
        line.push(item, at)
    assert len(line) == 5 and line.next_deadline() == 1.0
    assert line.pop_due(0.5) == []
    assert line.pop_due(2.0) == ["a", "b1", "b2", "b3"]
    assert line.next_deadline() == 3.0
    assert line.pop_due(10.0) == ["c"]
    assert len(line) == 0


def test_drain_gives_every_item_in_release_then_push_order_and_empties_the_line() -> None:
    line: DelayLine[str] = DelayLine()
    for item, release_at in (("c", 3.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0)):
        line.push(item, release_at)
    assert line.drain() == ["a", "b1", "b2", "c"]
    assert len(line) == 0 and line.next_deadline() is None and line.pop_due(10.0) == []
