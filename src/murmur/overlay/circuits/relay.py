"""The relay side of circuits, which every node runs: handshakes, forwarding, extension, exit.

Theory of operation. A circuit at a relay is two legs, ``prev`` (the link it was created on) and
``next`` (the link it was extended on, if any), each named by its own per-link circuit id, plus
this hop's layer keys; the relay knows nothing else about the circuit. Inputs are cells from
peers (:meth:`CircuitRelay.receive_cell`), link news (``link_ready``, ``link_failed``,
``peer_disconnected``) and timers; outputs are drained with :meth:`CircuitRelay.drain_actions`.

- CREATE from a peer: its cells are reassembled (admission, i.e. rate and caps, is decided at
  the first; bounded in number per peer and per relay, and in time); once whole, answer the
  hybrid handshake with the onion key it names (current or previous), install the circuit,
  reply CREATED. A cell continuing no CREATE in progress is dropped and counted.
- RELAY from ``prev``: remove one layer. Not recognized: forward on ``next``. Recognized: an
  EXTEND cell (reassembled within the circuit; once whole, open ``next``: CREATE to the named
  node, dialling it first if there is no link, or waiting for the link another circuit's
  extension is already dialling, with a fresh id on that link; refused with TRUNCATED when it
  would loop back to the predecessor or to this node), or, at the last hop,
  DATA (reassembled, unpadded, then validated and published, or answered with a padded reply)
  or COVER (dropped silently). A message whose padding length or envelope is malformed is
  dropped and counted; the circuit stays (its cells were in order).
- RELAY from ``next``: add this hop's backward layer and pass it to ``prev``. CREATED from
  ``next``: tell the origin with EXTENDED.
- With ``forward_delay`` configured, every RELAY cell this hop forwards is held for a random
  delay first (seed §2.3); release times never decrease within a circuit and direction, so cells
  stay in order, and a cell this hop originates queues behind any it still holds. DESTROY is
  never delayed; held cells of a circuit torn down are dropped.
- DESTROY, a lost link, a timeout or any protocol error: tear the circuit down and send DESTROY
  on the other leg.

Hostile input never escapes: parsers raise :class:`RemoteProtocolError` only, which turns into a
dropped cell or a destroyed circuit plus a ``drop_<reason>`` counter. Every peer has a cell token
bucket (over its rate, cells wait in a bounded queue rather than being dropped, since a dropped
cell would desynchronise the circuit's keystreams) and a create bucket (CREATE, EXTEND, and
extra for a new link), so one flooding peer cannot starve the others' circuits. Both outlive
its link until they are full again (``DEPARTED_BUDGETS``), so reconnecting refills neither.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from murmur.base.bounded import remember_penalty
from murmur.base.errors import RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.crypto.kem import X25519_BYTES
from murmur.overlay.circuits.config import RelayConfig
from murmur.overlay.circuits.events import (
    CircuitAction,
    ConnectTo,
    OnionKeysRotated,
    PublishFromExit,
    SendCell,
)
from murmur.overlay.circuits.handshake import relay_answer
from murmur.overlay.circuits.ids import CircuitIds
from murmur.overlay.circuits.layers import RelayLayer
from murmur.overlay.circuits.onion_keys import OnionKeyPair, OnionKeyRing, UnknownOnionKey
from murmur.overlay.circuits.path_bias import RelayedOutcomes
from murmur.overlay.circuits.reassembly import Reassembly
from murmur.overlay.peers.token_bucket import TokenBucket
from murmur.overlay.shaping.delay_line import DelayLine
from murmur.wire.cells import (
    CELL_BYTES,
    CELL_HEADER,
    CREATE_BYTES,
    EXTEND_PADDED_BYTES,
    MAX_MESSAGE_BYTES,
    CellCommand,
    Created,
    DestroyReason,
    Envelope,
    Extend,
    Fragment,
    MessageKind,
    Onionskin,
    RelayCommand,
    TruncateReason,
    create_bodies,
    decode_cell,
    decode_create_body,
    decode_destroy,
    decode_extend_data,
    decode_relay_plaintext,
    encode_cell,
    encode_reason,
    pad_to_bucket,
    split_message,
)

Validate = Callable[[str, bytes], bool]
"""``validate(topic, payload)``: may this payload be published (a well-formed, valid tx...)?"""
Answer = Callable[[str, bytes], bytes | None]
"""``answer(topic, payload)``: the reply to a private request, or None for no reply."""

Leg = tuple[NodeId, int]
QUEUE_WAKE_MIN_S = 0.001
"""Floor on a rate-limited queue's wake-up delay (float refills can fall a hair short)."""
DEPARTED_BUDGETS = 1024
"""Rate budgets kept for peers whose link closed; without them a peer that reconnects gets a
fresh burst of ``create_burst`` CREATEs, each an X25519 and an ML-KEM decapsulation here, and of
``cell_burst`` cells, for the price of one handshake. Only budgets not yet full again are kept
(full ones are a new peer's), and a full table gives up the budgets that will be full soonest
(``murmur.base.bounded.remember_penalty``): dropping the least recently departed instead let a
peer refill its budgets by having 1,024 fresh identities connect and leave."""
TIMER_COMPACT_FACTOR = 4
TIMER_COMPACT_MIN = 1024
"""Timers of closed circuits are purged once the heap outgrows 4 × max(1024, open circuits)."""


