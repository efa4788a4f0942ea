"""Spies inside production nodes: what a node that follows the protocol can write down.

Theory of operation: a spy is an ordinary :class:`murmur.node.node.Node`; the adversary adds
logging around it and changes nothing it does. Two things are logged.

* **Gossip sightings** come from the node's own outputs: every ``MessageDelivered`` on a
  watched topic is a sighting (time, transaction, the link peer it came from). When the spy is
  the exit of the circuit that carried the transaction, the delivery is its own publication; the
  sighting then names the hop that handed it the cell (the only neighbour it can name).
* **Relay cells** come from a :class:`RelayTap` that wraps the spy's
  :class:`~murmur.overlay.circuits.relay.CircuitRelay` (``node.circuits.relay``; the circuit host
  calls it through that attribute). Every call is passed to the real relay; around
  ``receive_cell`` the tap reads the cell header (circuit id and command, which travel in the
  clear inside the link encryption) and the relay's public counters: did ``cells_recognized``
  move (this hop could read the cell), then did a cover, exit or ``extend_requests`` counter
  move. The relay counts every whole EXTEND it parses in ``extend_requests`` before deciding
  anything about it, so an EXTEND is logged as one whatever the relay (or a wrapper around it)
  then does: CREATE at once, dial, join another circuit's dial, refuse it, or, under
  :class:`~murmur.sim.denial.SelectiveDenial` (``extend``), have it denied and its CREATE
  taken away. The relay's outputs name the exit's publications (``PublishFromExit``) and the
  legs. The tap numbers each circuit at its CREATE and learns its ``next`` leg from the CREATE
  the relay sends for its EXTEND, or, when that CREATE leaves later (once a dial is up), from
  the cell the relay sends back towards ``prev`` when that leg answers (EXTENDED or
  TRUNCATED), so every cell is logged with its circuit and leg. A recognized cell the tap
  cannot tell is logged as ``?``: the cells of a multi-cell EXTEND or DATA message before its
  last (the relay acts on the whole message) and messages the relay drops as malformed. Cells
  held in the relay's rate-limit queue are logged when they arrive, before processing, as
  unrecognized.
* **Forwards** come from the relay's outputs too: every RELAY cell it sends on a circuit's
  ``next`` leg is a cell it forwarded, logged when it leaves (:class:`ForwardRecord`). Where
  the level holds cells (``forward_delay``), a held cell leaves when the relay's timer fires,
  so the tap collects the relay's outputs after ``handle_timer`` as it does after
  ``receive_cell``, each batch at the time of the input that caused it. The spy thus knows
  its own hold on every cell it forwards.

Nothing here reaches into the relay's private state: the tap sees exactly what the node's owner
sees at the relay's boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from murmur.base.ids import NodeId
from murmur.overlay.circuits.events import PublishFromExit, SendCell
from murmur.overlay.circuits.host import RelayRole
from murmur.sim.adversary import CellRecord, ForwardRecord
from murmur.wire.cells import CELL_HEADER, CELL_HEADER_BYTES, CellCommand
from murmur.wire.gossip import message_id

_COVER_COUNTERS = ("exit_cover_dropped", "middle_cover_dropped")
_EXIT_COUNTERS = ("exit_publications", "exit_invalid_dropped", "exit_requests")
_COMMAND_NAMES = {c.value: c.name for c in CellCommand}

RecordCell = Callable[[CellRecord], None]
RecordForward = Callable[[ForwardRecord], None]


class RelayTap:
    """Wraps one spy's relay: the relay does all the work, the tap writes down what it saw."""

    def __init__(
        self,
        relay: RelayRole,
        *,
        spy: int,
        index_of: Mapping[NodeId, int],
        record: RecordCell | None,
        record_forward: RecordForward | None = None,
        on_create_sent: Callable[[int, int], None] | None = None,
    ) -> None:
        """``record`` gets every cell the relay receives (None: log nothing);
        ``record_forward`` every cell it sends on towards a circuit's next hop (None: log none;
        it needs ``record``, as the legs are learnt from the cells logged);
        ``on_create_sent(peer, circ_id)`` every CREATE the relay sends (a leg it opened for an
        EXTEND)."""
        self._relay = relay
        self._on_create_sent = on_create_sent
        self._spy = spy
        self._index_of = index_of
        self._record = record
        self._record_forward = record_forward
        self._pending: list[Any] = []
        self._legs: dict[tuple[NodeId, int], tuple[int, str]] = {}
        self._circuits = 0
        self.exit_senders: dict[bytes, int] = {}
        """Gossip message id of what this relay published as an exit -> the hop it came from
        (kept at every relay: for a spy it is what it saw, elsewhere the simulator's ground
        truth of which circuit carried a transaction)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._relay, name)

    def drain_actions(self) -> list[Any]:
        actions = self._pending + self._relay.drain_actions()
        self._pending = []
        if self._on_create_sent is not None:
            for action in actions:
                if _is_create(action):
                    circ_id = CELL_HEADER.unpack_from(action.cell)[0]
                    self._on_create_sent(self._index(action.peer), circ_id)
        return actions

    def handle_timer(self, now: float) -> None:
        """The relay's timers release held cells: logging their forwards needs the time they
        leave, which only this call knows, so its outputs are collected here."""
        self._relay.handle_timer(now)
        if self._record_forward is not None:
            out = self._relay.drain_actions()
            self._pending.extend(out)
            self._note_forwards(out, now)

    def receive_cell(self, peer: NodeId, data: bytes, now: float) -> None:
        relay = self._relay
        if self._record is None:
            relay.receive_cell(peer, data, now)
            out = relay.drain_actions()
            if out:
                self._pending.extend(out)
                self._note_publications(peer, out)
            return
        counters = relay.counters
        recognized_before = counters.get("cells_recognized")
        cover_before = sum(counters.get(name) for name in _COVER_COUNTERS)
        exit_before = sum(counters.get(name) for name in _EXIT_COUNTERS)
        extend_before = counters.get("extend_requests")
        relay.receive_cell(peer, data, now)
        out = relay.drain_actions()
        self._pending.extend(out)
        if len(data) < CELL_HEADER_BYTES:
            return
        circ_id, code = CELL_HEADER.unpack_from(data)
        command = _COMMAND_NAMES.get(code, str(code))
        key = (peer, circ_id)
        known: tuple[int, str] | None
        if code == CellCommand.CREATE and _answers(out, key, CellCommand.CREATED):
            known = (self._new_circuit(), "prev")
            self._legs[key] = known
        else:
            known = self._legs.get(key) or self._learn_next_leg(key, out)
        recognized = counters.get("cells_recognized") > recognized_before
        relay_command = None
        if recognized:
            relay_command = "?"
            if sum(counters.get(name) for name in _COVER_COUNTERS) > cover_before:
                relay_command = "COVER"
            elif sum(counters.get(name) for name in _EXIT_COUNTERS) > exit_before:
                relay_command = "DATA"
            elif counters.get("extend_requests") > extend_before:
                relay_command = "EXTEND"
                if known is not None:
                    for action in out:
                        if _is_create(action):
                            circ = CELL_HEADER.unpack_from(action.cell)[0]
                            self._legs[(action.peer, circ)] = (known[0], "next")
        self._note_publications(peer, out)
        self._note_forwards(out, now)
        circuit, leg = known if known is not None else (-1, "unknown")
        self._record(
            CellRecord(
                now,
                self._spy,
                self._index(peer),
                circ_id,
                circuit,
                leg,
                command,
                recognized,
                relay_command,
            )
        )

    def _note_publications(self, peer: NodeId, out: list[Any]) -> None:
        for action in out:
            if isinstance(action, PublishFromExit):
                self.exit_senders[message_id(action.topic, action.payload)] = self._index(peer)

    def _note_forwards(self, out: list[Any], now: float) -> None:
        """Logs the RELAY cells among ``out`` that leave on a known ``next`` leg (sent ``now``):
        a relay originates no forward cells, so each is one it forwarded."""
        if self._record_forward is None:
            return
        for action in out:
            if sends_cell(action, CellCommand.RELAY):
                leg = self._legs.get((action.peer, CELL_HEADER.unpack_from(action.cell)[0]))
                if leg is not None and leg[1] == "next":
                    self._record_forward(ForwardRecord(now, self._spy, leg[0]))

    def _new_circuit(self) -> int:
        self._circuits += 1
        return self._circuits

    def _learn_next_leg(self, key: tuple[NodeId, int], out: list[Any]) -> tuple[int, str] | None:
        """A cell on an unknown leg that the relay passed back towards a known ``prev`` leg came
        from that circuit's ``next`` leg (the answer to its CREATE, or a backward cell)."""
        for action in out:
            if isinstance(action, SendCell) and len(action.cell) >= CELL_HEADER_BYTES:
                prev = self._legs.get((action.peer, CELL_HEADER.unpack_from(action.cell)[0]))
                if prev is not None and prev[1] == "prev":
                    self._legs[key] = (prev[0], "next")
                    return prev[0], "next"
        return None

    def _index(self, peer: NodeId) -> int:
        return self._index_of.get(peer, -1)


def _answers(out: list[Any], key: tuple[NodeId, int], command: CellCommand) -> bool:
    return any(
        isinstance(a, SendCell)
        and a.peer == key[0]
        and CELL_HEADER.unpack_from(a.cell) == (key[1], command)
        for a in out
    )


def _is_create(action: Any) -> TypeGuard[SendCell]:
    return sends_cell(action, CellCommand.CREATE)


def sends_cell(action: Any, command: CellCommand) -> TypeGuard[SendCell]:
    """Whether a relay's action sends a cell of ``command`` (read from its clear header)."""
    return isinstance(action, SendCell) and action.cell[CELL_HEADER_BYTES - 1] == command
