"""Protocol kits: how the simulator builds, wires and reads one protocol family.

Theory of operation: the engine hosts any sans-I/O object; a kit is the small adapter that knows
the object's commands. A kit builds one protocol object per node (its own rng, the node's
position in the graph), connects peers, submits transactions, registers handlers for the
protocol's action types on the engine, and tells the adversary what a message means
(``observe``: transaction id and phase).

A protocol that needs more than one object per node and a message per action (the onion
protocol runs whole production nodes over simulated byte streams, with a warm-up and a baseline
phase) is a :class:`HostedKit` instead: it draws on the same :class:`~murmur.sim.scenario.World`
and returns the same :class:`~murmur.sim.scenario.RunRecord`, but hosts the run itself
(:class:`murmur.sim.onion.OnionKit`).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from murmur.base.rng import Rng
from murmur.overlay.dandelion import Dandelion, DandelionConfig, StemTx
from murmur.overlay.diffusion import (
    RELAY_DELAY_MEAN_S,
    Broadcast,
    Diffusion,
    RelayTx,
    SendMessage,
    Transaction,
    TxAccepted,
)
from murmur.sim.engine import Engine, Receive, SimNode
from murmur.sim.graphs import PeerGraph

if TYPE_CHECKING:
    from murmur.sim.scenario import Progress, RunRecord, Scenario, World

OnAccept = Callable[[int, bytes, float], None]


class ProtocolKit(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def estimators(self) -> tuple[str, ...]: ...

    def build(self, index: int, graph: PeerGraph, rng: Rng, now: float) -> Any: ...

    def receiver(self, protocol: Any) -> Receive: ...

    def connect(self, protocol: Any, peer: int, *, outbound: bool, now: float) -> None: ...

    def disconnect(self, protocol: Any, peer: int, now: float) -> None: ...

    def submit(self, protocol: Any, tx: Transaction, now: float) -> None: ...

    def install(self, engine: Engine, on_accept: OnAccept, *, elide_duplicates: bool) -> None:
        """Register the action handlers; ``elide_duplicates``: see :func:`_install_baseline`."""
        ...

    def observe(self, message: Any) -> tuple[bytes, str] | None: ...

    def tx_of(self, message: Any) -> bytes: ...

    def relayed(self, protocol: Any) -> int:
        """How many transactions of others this node relayed (relay participation)."""
        ...


@runtime_checkable
class HostedKit(Protocol):
    """A protocol that runs a whole world itself (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def estimators(self) -> tuple[str, ...]: ...

    def run(
        self, world: World, scenario: Scenario, progress: Progress | None = None
    ) -> RunRecord: ...


class _Holders:
    """Per transaction: when each node holds it (``Engine.transmit_each``'s ``first``)."""

    __slots__ = ("count", "first")

    def __init__(self, nodes: int) -> None:
        self.first = array("d", [math.inf]) * nodes
        self.count = 0


def _install_baseline(engine: Engine, on_accept: OnAccept, *, elide_duplicates: bool) -> None:
    """Sends go through the engine's link model; accepted transactions are reported.

    With ``elide_duplicates`` (the caller's promise that no node restarts during the run), a
    transaction relayed to an honest node that has accepted it, or that an earlier copy will
    reach first, is sent but not delivered: both protocols drop it there with only a counter
    (Dandelion++ keeps no embargo for a transaction it has accepted, and a node accepts the
    first ``RelayTx`` it gets from a peer), so nothing measured changes, and it is most of
    flooding's deliveries. Spies still get every copy: the adversary logs what it receives.
    A node's ``TxAccepted`` marks it as holding the transaction; the marks of a transaction
    are dropped once every node holds it (a relay after that queues every copy, which is
    always exact), so they cost 8 bytes a node for each transaction still spreading.
    """
    transmit = engine.transmit
    transmit_each = engine.transmit_each
    nodes = engine.nodes
    holders: dict[bytes, _Holders] = {}

    def send(node: SimNode, action: SendMessage[int], now: float) -> None:
        message = action.message
        assert isinstance(message, (StemTx, RelayTx))  # the only messages the two protocols send
        transmit(node, action.peer, message, message.wire_size, action.delay_s)

    def broadcast(node: SimNode, action: Broadcast[int], now: float) -> None:
        message = action.message
        assert isinstance(message, (StemTx, RelayTx))
        held = holders.get(message.tx.tx_id)
        first = None if held is None else held.first
        transmit_each(node, message, message.wire_size, action.peers, action.delays_s, first)

    def accepted(node: SimNode, action: TxAccepted, now: float) -> None:
        tx_id = action.tx.tx_id
        on_accept(node.index, tx_id, now)
        if not elide_duplicates:
            return
        held = holders.get(tx_id)
        if held is None:
            held = holders[tx_id] = _Holders(len(nodes))
        if not node.spy:
            held.first[node.index] = -math.inf
        held.count += 1
        if held.count == len(nodes):
            del holders[tx_id]

    engine.on_action(SendMessage, send)
    engine.on_action(Broadcast, broadcast)
    engine.on_action(TxAccepted, accepted)


def _observe_baseline(message: Any) -> tuple[bytes, str] | None:
    if isinstance(message, StemTx):
        return message.tx.tx_id, "stem"
    if isinstance(message, RelayTx):
        return message.tx.tx_id, "fluff"
    return None


@dataclass(frozen=True, slots=True)
class DiffusionKit:
    relay_delay_mean_s: float = RELAY_DELAY_MEAN_S
    name: str = "diffusion"
    estimators: tuple[str, ...] = ("first_spy",)

    def build(self, index: int, graph: PeerGraph, rng: Rng, now: float) -> Diffusion[int]:
        return Diffusion(rng=rng, relay_delay_mean_s=self.relay_delay_mean_s)

    def receiver(self, protocol: Diffusion[int]) -> Receive:
        return protocol.receive_message

    def connect(self, protocol: Diffusion[int], peer: int, *, outbound: bool, now: float) -> None:
        protocol.add_peer(peer, now)

    def disconnect(self, protocol: Diffusion[int], peer: int, now: float) -> None:
        protocol.remove_peer(peer, now)

    def submit(self, protocol: Diffusion[int], tx: Transaction, now: float) -> None:
        protocol.submit(tx, now)

    def install(self, engine: Engine, on_accept: OnAccept, *, elide_duplicates: bool) -> None:
        _install_baseline(engine, on_accept, elide_duplicates=elide_duplicates)

    def observe(self, message: Any) -> tuple[bytes, str] | None:
        return _observe_baseline(message)

    def tx_of(self, message: Any) -> bytes:
        tx_id: bytes = message.tx.tx_id
        return tx_id

    def relayed(self, protocol: Diffusion[int]) -> int:
        return protocol.counters.get("tx_relayed")


@dataclass(frozen=True, slots=True)
class DandelionKit:
    config: DandelionConfig = field(default_factory=DandelionConfig)
    exact_stem: bool = False
    """Use the graph's out-edges as a fixed (exact) stem graph instead of 2 random outbound."""
    name: str = "dandelion"
    estimators: tuple[str, ...] = ("first_spy", "stem_predecessor")

    def build(self, index: int, graph: PeerGraph, rng: Rng, now: float) -> Dandelion[int]:
        stem = graph.out[index] if self.exact_stem else None
        return Dandelion(rng=rng, now=now, config=self.config, stem_peers=stem)

    def receiver(self, protocol: Dandelion[int]) -> Receive:
        return protocol.receive_message

    def connect(self, protocol: Dandelion[int], peer: int, *, outbound: bool, now: float) -> None:
        protocol.add_peer(peer, now, outbound=outbound)

    def disconnect(self, protocol: Dandelion[int], peer: int, now: float) -> None:
        protocol.remove_peer(peer, now)

    def submit(self, protocol: Dandelion[int], tx: Transaction, now: float) -> None:
        protocol.submit(tx, now)

    def install(self, engine: Engine, on_accept: OnAccept, *, elide_duplicates: bool) -> None:
        _install_baseline(engine, on_accept, elide_duplicates=elide_duplicates)

    def observe(self, message: Any) -> tuple[bytes, str] | None:
        return _observe_baseline(message)

    def tx_of(self, message: Any) -> bytes:
        tx_id: bytes = message.tx.tx_id
        return tx_id

    def relayed(self, protocol: Dandelion[int]) -> int:
        return protocol.counters.get("tx_relayed") + protocol.diffusion_counters.get("tx_relayed")
