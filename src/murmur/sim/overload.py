"""A network in trouble: relays that refuse a share of the circuits extended to them.

Theory of operation. Path bias (:mod:`murmur.overlay.circuits.path_bias`) disables a guard
whose circuits fail past it far more often than circuits do; this adversary is the "circuits
do" half. It exhausts honest relays everywhere (or the network is simply overloaded), so each
refuses a share of the CREATEs it is sent by a relay extending a circuit, answering DESTROY
(``resource``) at the first cell as an exhausted relay does; the rest of that CREATE's cells
reach the relay as orphans it drops. A circuit past an honest guard then needs two
extensions to be accepted, and fails with probability 1 - (1 - share)²: at a share of 0.35,
58 % of the time, which a fixed bar of one half reads as a bad guard. The node's own relay
sees the same refusals on the extensions it performs for others, which is what the
relay-side baseline counts.

CREATEs from a circuit's origin to its hop 1 are spared: refusing those tests guard
reachability (a guard that refuses marks itself unreachable for a while,
:mod:`murmur.overlay.circuits.guards`), not path bias, and mixing the two would hide what
this measures. Which CREATEs are extensions is the simulator's ground truth (the relay taps
note every CREATE a relay sends), never something a relay could know.
"""

from __future__ import annotations

from collections.abc import Callable

from murmur.base.ids import NodeId
from murmur.base.rng import Rng
from murmur.overlay.circuits.events import SendCell
from murmur.overlay.circuits.host import RelayRole
from murmur.sim.relay_wrapper import RelayWrapper
from murmur.wire.cells import (
    CELL_HEADER,
    CELL_HEADER_BYTES,
    FRAGMENT_HEADER,
    FRAGMENT_HEADER_BYTES,
    CellCommand,
    DestroyReason,
    encode_cell,
    encode_reason,
)

_REFUSAL = encode_reason(DestroyReason.RESOURCE)
_CREATE_HEAD = CELL_HEADER_BYTES + FRAGMENT_HEADER_BYTES


class Overload(RelayWrapper):
    """Wraps an honest relay; refuses ``share`` of the circuits other relays extend to it."""

    def __init__(
        self,
        relay: RelayRole,
        *,
        share: float,
        rng: Rng,
        is_extension: Callable[[NodeId, int], bool],
    ) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError("an overload share must lie in [0, 1]")
        super().__init__(relay)
        self._share = share
        self._rng = rng
        self._is_extension = is_extension
        self.refused = 0
        """CREATEs refused so far."""

    def receive_cell(self, peer: NodeId, data: bytes, now: float) -> None:
        if len(data) >= _CREATE_HEAD:
            circ_id, command = CELL_HEADER.unpack_from(data)
            if (
                command == CellCommand.CREATE
                and FRAGMENT_HEADER.unpack_from(data, CELL_HEADER_BYTES)[1] == 0  # its first
                and self._is_extension(peer, circ_id)
                and self._rng.random() < self._share
            ):
                self.refused += 1
                self._pending.append(
                    SendCell(peer, encode_cell(circ_id, CellCommand.DESTROY, _REFUSAL))
                )
                return
        self._relay.receive_cell(peer, data, now)
