from __future__ import annotations

from murmur.base.ids import NodeId
from murmur.overlay.gossip.score import PeerScores

A = NodeId(b"a" * 32)
B = NodeId(b"b" * 32)


def _fresh_identities(count: int) -> list[NodeId]:
    """Node ids none of the tests uses otherwise: the cheap identities an attacker makes."""
    return [NodeId(bytes([i]) * 32) for i in range(count)]


def test_penalties_subtract_and_decay_back_to_zero() -> None:
    scores = PeerScores(decay=0.5, max_retained=10)
    scores.connect(A)
    assert scores.penalize(A, 10.0) == -10.0
    scores.decay()
    assert scores.get(A) == -5.0
    for _ in range(20):
        scores.decay()
    assert scores.get(A) == 0.0


def test_negative_scores_survive_a_reconnect() -> None:
    scores = PeerScores(decay=0.5, max_retained=10)
    scores.connect(A)
    scores.penalize(A, 8.0)
    scores.disconnect(A)
    assert scores.get(A) == 0.0 and scores.retained == 1
    scores.decay()
    assert scores.connect(A) == -4.0
    assert scores.retained == 0


def test_retained_scores_are_capped_and_fade() -> None:
    scores = PeerScores(decay=0.5, max_retained=1)
    for p in (A, B):
        scores.connect(p)
        scores.penalize(p, 1.0)
        scores.disconnect(p)
    assert scores.retained == 1
    assert scores.connect(A) == 0.0  # A was forgotten to make room for B
    for _ in range(10):
        scores.decay()
    assert scores.retained == 0


def test_broken_promises_survive_a_reconnect_and_decay() -> None:
    scores = PeerScores(decay=0.5, max_retained=10)
    scores.connect(A)
    assert scores.break_promise(A) == 1.0
    scores.disconnect(A)
    assert scores.retained == 1  # a score of 0, but a count to keep
    scores.decay()
    scores.connect(A)
    assert scores.break_promise(A) == 1.5
    for _ in range(10):
        scores.decay()
    scores.disconnect(A)
    assert scores.retained == 0


def test_a_departed_peer_is_charged_on_its_kept_slate() -> None:
    scores = PeerScores(decay=0.5, max_retained=1)
    scores.connect(A)
    scores.disconnect(A)
    assert scores.retained == 0  # a clean slate is not kept...
    assert scores.break_promise(A) == 1.0  # ...until it is charged after leaving
    assert scores.penalize(A, 4.0) == -4.0
    assert scores.retained == 1
    assert scores.connect(A) == -4.0
    assert scores.break_promise(A) == 2.0


def test_a_full_table_forgets_the_slate_nearest_neutral() -> None:
    """Beyond the cap the slate that would decay to neutral soonest goes (its score or its
    count, whichever is larger in magnitude, is the smallest), not the least recently
    departed: fresh identities leaving with small penalties cannot push out a large one."""
    scores = PeerScores(decay=0.5, max_retained=2)
    scores.connect(A)
    scores.penalize(A, 50.0)
    scores.disconnect(A)
    for fresh in _fresh_identities(10):
        scores.connect(fresh)
        scores.penalize(fresh, 1.0)
        scores.disconnect(fresh)
        assert scores.retained == 2
    scores.connect(B)
    for _ in range(3):
        scores.break_promise(B)
    scores.disconnect(B)  # 3 broken promises: further from neutral than a score of -1
    assert scores.connect(A) == -50.0
    scores.connect(B)
    assert scores.break_promise(B) == 4.0  # its 3 were kept: the last fresh one's -1 went
    assert scores.retained == 0


def test_clean_slates_take_no_room() -> None:
    scores = PeerScores(decay=0.5, max_retained=1)
    scores.connect(A)
    scores.penalize(A, 1.0)
    scores.disconnect(A)
    for fresh in _fresh_identities(10):
        scores.connect(fresh)
        scores.disconnect(fresh)
    assert scores.connect(A) == -1.0
