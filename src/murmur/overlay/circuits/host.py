"""The node's whole circuit side in one object: its client and its relay, sharing ids and links.

Theory of operation. Every node is both an origin (:class:`CircuitClient`) and a relay
(:class:`CircuitRelay`). Both create circuits on the same links, so they draw circuit ids from one
:class:`CircuitIds`; an incoming cell goes to the client when its (peer, id) names one of the
client's circuits and to the relay otherwise (the relay handles CREATE, relayed cells, and drops
and counts cells for unknown circuits). Link news goes to both, actions from both come out of one
list, and the deadline is the earlier of the two. The relay counts how the extensions it performs
fare, and the client judges its guards against that (path bias's baseline). The node calls
``link_ready`` for every link that comes up, whether it dialled it for a ``ConnectTo`` or
accepted it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from murmur.base.ids import NodeId
from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.overlay.circuits.client import CircuitClient
from murmur.overlay.circuits.config import ClientConfig, RelayConfig
from murmur.overlay.circuits.events import CircuitAction
from murmur.overlay.circuits.guards import GuardRecord
from murmur.overlay.circuits.ids import CircuitIds
from murmur.overlay.circuits.onion_keys import OnionKeyRing
from murmur.overlay.circuits.path_bias import RelayedOutcomes
from murmur.overlay.circuits.relay import Answer, CircuitRelay, Validate
from murmur.overlay.circuits.selection import RelayDirectory
from murmur.wire.cells import CELL_HEADER, CELL_HEADER_BYTES, PADDING_BUCKETS_BYTES


class RelayRole(Protocol):
    """What the host asks of its relay: a :class:`CircuitRelay`, or a wrapper that watches one
    (the simulator's spies log what their relay sees), hence a protocol and not the class."""

    @property
    def counters(self) -> Counters: ...

    def receive_cell(self, peer: NodeId, data: bytes, now: float) -> None: ...

    def link_ready(self, peer: NodeId, now: float) -> None: ...

    def link_failed(self, peer: NodeId, now: float, *, ours: bool = False) -> None: ...

    def peer_disconnected(self, peer: NodeId, now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_deadline(self) -> float | None: ...

    def drain_actions(self) -> list[CircuitAction]: ...

    def peers_in_use(self) -> set[NodeId]: ...


class CircuitHost:
    def __init__(
        self,
        *,
        node_id: NodeId,
        onion_keys: OnionKeyRing,
        directory: RelayDirectory,
        rng: Rng,
        now: float,
        validate: Validate,
        answer: Answer,
        own_prefixes: frozenset[bytes] = frozenset(),
        own_host: str | None = None,
        client_config: ClientConfig | None = None,
        relay_config: RelayConfig | None = None,
        guards: Iterable[GuardRecord] = (),
        wall_clock_offset_s: float = 0.0,
    ) -> None:
        ids = CircuitIds(node_id)
        client_config = client_config or ClientConfig()
        relayed = RelayedOutcomes(client_config.guards.path_bias)
        self.client = CircuitClient(
            node_id=node_id,
            directory=directory,
            rng=rng,
            now=now,
            own_prefixes=own_prefixes,
            own_host=own_host,
            config=client_config,
            ids=ids,
            guards=guards,
            wall_clock_offset_s=wall_clock_offset_s,
            relayed=relayed,
        )
        self.relay: RelayRole = CircuitRelay(
            node_id=node_id,
            onion_keys=onion_keys,
            rng=rng,
            validate=validate,
            answer=answer,
            config=relay_config,
            ids=ids,
            relayed=relayed,
        )

    # --- commands (the private path) -------------------------------------------------------

    def send(
        self,
        topic: str,
        payload: bytes,
        now: float,
        *,
        buckets: tuple[int, ...] = PADDING_BUCKETS_BYTES,
    ) -> int:
        return self.client.send(topic, payload, now, buckets=buckets)

    def send_request(self, topic: str, payload: bytes, now: float) -> int:
        return self.client.send_request(topic, payload, now)

    def send_cover(self, now: float, *, padded_bytes: int = 0, second_hop: bool = False) -> bool:
        return self.client.send_cover(now, padded_bytes=padded_bytes, second_hop=second_hop)

    def peers_in_use(self) -> set[NodeId]:
        """Peers a circuit (ours, or one we relay) runs through or is being built to."""
        return self.client.peers_in_use() | self.relay.peers_in_use()

    # --- inputs ----------------------------------------------------------------------------

    def receive_cell(self, peer: NodeId, data: bytes, now: float) -> None:
        if len(data) >= CELL_HEADER_BYTES and self.client.owns(
            peer, CELL_HEADER.unpack_from(data)[0]
        ):
            self.client.receive_cell(peer, data, now)
        else:
            self.relay.receive_cell(peer, data, now)

    def link_ready(self, peer: NodeId, now: float) -> None:
        self.client.link_ready(peer, now)
        self.relay.link_ready(peer, now)

    def link_latency(self, peer: NodeId, rtt_s: float | None) -> None:
        self.client.link_latency(peer, rtt_s)

    def link_failed(
        self,
        peer: NodeId,
        now: float,
        *,
        refused_locally: bool = False,
        by_policy: bool = False,
    ) -> None:
        """A dial to ``peer`` failed, or was never made: ``refused_locally`` when this node is
        out of links for circuits, ``by_policy`` when the address is one it does not dial for
        others. Neither says anything of the network, so the relay does not count them."""
        self.client.link_failed(peer, now, refused_locally=refused_locally)
        self.relay.link_failed(peer, now, ours=refused_locally or by_policy)

    def peer_disconnected(self, peer: NodeId, now: float) -> None:
        self.client.peer_disconnected(peer, now)
        self.relay.peer_disconnected(peer, now)

    def handle_timer(self, now: float) -> None:
        self.client.handle_timer(now)
        self.relay.handle_timer(now)

    def next_deadline(self) -> float | None:
        client, relay = self.client.next_deadline(), self.relay.next_deadline()
        if client is None or relay is None:
            return relay if client is None else client
        return min(client, relay)

    def drain_actions(self) -> list[CircuitAction]:
        return self.client.drain_actions() + self.relay.drain_actions()

    def metrics(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        self.client.counters.merge_into(merged, "client.")
        self.relay.counters.merge_into(merged, "relay.")
        return dict(sorted(merged.items()))
