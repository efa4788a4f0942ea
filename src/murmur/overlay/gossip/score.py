"""A simple per-peer score: penalties subtract, and the score decays back towards zero.

Theory of operation: each peer starts at 0. Misbehaviour (an invalid message, a GRAFT during
backoff, a malformed RPC) subtracts a penalty; every heartbeat multiplies every score by
``decay``, so old offences fade, and a score close enough to zero snaps to it. The router reads
the score against thresholds: below 0 a peer leaves and cannot join a mesh, below the gossip
threshold it gets no IHAVE and its IHAVE/IWANT are ignored, below the graylist threshold it is
cut off. When a peer disconnects with a negative score, the score is retained (up to a cap,
oldest forgotten first) and keeps decaying, so reconnecting does not wipe the slate.
"""

from __future__ import annotations

from collections import OrderedDict

from murmur.base.ids import NodeId

DECAY_TO_ZERO = 0.01
"""Scores closer to zero than this become zero."""


def decayed(value: float, factor: float) -> float:
    """``value`` after one heartbeat's decay by ``factor``, snapped to zero once negligible."""
    value *= factor
    return 0.0 if abs(value) < DECAY_TO_ZERO else value


class PeerScores:
    __slots__ = ("_decay", "_max_retained", "_retained", "_scores")

    def __init__(self, *, decay: float, max_retained: int) -> None:
        self._decay = decay
        self._max_retained = max_retained
        self._scores: dict[NodeId, float] = {}
        self._retained: OrderedDict[NodeId, float] = OrderedDict()

    def connect(self, peer: NodeId) -> float:
        """Start tracking a connected peer; returns its (possibly retained) score."""
        score = self._retained.pop(peer, 0.0)
        self._scores[peer] = score
        return score

    def disconnect(self, peer: NodeId) -> None:
        score = self._scores.pop(peer, 0.0)
        if score < 0 and self._max_retained:
            self._retained[peer] = score
            if len(self._retained) > self._max_retained:
                self._retained.popitem(last=False)

    def get(self, peer: NodeId) -> float:
        return self._scores.get(peer, 0.0)

    def penalize(self, peer: NodeId, amount: float) -> float:
        """Subtract ``amount`` from a connected peer's score; returns the new score."""
        score = self._scores.get(peer, 0.0) - amount
        self._scores[peer] = score
        return score

    def decay(self) -> None:
        """One heartbeat's decay, for connected and retained peers alike."""
        for peer, score in self._scores.items():
            if score:
                self._scores[peer] = decayed(score, self._decay)
        for peer in list(self._retained):
            score = decayed(self._retained[peer], self._decay)
            if score:
                self._retained[peer] = score
            else:
                del self._retained[peer]

    @property
    def retained(self) -> int:
        """How many disconnected peers' scores are remembered."""
        return len(self._retained)
