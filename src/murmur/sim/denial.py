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
honest dooms its next leg, whose RELAY cells are dropped after the next extension's four
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
        """``carry``: a doomed circuit's next leg -> RELAY cells onwards still let through
        (kept by the wrapper, so cells the relay sends as it tears the circuit down are still
        found after the leg has left its table)."""
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
        legs, doomed = self._legs, self._doomed
        kept: list[CircuitAction] = []
        for action in actions:
            if isinstance(action, SendCell) and len(action.cell) >= CELL_HEADER_BYTES:
                circ_id, command = CELL_HEADER.unpack_from(action.cell)
                leg = (action.peer, circ_id)
                if command == CellCommand.CREATE:
                    entry = legs.get(leg)
                    if entry is not None and not entry[1]:  # a circuit's next leg
                        honest = not self._is_spy(entry[0].prev[0])
                        if honest and not self._is_spy(action.peer):
                            if leg not in doomed:  # an onionskin takes several CREATE cells
                                self.denied += 1
                            doomed[leg] = EXTEND_CELLS
                        else:
                            doomed.pop(leg, None)
                elif command == CellCommand.RELAY and leg in doomed:
                    if doomed[leg] == 0:
                        continue  # dropped: what the circuit carries never arrives
                    doomed[leg] -= 1
            kept.append(action)
        for leg in [leg for leg in doomed if leg not in legs]:
            del doomed[leg]  # the circuit is over
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
