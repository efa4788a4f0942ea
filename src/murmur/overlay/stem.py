"""The Dandelion++ stem in the production node: stem routing whose fluff is the gossip mesh.

Theory of operation. This is the stem half of Dandelion++ (Fanti et al., SIGMETRICS 2018);
the diffusion half is the node's gossip mesh. Per epoch of ``epoch_s`` seconds a node draws its
role (*fluff* with probability q, else *stem*) and its stem out-edges: ``stem_out_degree`` of
its *outbound* peers, the ones it chose to dial, so an attacker cannot become anyone's stem by
dialling them. Forwarding is the paper's one-to-one pseudorandom routing: each inbound edge is
assigned one out-edge for the whole epoch (a shuffled round of the out-edges, then another), and
the node's own transactions take one fixed out-edge too.

* :meth:`StemPath.submit`: our own transaction goes to our own out-edge (:class:`SendStem`).
* :meth:`StemPath.receive_stem`: a stem node forwards on the inbound edge's out-edge, a fluff
  node fluffs (:class:`Fluff`: the node publishes it into the gossip mesh).
* Every node that stems a transaction (the origin included) keeps it in its *stempool* and arms
  an *embargo* (exponential, mean ``embargo_mean_s``); if it has not been seen in gossip
  (:meth:`StemPath.seen_in_gossip`, called on each gossip delivery) when the embargo fires, the
  node fluffs it itself: the fail-safe against a stem node that drops what it should relay.
* A transaction that comes back on the stem to a node that already stemmed it (a loop, or a
  peer sending it back) is dropped, at its origin and at a relay alike, and the embargoes of
  the nodes that hold it end the stem (the first to fire is any of them, uniformly; the
  simulator's baseline does the same). The two must answer alike: if a relay fluffed at once
  while the origin stemmed on, the successor of a node could send the transaction back and
  learn for certain whether that node created it. Nor may every node fluff where a loop closes:
  one-to-one routing permutes the stem edges, so a walk through stem nodes comes back to its
  first edge, and the first node it revisits is most often its origin. Each node forwards a
  transaction once, so the walk is finite.
* A node with no outbound peer refuses its own transaction (:class:`NoStemPeer`) rather than
  publishing it itself, which would name it as the origin; a relay without one fluffs.

Why not the simulator's :class:`murmur.overlay.dandelion.Dandelion`: its fluff phase is its own
:class:`~murmur.overlay.diffusion.Diffusion`, with its own mempool, seen-set and ``RelayTx``
messages keyed by a hash of the body alone. In the node the mempool and the diffusion are the
gossip router's, keyed by the gossip message id of topic and data; running a shadow diffusion
only to discard its output would cost memory and RNG draws. What the two share is the stem
graph (role, out-edges and routes per epoch): both route with
:class:`murmur.overlay.stem_graph.StemGraph`.

Randomness is drawn lazily, at the first stem decision of an epoch: a node that never uses the
stem draws nothing, so adding this component leaves every other RNG stream (and every simulated
figure) unchanged. Memory is bounded: at most ``stempool_capacity`` transactions and
``stempool_bytes`` bytes wait on embargoes (when full, the oldest is fluffed early), and at most
``known_capacity`` ids seen in gossip are remembered.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass

from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.overlay.routing import MessageType
from murmur.overlay.stem_graph import (
    EMBARGO_MEAN_S,
    EPOCH_S,
    FLUFF_PROBABILITY,
    STEM_OUT_DEGREE,
    Role,
    StemGraph,
)
from murmur.wire.stem import StemMessage, decode_stem

STEMPOOL_CAPACITY = 1_000
STEMPOOL_BYTES = 16 * 1024 * 1024
STEMPOOL_PEER_SHARE = 4
"""One peer's transactions hold at most 1/4 of the stempool (by count and by bytes): past
that its own oldest is fluffed. Otherwise a single peer sending junk stem transactions (the
application refuses them at the fluff, but only then) evicted, that is fluffed early, every
stem the node held, its own included: stems collapsed towards plain gossip at one peer's will."""
STEM_TOPICS = frozenset({MessageType.TRANSACTION.value})
"""What may travel the stem: transactions (a sync request needs a reply, so takes a circuit)."""
KNOWN_CAPACITY = 100_000
"""Ids of transactions seen in gossip (20 bytes each), to drop their late stem copies."""


class NoStemPeer(LocalProtocolError):
    """Our own transaction cannot enter the stem: this node has no outbound peer yet."""

    def __init__(self) -> None:
        super().__init__("no outbound peer to stem through yet; refusing to fluff from the origin")