@dataclass(frozen=True, slots=True)
class _Budgets:
    """One peer's rate budgets, kept together when its link closes (see
    ``DEPARTED_BUDGETS``), so a departed peer costs one entry, not one per budget."""

    cells: TokenBucket
    creates: TokenBucket
    """CREATE, EXTEND, and extra for an extension that opens a link."""

    def full_at(self) -> float:
        """When both budgets are full again (``-inf`` if they are): a new peer's from then."""
        return max(self.cells.full_at(), self.creates.full_at())


@dataclass(slots=True, eq=False)
class _Extension:
    target: NodeId
    onionskin: Onionskin
    deadline: float
    awaiting_link: bool = True


@dataclass(slots=True, eq=False)
class _Circuit:
    prev: Leg
    layer: RelayLayer
    expires_at: float
    next: Leg | None = None
    extension: _Extension | None = None
    extend_parts: Reassembly | None = None
    """The EXTEND being received, cell by cell."""
    reassembly: Reassembly | None = None
    alive: bool = True
    held_forward: int = 0
    held_backward: int = 0
    """Cells held back by ``forward_delay``, per direction, not yet sent."""
    release_forward: float = 0.0
    release_backward: float = 0.0
    """Latest release time given to a held cell, per direction (keeps the order)."""
    answered: bool = False
    """Our extension was answered and counted ok (path bias's baseline) until it collapses."""


@dataclass(frozen=True, slots=True)
class _Held:
    circuit: _Circuit
    forward: bool
    body: bytes


class _Timer(enum.Enum):
    LIFETIME = "lifetime"
    EXTEND = "extend"
    REASSEMBLY = "reassembly"


