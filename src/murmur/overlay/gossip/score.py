"""A simple per-peer score: penalties subtract, and the score decays back towards zero.

Theory of operation: each peer starts at 0. Misbehaviour (an invalid message, a GRAFT during
backoff, a malformed RPC) subtracts a penalty; every heartbeat multiplies every score by
``decay``, so old offences fade, and a score close enough to zero snaps to it. The router reads
the score against thresholds: below 0 a peer leaves and cannot join a mesh, below the gossip
threshold it gets no IHAVE and its IHAVE/IWANT are ignored, below the graylist threshold it is
cut off. Beside the score each peer has a count of broken promises (IWANTs it left unanswered),
decaying the same way, from which the router charges gossipsub's behaviour penalty.

Both are kept by node id, not by link: when a peer disconnects with a negative score or a
broken promise on its count, the two are retained, keep decaying, and are charged further if an
IWANT its link left unanswered lapses meanwhile, so reconnecting wipes neither slate. A slate
back at neutral (a score of 0, no broken promise) is a new peer's and is not kept. Beyond the
cap the slate that will decay to neutral soonest is forgotten, ties to the least recently
departed: both numbers decay by the same factor, so that is the one whose larger magnitude is
the smallest (``murmur.base.bounded.remember_penalty``). Forgetting the least recently departed
instead let a peer wipe its slate by having fresh identities, which are cheap, connect and
leave with a penalty of a point each until it fell off the end.
"""

from __future__ import annotations

from collections import OrderedDict

from murmur.base.bounded import remember_penalty
from murmur.base.ids import NodeId

DECAY_TO_ZERO = 0.01
"""Scores closer to zero than this become zero."""


def decayed(value: float, factor: float) -> float:
    """``value`` after one heartbeat's decay by ``factor``, snapped to zero once negligible."""
    value *= factor
    return 0.0 if abs(value) < DECAY_TO_ZERO else value


class PeerScores:
    __slots__ = ("_broken", "_decay", "_max_retained", "_retained", "_scores")

    def __init__(self, *, decay: float, max_retained: int) -> None:
        self._decay = decay
        self._max_retained = max_retained
        self._scores: dict[NodeId, float] = {}
        self._broken: dict[NodeId, float] = {}
        """Connected peers' broken promises, those with any."""
        self._retained: OrderedDict[NodeId, tuple[float, float]] = OrderedDict()
        """Departed peer -> (score, broken promises), oldest first: in the order they departed
        or, for one that left with a clean slate, were first charged after it."""

    def connect(self, peer: NodeId) -> float:
        """Start tracking a connected peer; returns its (possibly retained) score."""
        score, broken = self._retained.pop(peer, (0.0, 0.0))
        self._scores[peer] = score
        if broken:
            self._broken[peer] = broken
        return score

    def disconnect(self, peer: NodeId) -> None:
        score = self._scores.pop(peer, 0.0)
        broken = self._broken.pop(peer, 0.0)
        if score < 0 or broken:
            self._retain(peer, score, broken)

    def get(self, peer: NodeId) -> float:
        return self._scores.get(peer, 0.0)

    def penalize(self, peer: NodeId, amount: float) -> float:
        """Subtract ``amount`` from a peer's score, connected or departed; returns the new
        score."""
        if peer in self._scores:
            score = self._scores[peer] - amount
            self._scores[peer] = score
            return score
        score, broken = self._retained.get(peer, (0.0, 0.0))
        self._retain(peer, score - amount, broken)
        return score - amount

    def break_promise(self, peer: NodeId) -> float:
        """Count one broken promise of a peer, connected or departed; returns its count."""
        if peer in self._scores:
            broken = self._broken.get(peer, 0.0) + 1.0
            self._broken[peer] = broken
            return broken
        score, broken = self._retained.get(peer, (0.0, 0.0))
        self._retain(peer, score, broken + 1.0)
        return broken + 1.0

    def decay(self) -> None:
        """One heartbeat's decay, for connected and retained peers alike."""
        for peer, score in self._scores.items():
            if score:
                self._scores[peer] = decayed(score, self._decay)
        for peer in list(self._broken):
            broken = decayed(self._broken[peer], self._decay)
            if broken:
                self._broken[peer] = broken
            else:
                del self._broken[peer]
        for peer in list(self._retained):
            score, broken = self._retained[peer]
            score, broken = decayed(score, self._decay), decayed(broken, self._decay)
            if score or broken:
                self._retained[peer] = (score, broken)
            else:
                del self._retained[peer]

    def _retain(self, peer: NodeId, score: float, broken: float) -> None:
        """Keeps (or updates in place) a departed peer's slate; beyond the cap, the one that
        will be neutral soonest is forgotten."""
        remember_penalty(self._retained, peer, (score, broken), self._max_retained, _penalty)

    @property
    def retained(self) -> int:
        """How many disconnected peers' scores are remembered."""
        return len(self._retained)


def _penalty(slate: tuple[float, float]) -> float:
    """How far a departed peer's (score, broken promises) is from a new peer's: both decay by
    the same factor to zero, so the larger magnitude says how long it takes (0: neutral)."""
    score, broken = slate
    return max(-score, broken)