@dataclass(frozen=True, slots=True)
class StemConfig:
    fluff_probability: float = FLUFF_PROBABILITY
    epoch_s: float = EPOCH_S
    stem_out_degree: int = STEM_OUT_DEGREE
    embargo_mean_s: float = EMBARGO_MEAN_S
    stempool_capacity: int = STEMPOOL_CAPACITY
    stempool_bytes: int = STEMPOOL_BYTES
    known_capacity: int = KNOWN_CAPACITY

    def __post_init__(self) -> None:
        if not 0.0 <= self.fluff_probability <= 1.0:
            raise LocalProtocolError("fluff probability must be in [0, 1]")
        if self.epoch_s <= 0.0 or self.embargo_mean_s <= 0.0:
            raise LocalProtocolError("epoch and embargo must be positive")
        if min(self.stem_out_degree, self.stempool_capacity, self.known_capacity) < 1:
            raise LocalProtocolError("stem out-degree and capacities must be positive")
        if self.stempool_bytes < 1:
            raise LocalProtocolError("stempool bytes must be positive")


@dataclass(frozen=True, slots=True)
class SendStem:
    """Send ``message`` to ``peer`` on the stem channel."""

    peer: NodeId
    message: StemMessage


@dataclass(frozen=True, slots=True)
class Fluff:
    """Publish ``message`` into the gossip mesh (it leaves the stem here)."""

    message: StemMessage


StemAction = SendStem | Fluff


@dataclass(slots=True)
class _Stemmed:
    message: StemMessage
    deadline: float
    source: NodeId | None
    """The peer it came from; None for our own."""