class CircuitRelay:
    def __init__(
        self,
        *,
        node_id: NodeId,
        onion_keys: OnionKeyRing,
        rng: Rng,
        validate: Validate,
        answer: Answer,
        config: RelayConfig | None = None,
        ids: CircuitIds | None = None,
        relayed: RelayedOutcomes | None = None,
    ) -> None:
        """``relayed``: where the outcome of each extension we perform is counted (the
        baseline the node's own path bias judges its guards against)."""
        self.config = config or RelayConfig()
        self._relayed = relayed
        self.node_id = node_id
        self.onion_keys = onion_keys
        self.counters = Counters()
        self._rng = rng
        self._validate = validate
        self._answer = answer
        self._ids = ids or CircuitIds(node_id)
        self._legs: dict[Leg, tuple[_Circuit, bool]] = {}
        self._per_peer: dict[NodeId, int] = {}
        self._circuits = 0
        self._links: set[NodeId] = set()
        self._awaiting_link: dict[NodeId, list[_Circuit]] = {}
        self._budgets: dict[NodeId, _Budgets] = {}
        self._departed_budgets: OrderedDict[NodeId, _Budgets] = OrderedDict()
        self._queues: dict[NodeId, deque[bytes]] = {}
        self._queue_wake: dict[NodeId, float] = {}
        self._timers: list[tuple[float, int, _Timer, _Circuit]] = []
        self._held: DelayLine[_Held] = DelayLine()
        self._seq = itertools.count()
        self._reassembly_by_peer: dict[NodeId, int] = {}
        """Partial messages' bytes by the peer whose circuits carry them (the previous hop)."""
        self._creates: dict[Leg, Reassembly] = {}
        """CREATEs partly received, oldest first (so also by deadline)."""
        self._creates_per_peer: dict[NodeId, int] = {}
        self._actions: list[CircuitAction] = []
        self._rotate_at = onion_keys.current_since + self.config.onion_key_lifetime_s

    # --- inputs ----------------------------------------------------------------------------

    def receive_cell(self, peer: NodeId, data: bytes, now: float) -> None:
        """One cell from ``peer``'s link, subject to that peer's cell rate."""
        queue = self._queues.get(peer)
        if queue is None and self._budgets_of(peer).cells.consume(now):
            self._process(peer, data, now)
            return
        if queue is None:
            queue = self._queues[peer] = deque()
        if len(queue) >= self.config.max_queued_cells_per_peer:
            self.counters.inc("drop_rate_limited")
            self._destroy_leg_of(peer, data, DestroyReason.RATE_LIMITED)
            return
        queue.append(data)
        self.counters.inc("cells_delayed")
        wait_s = self._budgets_of(peer).cells.wait_s(now)
        self._queue_wake[peer] = now + max(wait_s, QUEUE_WAKE_MIN_S)

    def link_ready(self, peer: NodeId, now: float) -> None:
        """A link to ``peer`` is up (dialled for us or not): pending extensions may proceed."""
        self._links.add(peer)
        for circuit in self._awaiting_link.pop(peer, []):
            ext = circuit.extension
            if circuit.alive and ext is not None and ext.awaiting_link and ext.target == peer:
                self._send_create(circuit, ext)

    def link_failed(self, peer: NodeId, now: float, *, ours: bool = False) -> None:
        """A dial to ``peer`` failed (``ours``: we did not make it, out of links or by
        policy): every extension waiting for it is truncated. (A circuit whose extension
        timed out while waiting may have moved on to another target: that one is left be.)"""
        for circuit in self._awaiting_link.pop(peer, []):
            ext = circuit.extension
            if circuit.alive and ext is not None and ext.awaiting_link and ext.target == peer:
                circuit.extension = None
                if not ours:
                    self._count_extension(circuit, ok=False)
                self._truncate(circuit, TruncateReason.CONNECT_FAILED)

    def peer_disconnected(self, peer: NodeId, now: float) -> None:
        """The link to ``peer`` is gone: destroy every circuit through it on the other leg."""
        self._links.discard(peer)
        self.link_failed(peer, now)
        for (leg_peer, _), (circuit, is_prev) in list(self._legs.items()):
            if leg_peer == peer and circuit.alive:
                if not is_prev:  # the relay we extended to went away
                    self._extension_lost(circuit)
                self._teardown(circuit, DestroyReason.HOP_GONE, skip_peer=peer)
        for leg in [leg for leg in self._creates if leg[0] == peer]:
            self._drop_create(leg)
        budgets = self._budgets.pop(peer, None)
        if budgets is not None:
            remember_penalty(
                self._departed_budgets,
                peer,
                budgets,
                DEPARTED_BUDGETS,
                lambda departed: departed.full_at() - now,
            )
        self._queues.pop(peer, None)
        self._queue_wake.pop(peer, None)

    def peers_in_use(self) -> set[NodeId]:
        """Peers this relay has a circuit leg, a CREATE in progress or a queued cell with, or
        an extension waiting to reach."""
        return (
            {peer for peer, _ in self._legs}
            | {peer for peer, _ in self._creates}
            | set(self._queues)
            | set(self._awaiting_link)
        )

    def handle_timer(self, now: float) -> None:
        for peer, wake in list(self._queue_wake.items()):
            if wake <= now:
                self._drain_queue(peer, now)
        for held in self._held.pop_due(now):
            self._release(held)
        self._expire_creates(now)
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, circuit = heapq.heappop(self._timers)
            if circuit.alive:
                self._fire(kind, circuit, now)
        self.onion_keys.expire(now)
        if now >= self._rotate_at:
            self._rotate_onion_keys(now)

    def next_deadline(self) -> float | None:
        soonest = self._rotate_at  # plain comparisons: the node asks after every event
        previous_until = self.onion_keys.previous_until
        if previous_until is not None and previous_until < soonest:
            soonest = previous_until
        if self._queue_wake:
            soonest = min(soonest, *self._queue_wake.values())
        if self._timers and self._timers[0][0] < soonest:
            soonest = self._timers[0][0]
        held = self._held.next_deadline()
        if held is not None and held < soonest:
            soonest = held
        oldest = next(iter(self._creates.values()), None)
        if oldest is not None and (create_due := oldest.next_deadline()) is not None:
            soonest = min(soonest, create_due)
        return soonest

    def drain_actions(self) -> list[CircuitAction]:
        actions, self._actions = self._actions, []
        return actions

    @property
    def _reassembly_bytes(self) -> int:
        """Partial messages' bytes at this relay, all peers together."""
        return sum(self._reassembly_by_peer.values())

    @property
    def circuit_count(self) -> int:
        return self._circuits

    # --- rate limits -----------------------------------------------------------------------

    def _budgets_of(self, peer: NodeId) -> _Budgets:
        """``peer``'s budgets: those it left with if it departed lately, else full ones."""
        budgets = self._budgets.get(peer)
        if budgets is None:
            budgets = self._departed_budgets.pop(peer, None)
            if budgets is None:
                cfg = self.config
                budgets = _Budgets(
                    TokenBucket(cfg.cell_rate_per_s, cfg.cell_burst),
                    TokenBucket(cfg.create_rate_per_s, cfg.create_burst),
                )
            self._budgets[peer] = budgets
        return budgets

    def _drain_queue(self, peer: NodeId, now: float) -> None:
        queue = self._queues[peer]
        bucket = self._budgets_of(peer).cells
        while queue and bucket.consume(now):
            self._process(peer, queue.popleft(), now)
        if queue:
            self._queue_wake[peer] = now + max(bucket.wait_s(now), QUEUE_WAKE_MIN_S)
        else:
            del self._queues[peer]
            del self._queue_wake[peer]

    def _destroy_leg_of(self, peer: NodeId, data: bytes, reason: DestroyReason) -> None:
        if len(data) != CELL_BYTES:
            return
        entry = self._legs.get((peer, CELL_HEADER.unpack_from(data)[0]))
        if entry is not None:
            if not entry[1]:  # the next relay flooded us
                self._extension_lost(entry[0])
            self._teardown(entry[0], reason)

    # --- cell dispatch ---------------------------------------------------------------------

    def _process(self, peer: NodeId, data: bytes, now: float) -> None:
        try:
            cell = decode_cell(data)
        except RemoteProtocolError as exc:
            self.counters.inc(f"drop_{exc.reason}")
            return
        entry = self._legs.get((peer, cell.circ_id))
        if cell.command is CellCommand.CREATE:
            if entry is None:
                self._on_create(peer, cell.circ_id, cell.body, now)
            else:
                self.counters.inc("drop_duplicate_create")
            return
        if entry is None:
            if cell.command is CellCommand.DESTROY and (peer, cell.circ_id) in self._creates:
                self.counters.inc("creates_abandoned")
                self._drop_create((peer, cell.circ_id))
            else:
                self.counters.inc("drop_unknown_circuit")
            return
        circuit, from_prev = entry
        try:
            if cell.command is CellCommand.DESTROY:
                decode_destroy(cell.body)
                self._on_destroy(circuit, from_prev)
            elif cell.command is CellCommand.RELAY:
                if from_prev:
                    self._relay_forward(circuit, cell.body, now)
                else:
                    self._relay_backward(circuit, cell.body, now)
            elif not from_prev and circuit.extension is not None:
                self._on_created(circuit, Created.decode_body(cell.body))
            else:
                raise RemoteProtocolError("unexpected_created", "no extension pending")
        except RemoteProtocolError as exc:
            self.counters.inc(f"drop_{exc.reason}")
            if circuit.alive:
                if not from_prev:  # the next relay broke the protocol
                    self._extension_lost(circuit)
                self._teardown(circuit, DestroyReason.PROTOCOL)

    def _on_create(self, peer: NodeId, circ_id: int, body: bytes, now: float) -> None:
        """One CREATE cell: the first is admitted or refused, the last runs the handshake."""
        if not self._ids.chosen_by_peer(peer, circ_id):
            self.counters.inc("drop_bad_circ_id")
            return
        leg = (peer, circ_id)
        partial = self._creates.get(leg)
        try:
            fragment = decode_create_body(body)
        except RemoteProtocolError as exc:
            self.counters.inc(f"drop_{exc.reason}")
            self._refuse_create(leg, DestroyReason.PROTOCOL)
            return
        if partial is None:
            if fragment.index != 0:
                self.counters.inc("drop_orphan_create")
                return
            reason = self._admit_create(peer, now)
            if reason is not None:
                self._refuse_create(leg, reason)
                return
            partial = Reassembly(
                max_pending=1, timeout_s=self.config.create_timeout_s, max_bytes=CREATE_BYTES
            )
            self._creates[leg] = partial
            self._creates_per_peer[peer] = self._creates_per_peer.get(peer, 0) + 1
        try:
            onionskin = partial.add(fragment, now)
        except RemoteProtocolError as exc:
            self.counters.inc(f"drop_{exc.reason}")
            self._refuse_create(leg, DestroyReason.PROTOCOL)
            return
        if onionskin is not None:
            self._drop_create(leg)
            self._answer_create(peer, circ_id, onionskin, now)

    def _admit_create(self, peer: NodeId, now: float) -> DestroyReason | None:
        """Why a new CREATE from ``peer`` is refused, if it is; partly received ones count
        against the circuit caps as if they were circuits."""
        if not self._budgets_of(peer).creates.consume(now):
            return DestroyReason.RATE_LIMITED
        pending = self._creates_per_peer.get(peer, 0)
        if (
            self._per_peer.get(peer, 0) + pending >= self.config.max_circuits_per_peer
            or len(self._creates) >= self.config.max_pending_creates
            or pending >= self.config.max_pending_creates_per_peer
        ):
            return DestroyReason.RESOURCE
        if self._circuits + len(self._creates) >= self.config.max_circuits:
            return None if self._evict_for(peer) else DestroyReason.RESOURCE
        return None

    def _evict_for(self, peer: NodeId) -> bool:
        """With the table full, makes room for a CREATE from ``peer`` by tearing down the
        oldest circuit of the predecessor holding the most, if that one holds more than
        ``peer`` would: idle circuits from a few peers (each within its own cap and create
        rate) could otherwise fill the table for the circuits' whole lifetime and refuse every
        other peer. One sweep of the circuits, only when full, at most the create rate."""
        if not self._per_peer:
            return False
        largest = max(self._per_peer, key=self._per_peer.__getitem__)
        if self._per_peer[largest] <= self._per_peer.get(peer, 0) + 1:
            return False
        for (leg_peer, _), (circuit, is_prev) in self._legs.items():
            if is_prev and leg_peer == largest:  # legs are in creation order: the oldest
                self.counters.inc("circuits_evicted")
                self._teardown(circuit, DestroyReason.RESOURCE)
                return True
        return False

    def _answer_create(self, peer: NodeId, circ_id: int, message: bytes, now: float) -> None:
        try:
            skin = Onionskin.decode_body(message)
            pair = self.onion_keys.find(skin.key_id, now)
            created, ks = relay_answer(
                skin, pair, node_id=self.node_id, y_seed=self._rng.random_bytes(X25519_BYTES)
            )
        except UnknownOnionKey:
            reason = DestroyReason.UNKNOWN_KEY
        except RemoteProtocolError as exc:
            self.counters.inc(f"drop_{exc.reason}")
            reason = DestroyReason.PROTOCOL
        else:
            circuit = _Circuit(
                (peer, circ_id), RelayLayer(ks.keys), now + self.config.max_circuit_lifetime_s
            )
            self._legs[circuit.prev] = (circuit, True)
            self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
            self._circuits += 1
            self._schedule(circuit.expires_at, _Timer.LIFETIME, circuit)
            self.counters.inc("circuits_created")
            self._send(peer, circ_id, CellCommand.CREATED, created.encode())
            return
        self._refuse_create((peer, circ_id), reason)

    def _refuse_create(self, leg: Leg, reason: DestroyReason) -> None:
        """DESTROY for a CREATE, forgetting its cells received so far."""
        if leg in self._creates:
            self._drop_create(leg)
        self.counters.inc(f"create_refused_{reason.name.lower()}")
        self._send(*leg, CellCommand.DESTROY, encode_reason(reason))

    def _drop_create(self, leg: Leg) -> None:
        del self._creates[leg]
        remaining = self._creates_per_peer[leg[0]] - 1
        if remaining:
            self._creates_per_peer[leg[0]] = remaining
        else:
            del self._creates_per_peer[leg[0]]

    def _expire_creates(self, now: float) -> None:
        """Drops CREATEs not completed in time; they are kept in arrival order, so the
        expired ones are at the front."""
        while self._creates:
            leg, partial = next(iter(self._creates.items()))
            if partial.expire(now) == 0:
                return
            self.counters.inc("create_reassembly_expired")
            self._refuse_create(leg, DestroyReason.TIMEOUT)

    def _relay_forward(self, circuit: _Circuit, body: bytes, now: float) -> None:
        plain, mine = circuit.layer.unwrap_forward(body)
        if not mine:
            if circuit.next is None or circuit.extension is not None:
                raise RemoteProtocolError("unrecognized", "cell for no hop")
            self._pass_on(circuit, True, plain, now)
            return
        self.counters.inc("cells_recognized")
        message = decode_relay_plaintext(plain)
        if message.command is RelayCommand.EXTEND:
            self._on_extend_cell(circuit, message.data, now)
        elif message.command is RelayCommand.COVER:
            mid = circuit.next is not None or circuit.extension is not None
            self.counters.inc("middle_cover_dropped" if mid else "exit_cover_dropped")
        elif (
            circuit.next is not None
            or circuit.extension is not None
            or circuit.extend_parts is not None
        ):
            raise RemoteProtocolError("bad_relay_command", f"{message.command.name} mid-circuit")
        elif message.command is RelayCommand.DATA:
            self._on_data(circuit, Fragment.decode(message.data), now)
        else:
            raise RemoteProtocolError("bad_relay_command", message.command.name)

    def _relay_backward(self, circuit: _Circuit, body: bytes, now: float) -> None:
        if circuit.extension is not None:
            raise RemoteProtocolError("unexpected_relay", "extension not finished")
        self._pass_on(circuit, False, circuit.layer.wrap_backward(body), now)

    # --- forwarding, with the optional per-cell delay --------------------------------------

    def _pass_on(self, circuit: _Circuit, forward: bool, body: bytes, now: float) -> None:
        """Forwards a RELAY cell now, or holds it for ``forward_delay`` (keeping the order)."""
        self.counters.inc("cells_relayed")
        delay = self.config.forward_delay
        held = circuit.held_forward if forward else circuit.held_backward
        if delay is None and not held:
            leg = circuit.next if forward else circuit.prev
            assert leg is not None
            self._send(*leg, CellCommand.RELAY, body)
            return
        self._hold(circuit, forward, body, now + (0.0 if delay is None else delay.draw(self._rng)))

    def _hold(self, circuit: _Circuit, forward: bool, body: bytes, release: float) -> None:
        if len(self._held) >= self.config.max_delayed_cells:
            self.counters.inc("drop_delay_queue_full")
            self._teardown(circuit, DestroyReason.RESOURCE)
            return
        if forward:
            release = max(release, circuit.release_forward)
            circuit.release_forward = release
            circuit.held_forward += 1
        else:
            release = max(release, circuit.release_backward)
            circuit.release_backward = release
            circuit.held_backward += 1
        self.counters.inc("cells_held")
        self._held.push(_Held(circuit, forward, body), release)

    def _release(self, held: _Held) -> None:
        circuit = held.circuit
        if held.forward:
            circuit.held_forward -= 1
        else:
            circuit.held_backward -= 1
        leg = circuit.next if held.forward else circuit.prev
        if not circuit.alive or leg is None:
            self.counters.inc("held_cells_dropped")
            return
        self._send(*leg, CellCommand.RELAY, held.body)

    def _on_destroy(self, circuit: _Circuit, from_prev: bool) -> None:
        self.counters.inc("circuits_destroyed_by_peer")
        if from_prev or circuit.extension is None:
            if not from_prev:  # destroyed beyond us
                self._extension_lost(circuit)
            self._teardown(
                circuit, DestroyReason.HOP_GONE, skip_peer=self._peer_of(circuit, from_prev)
            )
            return
        self._count_extension(circuit, ok=False)
        self._drop_next(circuit)
        circuit.extension = None
        self._truncate(circuit, TruncateReason.REFUSED)

    # --- extension -------------------------------------------------------------------------

    def _on_extend_cell(self, circuit: _Circuit, data: bytes, now: float) -> None:
        if circuit.next is not None or circuit.extension is not None:
            raise RemoteProtocolError("extend_twice", "circuit already extended")
        fragment = decode_extend_data(data)
        if circuit.extend_parts is None:
            circuit.extend_parts = Reassembly(
                max_pending=1, timeout_s=self.config.extend_timeout_s, max_bytes=EXTEND_PADDED_BYTES
            )
            self._schedule(now + self.config.extend_timeout_s, _Timer.EXTEND, circuit)
        message = self._reassemble(circuit, circuit.extend_parts, fragment, now)
        if message is not None:
            circuit.extend_parts = None
            self._on_extend(circuit, Extend.decode(message), now)

    def _on_extend(self, circuit: _Circuit, extend: Extend, now: float) -> None:
        self.counters.inc("extend_requests")  # every whole EXTEND, whatever becomes of it
        target = extend.next_node
        if target == self.node_id or target == circuit.prev[0]:
            self.counters.inc("extend_loop_refused")
            self._truncate(circuit, TruncateReason.LOOP)
            return
        linked = target in self._links
        cost = 1.0 if linked else 1.0 + self.config.connect_cost
        if not self._budgets_of(circuit.prev[0]).creates.consume(now, cost):
            self.counters.inc("extend_rate_limited")
            self._truncate(circuit, TruncateReason.RATE_LIMITED)
            return
        ext = _Extension(target, extend.onionskin, now + self.config.extend_timeout_s)
        circuit.extension = ext
        self._schedule(ext.deadline, _Timer.EXTEND, circuit)
        if linked:
            self._send_create(circuit, ext)
            return
        waiting = self._awaiting_link.setdefault(target, [])
        if waiting:  # another circuit's extension is dialling it: wait for that link
            self.counters.inc("extend_joined_dial")
        else:
            self._actions.append(ConnectTo(target, extend.address))
            self.counters.inc("links_opened_for_extend")
        waiting.append(circuit)

    def _stop_waiting(self, circuit: _Circuit) -> None:
        """Takes a circuit whose extension ends before its link is up off that dial's list:
        the node may never report on the dial (it joins one to a peer it dials for itself),
        and a list kept until then would grow with every extension sent there meanwhile."""
        ext = circuit.extension
        if ext is None or not ext.awaiting_link:
            return
        waiting = self._awaiting_link.get(ext.target)
        if waiting is not None and circuit in waiting:
            waiting.remove(circuit)
            if not waiting:
                del self._awaiting_link[ext.target]

    def _send_create(self, circuit: _Circuit, ext: _Extension) -> None:
        ext.awaiting_link = False
        circuit.next = (ext.target, self._ids.allocate(ext.target, self._rng))
        self._legs[circuit.next] = (circuit, False)
        for body in create_bodies(ext.onionskin):
            self._send(*circuit.next, CellCommand.CREATE, body)

    def _on_created(self, circuit: _Circuit, created: Created) -> None:
        circuit.extension = None
        self._count_extension(circuit, ok=True)
        self.counters.inc("circuits_extended")
        self._send_back(circuit, RelayCommand.EXTENDED, created.encode())

    def _count_extension(self, circuit: _Circuit, *, ok: bool) -> None:
        """Counts how an extension of ours fared (see :class:`RelayedOutcomes`)."""
        if self._relayed is not None:
            self._relayed.add(circuit.prev[0], ok=ok)
        circuit.answered = ok

    def _extension_lost(self, circuit: _Circuit) -> None:
        """The next relay destroyed the circuit or went away: an answered extension
        collapsed; a pending one failed."""
        if circuit.answered:
            if self._relayed is not None:
                self._relayed.revoke(circuit.prev[0])
            circuit.answered = False
        elif circuit.extension is not None:
            self._count_extension(circuit, ok=False)

    def _truncate(self, circuit: _Circuit, reason: TruncateReason) -> None:
        self.counters.inc(f"truncated_{reason.name.lower()}")
        self._send_back(circuit, RelayCommand.TRUNCATED, encode_reason(reason))

    # --- exit ------------------------------------------------------------------------------

    def _reassemble(
        self, circuit: _Circuit, reassembly: Reassembly, fragment: Fragment, now: float
    ) -> bytes | None:
        """Adds a fragment under the relay's reassembly memory budget and the previous hop's
        share of it. A fragment that completes its message (a one-cell message above all)
        passes whatever the budget: it frees memory rather than holding it. Without the share
        one peer could fill the budget with unfinished messages and have every other
        circuit's EXTEND and exit message refused."""
        if fragment.index != fragment.count - 1:
            size, peer = len(fragment.chunk), circuit.prev[0]
            if (
                self._reassembly_by_peer.get(peer, 0) + size
                > self.config.max_reassembly_bytes_per_peer
            ):
                raise RemoteProtocolError("reassembly_peer_budget", "peer's reassembly share full")
            if self._reassembly_bytes + size > self.config.max_reassembly_bytes:
                raise RemoteProtocolError("reassembly_budget", "relay reassembly memory full")
        before = reassembly.buffered_bytes
        try:
            return reassembly.add(fragment, now)
        finally:
            self._charge_reassembly(circuit, reassembly.buffered_bytes - before)

    def _charge_reassembly(self, circuit: _Circuit, delta: int) -> None:
        if not delta:
            return
        peer = circuit.prev[0]
        held = self._reassembly_by_peer.get(peer, 0) + delta
        if held:
            self._reassembly_by_peer[peer] = held
        else:
            del self._reassembly_by_peer[peer]

    def _on_data(self, circuit: _Circuit, fragment: Fragment, now: float) -> None:
        if circuit.reassembly is None:
            circuit.reassembly = Reassembly(
                max_pending=self.config.max_reassemblies_per_circuit,
                timeout_s=self.config.exit_reassembly_timeout_s,
            )
        reassembly = circuit.reassembly
        pending = len(reassembly)
        message = self._reassemble(circuit, reassembly, fragment, now)
        if len(reassembly) > pending:
            self._schedule(now + reassembly.timeout_s, _Timer.REASSEMBLY, circuit)
        if message is None:
            return
        try:
            envelope = Envelope.decode(message)
        except RemoteProtocolError as exc:
            self.counters.inc(f"drop_{exc.reason}")
            return
        if envelope.kind is MessageKind.PUBLISH:
            if self._validate(envelope.topic, envelope.payload):
                self.counters.inc("exit_publications")
                self._actions.append(PublishFromExit(envelope.topic, envelope.payload))
            else:
                self.counters.inc("exit_invalid_dropped")
            return
        self.counters.inc("exit_requests")
        reply = self._answer(envelope.topic, envelope.payload)
        if not reply or len(reply) > MAX_MESSAGE_BYTES:
            self.counters.inc("exit_requests_unanswered")
            return
        padded = pad_to_bucket(reply, self.config.reply_buckets, self._rng)
        for part in split_message(fragment.message_id, padded):
            self._send_back(circuit, RelayCommand.REPLY, part.encode())
        self.counters.inc("exit_replies")

    # --- timers and teardown ---------------------------------------------------------------

    def _schedule(self, when: float, kind: _Timer, circuit: _Circuit) -> None:
        if len(self._timers) > TIMER_COMPACT_FACTOR * max(TIMER_COMPACT_MIN, self._circuits):
            self._timers = [t for t in self._timers if t[3].alive]
            heapq.heapify(self._timers)
        heapq.heappush(self._timers, (when, next(self._seq), kind, circuit))

    def _fire(self, kind: _Timer, circuit: _Circuit, now: float) -> None:
        if kind is _Timer.LIFETIME:
            self.counters.inc("circuits_expired")
            self._teardown(circuit, DestroyReason.TIMEOUT)
        elif kind is _Timer.EXTEND:
            ext = circuit.extension
            parts = circuit.extend_parts
            parts_due = None if parts is None else parts.next_deadline()
            if parts_due is not None and parts_due <= now:
                self.counters.inc("extend_reassembly_expired")
                self._teardown(circuit, DestroyReason.TIMEOUT)
            elif ext is not None and ext.deadline <= now:
                self._stop_waiting(circuit)
                self._count_extension(circuit, ok=False)
                self._drop_next(circuit, DestroyReason.TIMEOUT)
                circuit.extension = None
                self._truncate(circuit, TruncateReason.TIMEOUT)
        elif circuit.reassembly is not None:
            before = circuit.reassembly.buffered_bytes
            expired = circuit.reassembly.expire(now)
            self._charge_reassembly(circuit, circuit.reassembly.buffered_bytes - before)
            if expired:
                self.counters.inc("exit_reassembly_expired", expired)

    def _rotate_onion_keys(self, now: float) -> None:
        self.onion_keys.rotate(
            OnionKeyPair.generate(self._rng), now=now, grace_s=self.config.onion_key_grace_s
        )
        self._rotate_at = now + self.config.onion_key_lifetime_s
        self.counters.inc("onion_keys_rotated")
        self._actions.append(OnionKeysRotated(self.onion_keys.current.public))

    def _peer_of(self, circuit: _Circuit, prev: bool) -> NodeId | None:
        leg = circuit.prev if prev else circuit.next
        return None if leg is None else leg[0]

    def _drop_next(self, circuit: _Circuit, reason: DestroyReason | None = None) -> None:
        """Forgets the ``next`` leg, telling that peer with DESTROY when ``reason`` is given."""
        if circuit.next is None:
            return
        if reason is not None:
            self._send(*circuit.next, CellCommand.DESTROY, encode_reason(reason))
        del self._legs[circuit.next]
        self._ids.release(*circuit.next)
        circuit.next = None

    def _teardown(
        self, circuit: _Circuit, reason: DestroyReason, skip_peer: NodeId | None = None
    ) -> None:
        """Removes the circuit, sending DESTROY on each leg whose peer is not ``skip_peer``."""
        self._stop_waiting(circuit)
        circuit.alive = False
        prev_peer, prev_id = circuit.prev
        if prev_peer != skip_peer:
            self._send(prev_peer, prev_id, CellCommand.DESTROY, encode_reason(reason))
        del self._legs[circuit.prev]
        next_reason = None if circuit.next is not None and circuit.next[0] == skip_peer else reason
        self._drop_next(circuit, next_reason)
        for reassembly in (circuit.reassembly, circuit.extend_parts):
            if reassembly is not None:
                self._charge_reassembly(circuit, -reassembly.buffered_bytes)
                reassembly.clear()
        remaining = self._per_peer[prev_peer] - 1
        if remaining:
            self._per_peer[prev_peer] = remaining
        else:
            del self._per_peer[prev_peer]
        self._circuits -= 1
        self.counters.inc("circuits_closed")

    # --- output ----------------------------------------------------------------------------

    def _send(self, peer: NodeId, circ_id: int, command: CellCommand, body: bytes) -> None:
        self._actions.append(SendCell(peer, encode_cell(circ_id, command, body)))

    def _send_back(self, circuit: _Circuit, command: RelayCommand, data: bytes) -> None:
        body = circuit.layer.originate_backward(command, data)
        if circuit.held_backward:
            self._hold(circuit, False, body, circuit.release_backward)
        else:
            self._send(*circuit.prev, CellCommand.RELAY, body)
