"""An in-memory network of circuit hosts: moves SendCell bytes, answers ConnectTo, runs timers.

Every cell that crosses a link is recorded (sender, receiver, bytes) with its time, so tests can
check sizes and timing and look for plaintext on the wire. Links open instantly and deliver in
order; a node that is ``kill``-ed vanishes and its neighbours are told ``peer_disconnected``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from murmur.base.ids import NodeId
from murmur.overlay.circuits import (
    CircuitAction,
    CircuitHost,
    ClientConfig,
    ConnectTo,
    OnionKeyPair,
    OnionKeyRing,
    PublishFromExit,
    RelayCapacity,
    RelayConfig,
    RelayDirectory,
    RelayInfo,
    SendCell,
)
from murmur.overlay.circuits.selection import NatType
from murmur.overlay.peers.netgroup import network_prefix
from murmur.sim.rng import SeededRng
from murmur.wire.cells import CELL_HEADER_BYTES, CellCommand, RelayAddress

CAPACITY = RelayCapacity(bandwidth_kbps=40_000, uptime_ratio=0.9, nat_type=NatType.OPEN, load=0.1)


class Timed(Protocol):
    """Anything with a sans-I/O timer."""

    def next_deadline(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


@dataclass(eq=False)
class Node:
    node_id: NodeId
    info: RelayInfo
    host: CircuitHost = field(init=False)
    events: list[CircuitAction] = field(default_factory=list)
    published: list[tuple[str, bytes]] = field(default_factory=list)
    requests_seen: list[tuple[str, bytes]] = field(default_factory=list)


Validate = Callable[[str, bytes], bool]
Answer = Callable[[str, bytes], bytes | None]


class Network:
    def __init__(
        self,
        size: int,
        *,
        seed: int = 1,
        validate: Validate | None = None,
        answer: Answer | None = None,
        client_config: ClientConfig | None = None,
        relay_config: RelayConfig | None = None,
    ) -> None:
        self.now = 0.0
        self.rng = SeededRng(seed)
        self.wire: list[tuple[NodeId, NodeId, bytes]] = []
        self.wire_times: list[float] = []
        """When each cell of ``wire`` crossed its link."""
        self.links: set[frozenset[NodeId]] = set()
        self.refuse_links: set[NodeId] = set()
        self.black_holes: set[NodeId] = set()
        self.lost: set[tuple[NodeId, NodeId, CellCommand]] = set()
        """(sender, receiver, command): cells lost on the way, as a relay that silently fails
        to extend circuits to some relays (CREATE) or to pass their cells on (RELAY) does."""
        self.nodes: dict[NodeId, Node] = {}
        self._queue: deque[tuple[NodeId, NodeId, bytes]] = deque()
        self.directory = RelayDirectory()
        for i in range(size):
            node_rng = self.rng.fork(i)
            node_id = NodeId(node_rng.random_bytes(32))
            keys = OnionKeyPair.generate(node_rng)
            info = RelayInfo(node_id, RelayAddress(f"10.{i + 1}.0.1", 7000), keys.public, CAPACITY)
            self.directory.upsert(info)
            node = Node(node_id, info)
            node.host = CircuitHost(
                node_id=node_id,
                onion_keys=OnionKeyRing(keys, now=self.now),
                directory=self.directory,
                rng=node_rng,
                now=self.now,
                validate=validate or (lambda topic, payload: True),
                answer=self._answerer(node, answer),
                own_prefixes=frozenset({network_prefix(info.address.host)}),
                own_host=info.address.host,
                client_config=client_config,
                relay_config=relay_config,
            )
            self.nodes[node_id] = node

    @staticmethod
    def _answerer(node: Node, answer: Answer | None) -> Answer:
        def reply(topic: str, payload: bytes) -> bytes | None:
            node.requests_seen.append((topic, payload))
            return answer(topic, payload) if answer else None

        return reply

    def node(self, index: int) -> Node:
        return list(self.nodes.values())[index]

    # --- moving bytes ---------------------------------------------------------------------

    def pump(self) -> None:
        """Delivers everything in flight, and everything that causes, until quiet."""
        while True:
            collected = False
            for node in list(self.nodes.values()):
                collected |= self._collect(node)
            if not self._queue and not collected:
                return
            while self._queue:
                src, dst, cell = self._queue.popleft()
                target = self.nodes.get(dst)
                if target is None or frozenset((src, dst)) not in self.links:
                    continue
                if self.lost and (src, dst, _command(cell)) in self.lost:
                    continue
                self.wire.append((src, dst, cell))
                self.wire_times.append(self.now)
                if dst in self.black_holes:
                    continue
                target.host.receive_cell(src, cell, self.now)

    def _collect(self, node: Node) -> bool:
        """Routes the node's actions; True if it had any (a link it opened may cause more)."""
        actions = node.host.drain_actions()
        for action in actions:
            if isinstance(action, SendCell):
                self._queue.append((node.node_id, action.peer, action.cell))
            elif isinstance(action, ConnectTo):
                self._connect(node, action.peer)
            else:
                node.events.append(action)
                if isinstance(action, PublishFromExit):
                    node.published.append((action.topic, action.payload))
        return bool(actions)

    def _connect(self, node: Node, peer: NodeId) -> None:
        target = self.nodes.get(peer)
        if target is None or peer in self.refuse_links:
            node.host.link_failed(peer, self.now)
            return
        if frozenset((node.node_id, peer)) not in self.links:
            self.links.add(frozenset((node.node_id, peer)))
            target.host.link_ready(node.node_id, self.now)
        node.host.link_ready(peer, self.now)

    # --- time -----------------------------------------------------------------------------

    def run_until(
        self,
        until: float,
        *,
        timers: Sequence[Timed] = (),
        on_step: Callable[[float], None] | None = None,
    ) -> None:
        """Runs every host's timer, and those of ``timers`` (say a shaper driving a client),
        due by ``until``; ``on_step`` sees the clock after each round of timers."""
        self.pump()
        for _ in range(100_000):
            owners = [*(n.host for n in self.nodes.values()), *timers]
            deadlines = [d for owner in owners if (d := owner.next_deadline()) is not None]
            nxt = min(deadlines, default=None)
            if nxt is None or nxt > until:
                break
            self.now = max(self.now, nxt)
            for owner in [*(n.host for n in list(self.nodes.values())), *timers]:
                deadline = owner.next_deadline()
                if deadline is not None and deadline <= self.now:
                    owner.handle_timer(self.now)
            self.pump()
            if on_step is not None:
                on_step(self.now)
        else:
            raise AssertionError("timers never settle")
        self.now = max(self.now, until)

    def kill(self, node_id: NodeId) -> None:
        """The node vanishes: its links drop and every neighbour hears of it."""
        self.nodes.pop(node_id)
        for link in [link for link in self.links if node_id in link]:
            self.links.discard(link)
            (other,) = link - {node_id}
            if other in self.nodes:
                self.nodes[other].host.peer_disconnected(node_id, self.now)
        self.pump()

    def events(self, kind: type) -> list[tuple[Node, object]]:
        return [(n, e) for n in self.nodes.values() for e in n.events if isinstance(e, kind)]


def _command(cell: bytes) -> int:
    return cell[CELL_HEADER_BYTES - 1] if len(cell) >= CELL_HEADER_BYTES else -1