class StemPath:
    """One node's stem: routing per epoch, stempool and embargoes."""

    def __init__(self, *, rng: Rng, config: StemConfig | None = None) -> None:
        self._config = config or StemConfig()
        self._rng = rng
        self._graph: StemGraph[NodeId] = StemGraph(
            rng=rng,
            fluff_probability=self._config.fluff_probability,
            epoch_s=self._config.epoch_s,
            out_degree=self._config.stem_out_degree,
        )
        self._stempool: dict[bytes, _Stemmed] = {}
        self._stempool_bytes = 0
        self._from_peer: dict[NodeId, dict[bytes, None]] = {}
        """Each peer's transactions in the stempool, oldest first."""
        self._peer_bytes: dict[NodeId, int] = {}
        self._embargoes: list[tuple[float, bytes]] = []
        self._known: OrderedDict[bytes, None] = OrderedDict()
        self._actions: list[StemAction] = []
        self.counters = Counters()

    # -- inspection -----------------------------------------------------------------------

    @property
    def role(self) -> Role | None:
        """This epoch's role; None before the first stem decision."""
        return self._graph.role

    @property
    def stem_peers(self) -> tuple[NodeId, ...]:
        return self._graph.chosen_edges

    def in_stempool(self, message_id: bytes) -> bool:
        return message_id in self._stempool

    # -- commands -------------------------------------------------------------------------

    def add_peer(self, peer: NodeId, now: float, *, outbound: bool) -> None:
        """A new authenticated peer; only ``outbound`` ones (we dialled them) can be stem edges."""
        self._graph.add_peer(peer, outbound=outbound)

    def remove_peer(self, peer: NodeId, now: float) -> None:
        self._graph.remove_peer(peer)

    def submit(self, topic: str, data: bytes, now: float) -> bytes:
        """Our own transaction enters the stem on this epoch's own edge; returns its id.

        Raises :class:`NoStemPeer` without an outbound peer, and :class:`LocalProtocolError`
        for a topic not in :data:`STEM_TOPICS` or for invalid data.
        """
        if topic not in STEM_TOPICS:
            raise LocalProtocolError(f"topic {topic!r} does not travel the stem")
        message = StemMessage(topic, data)
        mid = message.message_id
        if mid in self._known or mid in self._stempool:
            self.counters.inc("tx_known")
            return mid
        self._graph.start_epoch_if_due(now)
        edge = self._graph.own_edge()
        if edge is None:
            raise NoStemPeer
        self.counters.inc("submitted")
        self._stem(message, edge, now, source=None)
        return mid

    # -- inputs ---------------------------------------------------------------------------

    def receive_stem(self, peer: NodeId, data: bytes, now: float) -> None:
        """A stem message from an authenticated peer. Raises only :class:`RemoteProtocolError`
        (malformed, or a topic that never travels the stem); the node bans the peer for it."""
        message = decode_stem(data)
        if message.topic not in STEM_TOPICS:
            raise RemoteProtocolError("bad_topic", "topic does not travel the stem")
        mid = message.message_id
        if mid in self._known:
            self.counters.inc("stem_known")
            return
        graph = self._graph
        graph.start_epoch_if_due(now)
        if mid in self._stempool:
            # A loop: origin or relay, the same answer (module docstring); its embargo is armed.
            self.counters.inc("stem_duplicate")
            return
        self.counters.inc("stem_received")
        if graph.role is Role.FLUFF:
            self.counters.inc("fluffed.role")
            self._fluff(message)
            return
        self._stem(message, graph.route_of(peer), now, source=peer)

    def seen_in_gossip(self, message_id: bytes) -> None:
        """The transaction arrived by gossip (or we published it): cancel its embargo."""
        if self._unpool(message_id) is not None:
            self.counters.inc("embargo_cancelled")
        self._remember(message_id)

    def handle_timer(self, now: float) -> None:
        embargoes = self._embargoes
        while embargoes and embargoes[0][0] <= now:
            _, mid = heapq.heappop(embargoes)
            entry = self._stempool.get(mid)
            if entry is not None and entry.deadline <= now:
                self._unpool(mid)
                self.counters.inc("fluffed.embargo")
                self._fluff(entry.message)

    def next_deadline(self) -> float | None:
        """The earliest live embargo (epochs roll over lazily, at the next stem decision)."""
        embargoes, stempool = self._embargoes, self._stempool
        while embargoes and embargoes[0][1] not in stempool:
            heapq.heappop(embargoes)  # cancelled: drop it rather than wake the node for it
        return embargoes[0][0] if embargoes else None

    def drain_actions(self) -> list[StemAction]:
        actions, self._actions = self._actions, []
        return actions

    # -- internals ------------------------------------------------------------------------

    def _stem(
        self, message: StemMessage, edge: NodeId | None, now: float, *, source: NodeId | None
    ) -> None:
        if edge is None:
            self.counters.inc("fluffed.no_stem_peer")
            self._fluff(message)
            return
        config = self._config
        size = len(message.data)
        if source is not None:
            self._make_room_for(source, size)
        while self._stempool and (
            len(self._stempool) >= config.stempool_capacity
            or self._stempool_bytes + size > config.stempool_bytes
        ):
            oldest = self._unpool(next(iter(self._stempool)))
            assert oldest is not None
            self.counters.inc("fluffed.stempool_full")
            self._fluff(oldest.message)
        deadline = now + self._rng.expovariate(1.0 / config.embargo_mean_s)
        self._stempool[message.message_id] = _Stemmed(message, deadline, source)
        self._stempool_bytes += size
        if source is not None:
            self._from_peer.setdefault(source, {})[message.message_id] = None
            self._peer_bytes[source] = self._peer_bytes.get(source, 0) + size
        heapq.heappush(self._embargoes, (deadline, message.message_id))
        if len(self._embargoes) > 2 * len(self._stempool) + 16:
            # Cancelled embargoes linger in the heap; rebuild it from the stempool.
            self._embargoes = [(e.deadline, mid) for mid, e in self._stempool.items()]
            heapq.heapify(self._embargoes)
        self._send(edge, message)

    def _make_room_for(self, peer: NodeId, size: int) -> None:
        """Fluffs ``peer``'s oldest transactions until one more of ``size`` bytes fits in its
        share (:data:`STEMPOOL_PEER_SHARE`)."""
        config = self._config
        held = self._from_peer.get(peer)
        while held and (
            len(held) >= max(1, config.stempool_capacity // STEMPOOL_PEER_SHARE)
            or self._peer_bytes[peer] + size > config.stempool_bytes // STEMPOOL_PEER_SHARE
        ):
            oldest = self._unpool(next(iter(held)))
            assert oldest is not None
            self.counters.inc("fluffed.peer_share")
            self._fluff(oldest.message)

    def _send(self, peer: NodeId, message: StemMessage) -> None:
        self.counters.inc("stemmed")
        self._actions.append(SendStem(peer, message))

    def _fluff(self, message: StemMessage) -> None:
        self._remember(message.message_id)
        self._actions.append(Fluff(message))

    def _unpool(self, message_id: bytes) -> _Stemmed | None:
        entry = self._stempool.pop(message_id, None)
        if entry is not None:
            size = len(entry.message.data)
            self._stempool_bytes -= size
            source = entry.source
            if source is not None:
                held = self._from_peer[source]
                del held[message_id]
                if held:
                    self._peer_bytes[source] -= size
                else:
                    del self._from_peer[source], self._peer_bytes[source]
        return entry

    def _remember(self, message_id: bytes) -> None:
        known = self._known
        known[message_id] = None  # a known id keeps its place: forgotten by first sighting
        if len(known) > self._config.known_capacity:
            known.popitem(last=False)  # O(1); a plain dict rescans its freed front slots
