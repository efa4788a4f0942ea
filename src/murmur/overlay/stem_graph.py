"""The Dandelion++ stem graph of one node for one epoch (Fanti et al., SIGMETRICS 2018).

Theory of operation. Time is cut into epochs, independently per node. At the start of each
epoch (:meth:`StemGraph.new_epoch`) a node draws its role, *fluff* with probability q, else
*stem*, and forgets its edges and routes. Its stem out-edges are chosen at their first use in
the epoch, so that every outbound peer known by then is a candidate (choosing when peers connect
would favour the first ones): ``out_degree`` of its *outbound* peers, the ones it dialled, at
random, which gives the paper's approximately 4-regular graph and keeps an attacker from
becoming anyone's stem by dialling them; or, given ``fixed`` edges (an exact 4-regular graph
built elsewhere), those of them that are connected. Forwarding is the paper's one-to-one
pseudorandom routing: each inbound edge keeps one out-edge for the epoch, handed out from a
shuffled round of the out-edges and then another, and the node's own transactions take one
fixed out-edge too. A lost out-edge is replaced at once and the routes through it are dropped.

The simulator's baseline (:class:`murmur.overlay.dandelion.Dandelion`) and the node's stem
(:class:`murmur.overlay.stem.StemPath`) both route with this class, with the same draws in the
same order; what they do with a transaction (their mempools, embargoes, wire formats) differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Generic, TypeVar

from murmur.base.rng import Rng

FLUFF_PROBABILITY = 0.1
"""The paper's q: chance that a node is a fluff (diffuser) node for an epoch."""
EPOCH_S = 600.0
"""Epoch length (BIP 156 and the paper: about ten minutes)."""
STEM_OUT_DEGREE = 2
"""Outbound stem edges per node: two give the approximately 4-regular stem graph."""
EMBARGO_MEAN_S = 39.0
"""Mean embargo timer (Monero's Dandelion++ uses an exponential law with this mean)."""

PeerT = TypeVar("PeerT")


class Role(Enum):
    STEM = "stem"
    FLUFF = "fluff"


class StemGraph(Generic[PeerT]):
    """One node's role, stem out-edges and inbound routes for the current epoch."""

    def __init__(
        self,
        *,
        rng: Rng,
        fluff_probability: float,
        epoch_s: float,
        out_degree: int,
        fixed: Sequence[PeerT] | None = None,
    ) -> None:
        self._rng = rng
        self._fluff_probability = fluff_probability
        self._epoch_s = epoch_s
        self._out_degree = out_degree
        self._fixed = tuple(fixed) if fixed is not None else None
        self._present: set[PeerT] = set()
        """Connected peers, kept only for ``fixed`` edges (which are used while connected)."""
        self._outbound: dict[PeerT, None] = {}
        self.role: Role | None = None
        """This epoch's role; None before the first epoch."""
        self.epoch_end = 0.0
        self._edges: list[PeerT] | None = None
        self._own_edge: PeerT | None = None
        self._route: dict[PeerT, PeerT] = {}
        self._route_pool: list[PeerT] = []

    @property
    def chosen_edges(self) -> tuple[PeerT, ...]:
        """The out-edges chosen so far this epoch (none before their first use)."""
        return tuple(self._edges or ())

    def new_epoch(self, now: float) -> None:
        self.role = Role.FLUFF if self._rng.random() < self._fluff_probability else Role.STEM
        self.epoch_end = now + self._epoch_s
        self._edges = None
        self._own_edge = None
        self._route = {}
        self._route_pool = []

    def start_epoch_if_due(self, now: float) -> None:
        if self.role is None or now >= self.epoch_end:
            self.new_epoch(now)

    def add_peer(self, peer: PeerT, *, outbound: bool) -> None:
        """A connected peer; only ``outbound`` ones (we dialled them) become random edges."""
        if self._fixed is not None:
            self._present.add(peer)
        if outbound:
            self._outbound[peer] = None
        if self._edges is not None and (outbound or self._fixed is not None):
            self._top_up()

    def remove_peer(self, peer: PeerT) -> None:
        self._present.discard(peer)
        self._outbound.pop(peer, None)
        self._route.pop(peer, None)
        if self._edges is not None and peer in self._edges:
            self._edges.remove(peer)
            self._route = {src: dst for src, dst in self._route.items() if dst != peer}
            self._route_pool = [p for p in self._route_pool if p != peer]
            if self._own_edge == peer:
                self._own_edge = None
            self._top_up()

    def edges(self) -> list[PeerT]:
        """This epoch's out-edges, chosen now if this is their first use."""
        if self._edges is None:
            self._edges = []
            self._choose_edges()
        return self._edges

    def own_edge(self) -> PeerT | None:
        """The out-edge this node's own transactions take this epoch (None: no edge yet)."""
        if self._own_edge is None:
            edges = self.edges()
            self._own_edge = self._rng.choice(edges) if edges else None
        return self._own_edge

    def route_of(self, inbound: PeerT) -> PeerT | None:
        """The out-edge ``inbound``'s stem transactions take this epoch (None: no edge)."""
        edge = self._route.get(inbound)
        if edge is None:
            edges = self.edges()
            if not edges:
                return None
            pool = self._route_pool
            if not pool:
                pool.extend(edges)
                self._rng.shuffle(pool)
            edge = pool.pop()
            self._route[inbound] = edge
        return edge

    def _top_up(self) -> None:
        """Mid-epoch (a peer came or went): more edges if any are missing. A new one has not
        been handed out this round, so it joins the round's pool; else the next route would be
        drawn from a fresh round and could share an out-edge with a route already given while
        the new one stays unused (not one-to-one)."""
        assert self._edges is not None
        before = set(self._edges)
        self._choose_edges()
        self._route_pool.extend(p for p in self._edges if p not in before)

    def _choose_edges(self) -> None:
        assert self._edges is not None
        if self._fixed is not None:
            self._edges = [p for p in self._fixed if p in self._present]
            return
        missing = self._out_degree - len(self._edges)
        if missing > 0:
            candidates = [p for p in self._outbound if p not in self._edges]
            self._edges.extend(self._rng.sample(candidates, min(missing, len(candidates))))
