"""An active spy: selective denial of service to circuits (Borisov et al., CCS 2007).

Theory of operation. Every other adversary here follows the protocol. This one does not: a spy
relay serves a circuit from an honest predecessor only if it leads to a fellow spy. When the
spy is hop 1 (a guard), every circuit its origin can use then has a spy at hop 2 too, which
names the origin of everything it carries; when it is hop 2, it only costs the origin a
rebuild or a resend. The defence is the origin's path-bias accounting
(:mod:`murmur.overlay.circuits.path_bias`), which this adversary exists to measure. Two ways:

* ``extend``: asked to extend such a circuit to an honest relay, it destroys the circuit back
  towards the predecessor as if the next relay were unreachable (the circuit never gets built);
* ``carry``: it extends the circuit, lets the next extension through, and then drops every
  cell the circuit carries onwards (built, and useless: what the origin sends never arrives).

The spy's relay does all the work; this wrapper watches what it does with each cell, as
:class:`~murmur.sim.spy.RelayTap` does. When the relay's answer to a cell from an honest peer
is a CREATE to an honest relay (or a dial to one), ``extend`` drops the CREATE, hands its own
relay a DESTROY for the predecessor's leg (so the relay's state ends as a destroyed circuit's
would) and sends that DESTROY to the predecessor (a dial it lets happen: the link is unused and
closes later); what it cannot see it lets through: an extension the relay performs later, from
its rate-limit queue or on a link another circuit was already dialling. ``carry`` watches every
cell the relay sends, whenever it sends it (at once, after a dial, from its rate-limit queue,
or held by ``forward_delay`` at the enhanced and maximum levels), and finds each cell's circuit
by the relay's own leg table: a CREATE from a circuit whose predecessor and next relay are both
honest dooms the circuit, whose RELAY cells onwards are dropped after the next extension's four
(at hop 1 those carry the extension to hop 3; at hop 2, where none follows, they are the
circuit's first messages).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from murmur.base.ids import NodeId
from murmur.overlay.circuits.events import CircuitAction, ConnectTo, SendCell
from murmur.overlay.circuits.host import RelayRole
from murmur.overlay.circuits.relay import CircuitRelay
from murmur.sim.relay_wrapper import RelayWrapper
from murmur.sim.spy import sends_cell
from murmur.wire.cells import (
    CELL_HEADER,
    CELL_HEADER_BYTES,
    EXTEND_CELLS,
    CellCommand,
    DestroyReason,
    encode_cell,
    encode_reason,
)

_DESTROY_BODY = encode_reason(DestroyReason.HOP_GONE)
DenialMode = Literal["extend", "carry"]
DENIAL_MODES: tuple[DenialMode, ...] = ("extend", "carry")


class SelectiveDenial(RelayWrapper):
    """Wraps a spy's relay; serves circuits from honest peers only towards fellow spies."""

    def __init__(
        self, relay: RelayRole, *, is_spy: Callable[[NodeId], bool], mode: DenialMode = "extend"
    ) -> None:
        if mode not in DENIAL_MODES:
            raise ValueError(f"unknown denial mode {mode!r} (known: {', '.join(DENIAL_MODES)})")
        super().__init__(relay)
        self._is_spy = is_spy
        self._carry = mode == "carry"
        if self._carry and not isinstance(relay, CircuitRelay):
            raise TypeError("carry denial reads the leg table of a CircuitRelay")
        self._legs = relay._legs if isinstance(relay, CircuitRelay) else {}
        """The relay's own leg table, read only: which circuit a cell it sends belongs to."""
        self._doomed: dict[tuple[NodeId, int], int] = {}
        """``carry``: a doomed circuit's predecessor leg -> RELAY cells still let through."""
        self.denied = 0
        """Circuits refused (``extend``) or whose cells were dropped (``carry``) so far."""

    def receive_cell(self, peer: NodeId, data: bytes, now: float) -> None:
        relay = self._relay
        relay.receive_cell(peer, data, now)
        out = relay.drain_actions()
        if not self._carry and len(data) >= CELL_HEADER_BYTES and not self._is_spy(peer):
            honest = {
                action.peer
                for action in out
                if (sends_cell(action, CellCommand.CREATE) or isinstance(action, ConnectTo))
                and not self._is_spy(action.peer)
            }
            if honest:
                out = self._deny(peer, CELL_HEADER.unpack_from(data)[0], honest, out, now)
        self._pending.extend(out)

    def drain_actions(self) -> list[CircuitAction]:
        actions = super().drain_actions()
        return self._starve(actions) if self._carry else actions

    def _starve(self, actions: list[CircuitAction]) -> list[CircuitAction]:
        legs = self._legs
        kept: list[CircuitAction] = []
        for action in actions:
            if isinstance(action, SendCell) and len(action.cell) >= CELL_HEADER_BYTES:
                circ_id, command = CELL_HEADER.unpack_from(action.cell)
                entry = legs.get((action.peer, circ_id))
                if entry is not None and not entry[1]:  # a cell onwards, on a circuit's next leg
                    prev = entry[0].prev
                    if command == CellCommand.CREATE:
                        if not self._is_spy(prev[0]) and not self._is_spy(action.peer):
                            self._doomed[prev] = EXTEND_CELLS
                            self.denied += 1
                        else:  # a leg reused by a circuit this spy serves
                            self._doomed.pop(prev, None)
                    elif command == CellCommand.RELAY and prev in self._doomed:
                        if self._doomed[prev] == 0:
                            continue  # dropped: what the circuit carries never arrives
                        self._doomed[prev] -= 1
            kept.append(action)
        for leg in [leg for leg in self._doomed if leg not in legs]:
            del self._doomed[leg]  # the circuit is over
        return kept

    def _deny(
        self,
        peer: NodeId,
        circ_id: int,
        targets: set[NodeId],
        out: list[CircuitAction],
        now: float,
    ) -> list[CircuitAction]:
        self.denied += 1
        destroy = encode_cell(circ_id, CellCommand.DESTROY, _DESTROY_BODY)
        self._relay.receive_cell(peer, destroy, now)  # the relay tears its circuit down
        kept = [a for a in out if not (sends_cell(a, CellCommand.CREATE) and a.peer in targets)]
        kept += [
            a
            for a in self._relay.drain_actions()
            if not (isinstance(a, SendCell) and a.peer in targets)  # its DESTROY onwards
        ]
        kept.append(SendCell(peer, destroy))
        return kept
