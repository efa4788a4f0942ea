"""Bitcoin-style diffusion: the baseline every private path is measured against.

Theory of operation: a node that learns a transaction for the first time (from a peer or from
its own wallet) accepts it into its mempool and relays it to every neighbour except the one it
came from, each after an *independent* exponentially distributed delay (rate
``relay_rate_per_s``). This is the diffusion model of Fanti and Viswanath (2017) and of the
Dandelion++ paper: on a graph with no link latency it is first-passage percolation with unit
exponential edge weights, whose first-spy precision and recall the paper reports.

The delays are part of the protocol decision, so they travel in the action (like a mix's
"forward after delay") rather than as one timer per relay: a relay is one :class:`Broadcast`
carrying the message and every ``(peer, delay)`` pair, which a runtime turns into one delayed
send per peer (``loop.call_later``) and the simulator schedules in one pass (only the simulator
hosts this class: the daemon diffuses through its gossip mesh, :mod:`murmur.overlay.stem`).
One action per relay, not one per neighbour: at 10,000 nodes a run makes 150 M such sends,
and an action object and a dispatch apiece were a third of its cost. Diffusion therefore owns
no timer; :meth:`Diffusion.handle_timer` and :meth:`Diffusion.next_deadline` exist only to
keep the shape every state machine shares.

Memory is bounded: the seen-set remembers at most ``seen_capacity`` transaction ids (oldest
forgotten first) and a transaction body is at most :data:`MAX_TX_BYTES` long. Bytes from a peer
go through :func:`decode_message`, whose only failure is :class:`RemoteProtocolError`; the node
turns it into a drop and a counter (``dropped_<reason>``).

Wire format (one message per link frame)::

    u8 type = 0x01 (RELAY_TX) | u32 length | body
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, KeysView
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.crypto.hashing import sha3_256
from murmur.wire.codec import Reader, Writer

PeerT = TypeVar("PeerT", bound=Hashable)

MAX_TX_BYTES = 400_000
"""Largest transaction body accepted (Bitcoin's standardness limit is 400,000 weight units)."""
RELAY_DELAY_MEAN_S = 2.0
"""Mean per-neighbour relay delay (Bitcoin Core's outbound trickle interval)."""
SEEN_CAPACITY = 200_000
"""Transaction ids remembered to suppress re-relay; the oldest is forgotten first."""

MSG_RELAY_TX = 0x01
TX_HEADER_BYTES = 1 + 4
"""Type byte and body length in front of every transaction message."""


@dataclass(frozen=True, slots=True)
class Transaction:
    """An opaque transaction body; its id is SHA3-256 of the body, so it cannot be forged."""

    body: bytes = field(repr=False)
    tx_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not 0 < len(self.body) <= MAX_TX_BYTES:
            raise LocalProtocolError(f"transaction body must be 1..{MAX_TX_BYTES} bytes")
        object.__setattr__(self, "tx_id", sha3_256(self.body))


@dataclass(frozen=True, slots=True)
class RelayTx:
    """A transaction pushed to a neighbour in the diffusion (Dandelion++: fluff) phase."""

    tx: Transaction
    wire_size: int = field(init=False, repr=False, compare=False)
    """Encoded length (computed once: a relay sends the same message to every neighbour)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "wire_size", TX_HEADER_BYTES + len(self.tx.body))


@dataclass(frozen=True, slots=True)
class SendMessage(Generic[PeerT]):
    """Send ``message`` to ``peer`` once ``delay_s`` seconds have passed."""

    peer: PeerT
    message: object
    delay_s: float


@dataclass(frozen=True, slots=True)
class Broadcast(Generic[PeerT]):
    """Send ``message`` to every one of ``peers``, ``peers[i]`` once ``delays_s[i]`` seconds
    have passed (the delays are drawn in peer order, as one :class:`SendMessage` each would)."""

    message: object
    peers: list[PeerT]
    delays_s: list[float]


@dataclass(frozen=True, slots=True)
class TxAccepted:
    """The transaction entered this node's mempool (hand it to the application)."""

    tx: Transaction


DiffusionAction = SendMessage[PeerT] | Broadcast[PeerT] | TxAccepted


def encode_tx_message(kind: int, tx: Transaction) -> bytes:
    return Writer().push_u8(kind).push_vbytes(tx.body, width=4).getvalue()


def decode_tx_body(reader: Reader) -> Transaction:
    body = reader.pull_vbytes(MAX_TX_BYTES, width=4)
    reader.expect_end()
    if not body:
        raise RemoteProtocolError("bad_length", "empty transaction")
    return Transaction(body)


def encode_message(message: RelayTx) -> bytes:
    return encode_tx_message(MSG_RELAY_TX, message.tx)


def decode_message(data: bytes) -> RelayTx:
    reader = Reader(data)
    kind = reader.pull_u8()
    if kind != MSG_RELAY_TX:
        raise RemoteProtocolError("unknown_type", f"message type {kind}")
    return RelayTx(decode_tx_body(reader))


class Diffusion(Generic[PeerT]):
    """One node's diffusion state: neighbours, seen-set and pending actions."""

    __slots__ = ("_actions", "_peers", "_rate", "_rng", "_seen", "_seen_capacity", "counters")

    def __init__(
        self,
        *,
        rng: Rng,
        relay_delay_mean_s: float = RELAY_DELAY_MEAN_S,
        seen_capacity: int = SEEN_CAPACITY,
    ) -> None:
        if relay_delay_mean_s <= 0.0 or seen_capacity < 1:
            raise LocalProtocolError("relay delay and seen capacity must be positive")
        self._rng = rng
        self._rate = 1.0 / relay_delay_mean_s
        self._seen_capacity = seen_capacity
        self._peers: dict[PeerT, None] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._actions: list[DiffusionAction[PeerT]] = []
        self.counters = Counters()

    # -- commands -------------------------------------------------------------------------

    def add_peer(self, peer: PeerT, now: float) -> None:
        self._peers[peer] = None

    def remove_peer(self, peer: PeerT, now: float) -> None:
        self._peers.pop(peer, None)

    @property
    def peer_set(self) -> KeysView[PeerT]:
        return self._peers.keys()

    def has_seen(self, tx_id: bytes) -> bool:
        return tx_id in self._seen

    def submit(self, tx: Transaction, now: float) -> None:
        """Our own transaction: accept it and relay it to every neighbour."""
        self.broadcast(tx, now)

    def broadcast(self, tx: Transaction, now: float, *, exclude: PeerT | None = None) -> bool:
        """Accept ``tx`` and relay it to every neighbour but ``exclude``; False if known."""
        if tx.tx_id in self._seen:
            self.counters.inc("tx_known")
            return False
        self._remember(tx.tx_id)
        actions = self._actions
        actions.append(TxAccepted(tx))
        peers = [peer for peer in self._peers if peer != exclude]
        if peers:
            expovariate = self._rng.expovariate
            rate = self._rate
            delays = [expovariate(rate) for _ in peers]
            actions.append(Broadcast(RelayTx(tx), peers, delays))
        return True

    # -- inputs ---------------------------------------------------------------------------

    def receive_bytes(self, peer: PeerT, data: bytes, now: float) -> None:
        try:
            message = decode_message(data)
        except RemoteProtocolError as exc:
            self.counters.inc("dropped_" + exc.reason)
            return
        self.receive_message(peer, message, now)

    def receive_message(self, peer: PeerT, message: RelayTx, now: float) -> None:
        if peer not in self._peers:
            self.counters.inc("dropped_unknown_peer")
            return
        if message.tx.tx_id in self._seen:
            self.counters.inc("tx_duplicate")
            return
        self.counters.inc("tx_relayed")
        self.broadcast(message.tx, now, exclude=peer)

    def handle_timer(self, now: float) -> None:
        """Diffusion has no timer of its own (relay delays travel in the actions)."""

    def next_deadline(self) -> float | None:
        return None

    def drain_actions(self) -> list[DiffusionAction[PeerT]]:
        actions = self._actions
        self._actions = []
        return actions

    # -- internals ------------------------------------------------------------------------

    def _remember(self, tx_id: bytes) -> None:
        seen = self._seen
        seen[tx_id] = None
        if len(seen) > self._seen_capacity:
            seen.popitem(last=False)  # O(1); a plain dict rescans its freed front slots
