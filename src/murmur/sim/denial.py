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
closes later); ``carry`` marks the predecessor's leg and drops the RELAY cells the relay passes
on from it after the next extension's four cells (at hop 1 those carry the extension to hop 3;
at hop 2, where none follows, they are the circuit's first messages). What it cannot see it
lets through: an extension the relay performs later, from its rate-limit queue or on a link
another circuit was already dialling. ``carry`` is not simulated with relays that hold cells
(the enhanced and maximum levels): held cells leave on the relay's timers, past this filter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from murmur.base.ids import NodeId
from murmur.overlay.circuits.events import CircuitAction, ConnectTo, SendCell
from murmur.overlay.circuits.host import RelayRole
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
        self._doomed: dict[tuple[NodeId, int], tuple[NodeId, int]] = {}
        """``carry``: predecessor's leg -> (honest next relay, cells still let through)."""
        self.denied = 0
        """Circuits refused (``extend``) or whose cells were dropped (``carry``) so far."""

    def receive_cell(self, peer: NodeId, data: bytes, now: float) -> None:
        relay = self._relay
        if self._doomed and len(data) >= CELL_HEADER_BYTES:
            circ_id, command = CELL_HEADER.unpack_from(data)
            if command == CellCommand.DESTROY:  # the predecessor closed it
                self._doomed.pop((peer, circ_id), None)
        relay.receive_cell(peer, data, now)
        out = relay.drain_actions()
        if len(data) >= CELL_HEADER_BYTES and not self._is_spy(peer):
            honest = {
                action.peer
                for action in out
                if (sends_cell(action, CellCommand.CREATE) or isinstance(action, ConnectTo))
                and not self._is_spy(action.peer)
            }
            circ_id = CELL_HEADER.unpack_from(data)[0]
            if self._carry:
                out = self._starve((peer, circ_id), honest, out)
            elif honest:
                out = self._deny(peer, circ_id, honest, out, now)
        self._pending.extend(out)

    def _starve(
        self, leg: tuple[NodeId, int], honest: set[NodeId], out: list[CircuitAction]
    ) -> list[CircuitAction]:
        doomed = self._doomed.get(leg)
        if doomed is None:
            if honest:
                self._doomed[leg] = (next(iter(honest)), EXTEND_CELLS)
                self.denied += 1
            return out
        target, allowance = doomed
        kept = []
        for action in out:
            if sends_cell(action, CellCommand.RELAY) and action.peer == target:
                if allowance == 0:
                    continue  # dropped: what the circuit carries never arrives
                allowance -= 1
            elif sends_cell(action, CellCommand.DESTROY) and action.peer == target:
                del self._doomed[leg]
            kept.append(action)
        if leg in self._doomed:
            self._doomed[leg] = (target, allowance)
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

    def drain_actions(self) -> list[CircuitAction]:
        actions = super().drain_actions()
        if self._doomed:
            for action in actions:  # a circuit torn down towards its predecessor is over
                if sends_cell(action, CellCommand.DESTROY):
                    self._doomed.pop((action.peer, CELL_HEADER.unpack_from(action.cell)[0]), None)
        return actions

    def peer_disconnected(self, peer: NodeId, now: float) -> None:
        self._relay.peer_disconnected(peer, now)
        for leg in [leg for leg in self._doomed if leg[0] == peer]:
            del self._doomed[leg]
