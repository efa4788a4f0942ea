"""The base of the simulator's active adversaries: a relay role wrapping a node's own relay.

An adversary that changes what a relay does (:mod:`murmur.sim.denial`, :mod:`murmur.sim.overload`)
lets the relay do all the work and intervenes on the cells it receives or sends; whatever it
does not change passes through unchanged, which this class does once for all of them.
"""

from __future__ import annotations

from typing import Any

from murmur.base.ids import NodeId
from murmur.base.metrics import Counters
from murmur.overlay.circuits.events import CircuitAction
from murmur.overlay.circuits.host import RelayRole


class RelayWrapper:
    """Passes everything through to ``relay``; actions of the wrapper's own wait in
    ``_pending`` and leave before the relay's."""

    def __init__(self, relay: RelayRole) -> None:
        self._relay = relay
        self._pending: list[CircuitAction] = []

    @property
    def counters(self) -> Counters:
        return self._relay.counters

    def __getattr__(self, name: str) -> Any:
        return getattr(self._relay, name)

    def receive_cell(self, peer: NodeId, data: bytes, now: float) -> None:
        self._relay.receive_cell(peer, data, now)

    def drain_actions(self) -> list[CircuitAction]:
        actions = self._pending + self._relay.drain_actions()
        self._pending = []
        return actions

    def link_ready(self, peer: NodeId, now: float) -> None:
        self._relay.link_ready(peer, now)

    def link_failed(self, peer: NodeId, now: float, *, ours: bool = False) -> None:
        self._relay.link_failed(peer, now, ours=ours)

    def peer_disconnected(self, peer: NodeId, now: float) -> None:
        self._relay.peer_disconnected(peer, now)

    def handle_timer(self, now: float) -> None:
        self._relay.handle_timer(now)

    def next_deadline(self) -> float | None:
        return self._relay.next_deadline()

    def peers_in_use(self) -> set[NodeId]:
        return self._relay.peers_in_use()
