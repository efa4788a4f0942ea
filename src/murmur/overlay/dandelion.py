"""Dandelion++ (Fanti et al., SIGMETRICS 2018): an anonymity stem, then diffusion.

Theory of operation. Time is cut into epochs of ``epoch_s`` seconds, independently per node. At
the start of each epoch a node

* draws its role: *fluff* with probability ``fluff_probability`` (the paper's q), else *stem*;
* picks its stem out-edges: ``stem_out_degree`` (2) of its outbound peers, chosen at random, so
  that the stem graph is the paper's approximately 4-regular graph; or, when the caller gives
  ``stem_peers`` (an exact 4-regular stem graph built elsewhere), exactly those;
* forgets its forwarding table. Forwarding is *one-to-one* pseudorandom routing (the paper's
  preferred variant): the first inbound stem edges seen in the epoch are assigned the outbound
  stem edges in a random order, one each, and a new round of the shuffle starts when every
  outbound edge has been handed out. All of a given inbound edge's stem transactions take the
  same outbound edge for the whole epoch; the node's own transactions take one fixed edge too.
  This stem graph is :class:`murmur.overlay.stem_graph.StemGraph`, which the node's own stem
  (:mod:`murmur.overlay.stem`) routes with too.

A transaction received in the stem phase (:class:`StemTx`) is relayed on the stem by a stem node
and diffused by a fluff node. A node's own transactions always enter the stem. Every node that
relays a stem transaction (the origin included) keeps it in its *stempool*, out of the mempool,
and arms an *embargo timer* (exponential, mean ``embargo_mean_s``). If the transaction has not
come back in the diffusion phase (:class:`RelayTx`) when the timer fires, the node diffuses it
itself: the fail-safe against a stem node that drops what it should relay. Diffusion is the
plain :class:`Diffusion` of this package.

Stem relays leave at once (``delay_s = 0``); a stem transaction already in the stempool or the
mempool is dropped (``stem_duplicate`` / ``stem_known``), which ends a stem that loops back; the
embargo of an earlier stem node then diffuses it. The stempool holds at most
``stempool_capacity`` transactions (the oldest is diffused early when full).

Wire format: ``u8 type = 0x02 (STEM_TX) | u32 length | body``; the fluff phase uses diffusion's
``RELAY_TX`` (0x01).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic

from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.overlay.diffusion import (
    MSG_RELAY_TX,
    RELAY_DELAY_MEAN_S,
    TX_HEADER_BYTES,
    Diffusion,
    DiffusionAction,
    PeerT,
    RelayTx,
    SendMessage,
    Transaction,
    decode_tx_body,
    encode_tx_message,
)
from murmur.overlay.stem_graph import (
    EMBARGO_MEAN_S,
    EPOCH_S,
    FLUFF_PROBABILITY,
    STEM_OUT_DEGREE,
    Role,
    StemGraph,
)
from murmur.wire.codec import Reader

STEMPOOL_CAPACITY = 10_000

MSG_STEM_TX = 0x02


@dataclass(frozen=True, slots=True)
class StemTx:
    """A transaction relayed in the stem (anonymity) phase."""

    tx: Transaction

    @property
    def wire_size(self) -> int:
        return TX_HEADER_BYTES + len(self.tx.body)


@dataclass(frozen=True, slots=True)
class DandelionConfig:
    fluff_probability: float = FLUFF_PROBABILITY
    epoch_s: float = EPOCH_S
    stem_out_degree: int = STEM_OUT_DEGREE
    embargo_mean_s: float = EMBARGO_MEAN_S
    relay_delay_mean_s: float = RELAY_DELAY_MEAN_S
    stempool_capacity: int = STEMPOOL_CAPACITY

    def __post_init__(self) -> None:
        if not 0.0 <= self.fluff_probability <= 1.0:
            raise LocalProtocolError("fluff probability must be in [0, 1]")
        if self.epoch_s <= 0.0 or self.embargo_mean_s <= 0.0 or self.relay_delay_mean_s <= 0.0:
            raise LocalProtocolError("epoch, embargo and relay delay must be positive")
        if self.stem_out_degree < 1 or self.stempool_capacity < 1:
            raise LocalProtocolError("stem out-degree and stempool capacity must be positive")


def encode_message(message: StemTx | RelayTx) -> bytes:
    kind = MSG_STEM_TX if isinstance(message, StemTx) else MSG_RELAY_TX
    return encode_tx_message(kind, message.tx)


def decode_message(data: bytes) -> StemTx | RelayTx:
    reader = Reader(data)
    kind = reader.pull_u8()
    if kind == MSG_STEM_TX:
        return StemTx(decode_tx_body(reader))
    if kind == MSG_RELAY_TX:
        return RelayTx(decode_tx_body(reader))
    raise RemoteProtocolError("unknown_type", f"message type {kind}")


class Dandelion(Generic[PeerT]):
    """One node's Dandelion++ state (stem routing, stempool, embargoes) over a diffusion."""

    def __init__(
        self,
        *,
        rng: Rng,
        now: float,
        config: DandelionConfig | None = None,
        stem_peers: Sequence[PeerT] | None = None,
    ) -> None:
        self._config = config or DandelionConfig()
        self._rng = rng
        self._diffusion: Diffusion[PeerT] = Diffusion(
            rng=rng, relay_delay_mean_s=self._config.relay_delay_mean_s
        )
        self._graph: StemGraph[PeerT] = StemGraph(
            rng=rng,
            fluff_probability=self._config.fluff_probability,
            epoch_s=self._config.epoch_s,
            out_degree=self._config.stem_out_degree,
            fixed=stem_peers,
        )
        self._stempool: dict[bytes, tuple[Transaction, float]] = {}
        self._embargoes: list[tuple[float, bytes]] = []
        self._actions: list[DiffusionAction[PeerT]] = []
        self.counters = Counters()
        self._graph.new_epoch(now)

    # -- inspection -----------------------------------------------------------------------

    @property
    def role(self) -> Role:
        role = self._graph.role
        assert role is not None  # the first epoch starts in __init__
        return role

    @property
    def stem_peers(self) -> tuple[PeerT, ...]:
        return tuple(self._graph.edges())

    @property
    def diffusion_counters(self) -> Counters:
        return self._diffusion.counters

    def route_for(self, inbound: PeerT) -> PeerT | None:
        """The outbound stem edge ``inbound``'s stem transactions take this epoch."""
        return self._graph.route_of(inbound)

    def own_edge(self) -> PeerT | None:
        """The outbound stem edge this node's own transactions take this epoch."""
        return self._graph.own_edge()

    def in_stempool(self, tx_id: bytes) -> bool:
        return tx_id in self._stempool

    def has_seen(self, tx_id: bytes) -> bool:
        return self._diffusion.has_seen(tx_id)

    # -- commands -------------------------------------------------------------------------

    def add_peer(self, peer: PeerT, now: float, *, outbound: bool) -> None:
        self._diffusion.add_peer(peer, now)
        self._graph.add_peer(peer, outbound=outbound)

    def remove_peer(self, peer: PeerT, now: float) -> None:
        self._diffusion.remove_peer(peer, now)
        self._graph.remove_peer(peer)

    def submit(self, tx: Transaction, now: float) -> None:
        """Our own transaction: always enters the stem, on this epoch's own edge."""
        if self._diffusion.has_seen(tx.tx_id) or tx.tx_id in self._stempool:
            self.counters.inc("tx_known")
            return
        self._stem(tx, self.own_edge(), now)

    # -- inputs ---------------------------------------------------------------------------

    def receive_bytes(self, peer: PeerT, data: bytes, now: float) -> None:
        try:
            message = decode_message(data)
        except RemoteProtocolError as exc:
            self.counters.inc("dropped_" + exc.reason)
            return
        self.receive_message(peer, message, now)

    def receive_message(self, peer: PeerT, message: StemTx | RelayTx, now: float) -> None:
        if peer not in self._diffusion.peer_set:
            self.counters.inc("dropped_unknown_peer")
            return
        tx = message.tx
        if isinstance(message, RelayTx):
            if self._stempool.pop(tx.tx_id, None) is not None:
                self.counters.inc("embargo_cancelled")
            self._diffusion.receive_message(peer, message, now)
            return
        if self._diffusion.has_seen(tx.tx_id):
            self.counters.inc("stem_known")
            return
        if tx.tx_id in self._stempool:
            self.counters.inc("stem_duplicate")
            return
        self.counters.inc("tx_relayed")
        if self._graph.role is Role.FLUFF:
            self.counters.inc("fluffed")
            self._diffusion.broadcast(tx, now)
            return
        self._stem(tx, self._graph.route_of(peer), now)

    def handle_timer(self, now: float) -> None:
        if now >= self._graph.epoch_end:
            self._graph.new_epoch(now)
        embargoes = self._embargoes
        while embargoes and embargoes[0][0] <= now:
            _, tx_id = heapq.heappop(embargoes)
            entry = self._stempool.get(tx_id)
            if entry is not None and entry[1] <= now:
                del self._stempool[tx_id]
                self.counters.inc("embargo_fired")
                self._diffusion.broadcast(entry[0], now)

    def next_deadline(self) -> float | None:
        epoch_end = self._graph.epoch_end
        if self._embargoes:
            return min(epoch_end, self._embargoes[0][0])
        return epoch_end

    def drain_actions(self) -> list[DiffusionAction[PeerT]]:
        actions = self._actions
        actions.extend(self._diffusion.drain_actions())
        self._actions = []
        return actions

    # -- internals ------------------------------------------------------------------------

    def _stem(self, tx: Transaction, edge: PeerT | None, now: float) -> None:
        if edge is None:
            self.counters.inc("no_stem_peer")
            self._diffusion.broadcast(tx, now)
            return
        stempool = self._stempool
        if len(stempool) >= self._config.stempool_capacity:
            oldest = next(iter(stempool))
            self.counters.inc("stempool_full")
            self._diffusion.broadcast(stempool.pop(oldest)[0], now)
        deadline = now + self._rng.expovariate(1.0 / self._config.embargo_mean_s)
        stempool[tx.tx_id] = (tx, deadline)
        embargoes = self._embargoes
        heapq.heappush(embargoes, (deadline, tx.tx_id))
        if len(embargoes) > 2 * len(stempool) + 16:
            # Cancelled embargoes linger in the heap; rebuild it from the stempool.
            self._embargoes = [(d, t) for t, (_, d) in stempool.items()]
            heapq.heapify(self._embargoes)
        self._actions.append(SendMessage(edge, StemTx(tx), 0.0))
