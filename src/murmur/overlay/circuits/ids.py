"""Per-link circuit ids, shared by the node's client and relay so they never collide.

Theory of operation. A circuit id names one circuit on one link and is chosen by the side that
creates the circuit on that link; the two legs of a circuit at a relay have unrelated ids, so the
id cannot link them. The top bit says which side chose it (set when the chooser's node id sorts
lower), so the two ends of a link never pick the same id. The client (origin legs) and the relay
(next-hop legs) draw from one :class:`CircuitIds`, uniformly from the same space, so the id
does not tell a relay whether its predecessor is an origin or another relay. (The cells that
follow a build still tell each hop its position: docs/protocol/circuits.md §2.2.)
"""

from __future__ import annotations

from murmur.base.ids import NodeId
from murmur.base.rng import Rng
from murmur.wire.cells import CIRC_ID_SIDE_BIT

_ID_SPACE = CIRC_ID_SIDE_BIT - 1


class CircuitIds:
    __slots__ = ("_in_use", "node_id")

    def __init__(self, node_id: NodeId) -> None:
        self.node_id = node_id
        self._in_use: set[tuple[NodeId, int]] = set()

    def _side_bit(self, creator: NodeId, other: NodeId) -> int:
        return CIRC_ID_SIDE_BIT if creator < other else 0

    def allocate(self, peer: NodeId, rng: Rng) -> int:
        bit = self._side_bit(self.node_id, peer)
        while True:
            circ_id = (rng.randrange(_ID_SPACE) + 1) | bit
            if (peer, circ_id) not in self._in_use:
                self._in_use.add((peer, circ_id))
                return circ_id

    def release(self, peer: NodeId, circ_id: int) -> None:
        self._in_use.discard((peer, circ_id))

    def chosen_by_peer(self, peer: NodeId, circ_id: int) -> bool:
        """True when ``circ_id`` lies in the half of the id space ``peer`` creates from."""
        return (circ_id & CIRC_ID_SIDE_BIT) == self._side_bit(peer, self.node_id)
