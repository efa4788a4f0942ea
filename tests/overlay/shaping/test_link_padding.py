"""Idle links get padding frames after a random quiet while; busy links never do."""

from __future__ import annotations

import pytest

from murmur.overlay.shaping import (
    CELL_FRAME_PADDING_BYTES,
    DelayRange,
    IdlePadder,
    LinkPaddingConfig,
)
from murmur.sim.rng import SeededRng


def test_a_quiet_link_is_padded_after_its_threshold_and_a_busy_one_never() -> None:
    padder: IdlePadder[str] = IdlePadder(
        LinkPaddingConfig(quiet=DelayRange(1.0, 2.0)), SeededRng(1)
    )
    assert padder.next_deadline() is None
    assert not padder.observe("quiet", 100, 0.0)
    assert not padder.observe("busy", 100, 0.0)
    due = padder.next_deadline()
    assert due is not None and 1.0 <= due <= 2.0
    assert not padder.observe("quiet", 100, 0.99)
    busy_total = 100
    padded_at = None
    t = 0.0
    while padded_at is None:
        t += 0.1
        busy_total += 50
        assert not padder.observe("busy", busy_total, t)
        if padder.observe("quiet", 100, t):
            padded_at = t
    assert 1.0 <= padded_at <= 2.1
    assert padder.counters.get("padding_frames") == 1
    assert not padder.observe("quiet", 100 + CELL_FRAME_PADDING_BYTES, padded_at)  # padded
    assert padder.next_deadline() is not None and padder.next_deadline() >= padded_at + 1.0


def test_deadline_always_fires_even_with_float_rounding() -> None:
    padder: IdlePadder[int] = IdlePadder(
        LinkPaddingConfig(quiet=DelayRange(0.1, 0.1)), SeededRng(2)
    )
    padder.observe(1, 0, 0.7)
    deadline = padder.next_deadline()
    assert deadline is not None
    assert padder.observe(1, 0, deadline)


def test_closed_links_are_forgotten_and_config_is_checked() -> None:
    padder: IdlePadder[int] = IdlePadder(LinkPaddingConfig(), SeededRng(3))
    for link in range(3):
        padder.observe(link, 0, 0.0)
    padder.retain([1])
    assert padder.observe(1, 0, 100.0)
    assert not padder.observe(0, 0, 100.0)  # new again: starts a quiet period
    assert LinkPaddingConfig().frame_bytes == CELL_FRAME_PADDING_BYTES
    with pytest.raises(ValueError):
        LinkPaddingConfig(quiet=DelayRange(0.0, 1.0))


def test_each_quiet_period_draws_its_threshold_afresh_across_the_range() -> None:
    """A fixed threshold would space padding frames exactly and make them recognisable: every
    quiet period (after a send, after a padding frame) gets its own uniform draw."""
    padder: IdlePadder[str] = IdlePadder(
        LinkPaddingConfig(quiet=DelayRange(1.0, 2.0)), SeededRng(4)
    )
    sent, t = 0, 0.0
    thresholds = []
    for _ in range(400):
        assert not padder.observe("link", sent, t)  # activity: a new quiet period starts
        due = padder.next_deadline()
        assert due is not None
        thresholds.append(due - t)
        assert padder.observe("link", sent, due)
        sent += CELL_FRAME_PADDING_BYTES  # the padding frame, seen as activity at once
        t = due
    assert all(1.0 <= x <= 2.0 for x in thresholds)
    assert min(thresholds) < 1.05 and max(thresholds) > 1.95
    quartiles = sorted(thresholds)[100], sorted(thresholds)[300]
    assert quartiles[0] == pytest.approx(1.25, abs=0.06)
    assert quartiles[1] == pytest.approx(1.75, abs=0.06)
