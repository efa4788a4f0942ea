"""The gossip router: a gossipsub-v1.1-style mesh, sans-I/O (the fast path).

Theory of operation. For each topic this node subscribes to, it keeps a *mesh* of about ``d``
peers that also subscribe; a message received or published is delivered locally and forwarded in
full to every mesh peer except the one it came from. Messages carry no author: their id is a hash
of topic and data (:func:`murmur.wire.gossip.message_id`), and a seen-cache of ids stops a message
from being delivered or forwarded twice. Publishing on a topic this node does not subscribe to
goes to a *fanout* set of ``d`` topic peers, kept ``fanout_ttl_s`` after the last publish.

Every heartbeat the router: decays peer scores; repairs each mesh (prunes peers with a negative
score, grafts peers up to ``d`` when below ``d_lo``, prunes at random down to ``d`` once it has
reached ``d_hi``, the size at which incoming GRAFTs are refused, and keeps or grafts ``d_out``
peers this node dialled, so peers that dial in cannot hold every slot); refreshes fanout sets; and
sends IHAVE (the ids of the last ``history_gossip`` heartbeats' messages) to ``d_lazy`` topic
peers outside the mesh, which answer IWANT for ids they missed, so a message a mesh link lost is
still recovered (one peer is sent a cached message at most ``gossip_retransmission`` times).
GRAFT and PRUNE join and leave meshes; a PRUNE starts a backoff during which neither side grafts
again; a backoff outlives a disconnect (cut to ``prune_backoff_s``), so reconnecting does
not clear it.

Topics in ``GossipConfig.lazy_topics`` (large records that may arrive seconds late: peer
announcements) are forwarded lazily: a relay queues the new message's id for each mesh peer and
sends those ids as one IHAVE per peer and topic at its next heartbeat; the message itself goes
only to peers that answer IWANT. An IWANT is a promise: for ``iwant_followup_s`` other offers of
the same id ask for nothing (their senders are remembered, up to ``d``, a peer this node dialled
ahead of the rest), and if the message has not come by then, the next heartbeat (or the next
offer of the id, if sooner) asks the next of those peers. So a node takes about one copy of a
lazy message, where eager push brings one from most mesh peers, and identities dialling in
cannot withhold one by offering it first. An IWANT left unanswered is charged to the node id
that offered it, connected, reconnected or gone (:class:`PeerScores` keeps the count), and
the per-heartbeat IHAVE and IWANT allowances are also kept by node id until the heartbeat, so
a reconnect renews neither.

Peer input never raises: a malformed RPC is counted (``gossip.malformed.<reason>``) and the peer
is reported with :class:`PenalizePeer` and ignored from then on. A message a topic validator
rejects is neither delivered nor forwarded and costs its sender score; below the graylist
threshold the sender is reported and ignored too. Every structure is capped by
:class:`GossipConfig`. Publishing consults :func:`murmur.overlay.routing.require_fast_path`, so a
private message type is refused instead of gossiped in the clear.

Outputs are pulled with :meth:`GossipRouter.drain_actions`: records queued for one peer since the
last drain leave as one RPC (several only if a cap forces a split).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Container, Iterable, Sequence

from murmur.base.bounded import remember
from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.overlay.gossip.actions import Deliver, GossipAction, PenalizePeer, SendRpc
from murmur.overlay.gossip.config import GossipConfig
from murmur.overlay.gossip.mcache import MessageCache
from murmur.overlay.gossip.score import PeerScores
from murmur.overlay.gossip.seen_cache import SeenCache
from murmur.overlay.gossip.shared import SharedMessages
from murmur.overlay.routing import require_fast_path
from murmur.wire.gossip import (
    Graft,
    IHave,
    IWant,
    Message,
    Prune,
    Rpc,
    RpcBatch,
    Section,
    Subscription,
    decode_rpc,
    encode_graft,
    encode_ihave,
    encode_iwant,
    encode_message,
    encode_prune,
    encode_subscription,
    is_valid_topic,
    message_id,
)


class Validation(enum.Enum):
    """A validator's verdict (gossipsub's three): what the node does with a message."""

    ACCEPT = "accept"
    """Deliver and forward it."""
    IGNORE = "ignore"
    """Drop it without blaming the sender: well-formed but of no use, such as an announcement
    older than the one held, which an honest peer may still carry (or send because we asked)."""
    REJECT = "reject"
    """Drop it and penalise the sender: malformed, forged, or invalid in itself."""


Validator = Callable[[bytes, float], Validation | bool]
"""Called with a message's data and the current time; returns a :class:`Validation`
(``True``/``False`` mean accept/reject), or raises ``RemoteProtocolError`` to reject."""

_NO_BACKOFF: dict[NodeId, float] = {}
_MESSAGES = Section.MESSAGES


class _Peer:
    """What the router knows about one connected peer."""

    __slots__ = (
        "batch",
        "dirty",
        "id",
        "ignored",
        "ihave_entries",
        "ihave_ids",
        "iwant_replies",
        "iwant_served",
        "lazy_ids",
        "offer_heartbeats",
        "offered",
        "outbound",
        "topics",
    )

    def __init__(self, peer: NodeId, batch: RpcBatch, outbound: bool) -> None:
        self.id = peer
        self.batch = batch
        """Records queued for this peer since the last drain."""
        self.outbound = outbound
        """This node chose to dial it (counts towards ``d_out``)."""
        self.topics: set[str] = set()
        self.dirty = False
        """Listed in the router's ``_dirty`` (has records queued since the last drain)."""
        self.ignored = False
        """Penalized or removed: nothing more is read from or sent to it."""
        self.ihave_entries = 0
        self.ihave_ids = 0
        self.iwant_replies = 0
        """IHAVE entries and offered ids taken from it, and IWANT replies served to it, this
        heartbeat (gossipsub's ``peerhave`` and ``iasked``, and our reply cap): they outlive
        the link until the heartbeat (see ``GossipRouter._spent``)."""
        self.iwant_served: set[bytes] = set()
        """Ids served to it this heartbeat: one asked again is neither sent nor counted."""
        self.lazy_ids: dict[str, list[bytes]] = {}
        """Ids of lazy-topic messages to offer this mesh peer at the next heartbeat."""
        self.offered: dict[bytes, tuple[str, bytes]] = {}
        """Message id -> (topic, data) offered to this peer alone (``offer_to_peer``); the
        data is the caller's object, encoded only if asked for, so an offer costs no copy."""
        self.offer_heartbeats = 0
        """Heartbeats until the offers lapse."""


_NO_PEERS: dict[NodeId, _Peer] = {}


class _Promise:
    """An IWANT sent and awaited: who offered the message (the one asked, ``offerers[asked]``,
    first offer first), when the IWANT lapses, and how many have been sent."""

    __slots__ = ("asked", "asks", "deadline", "offerers")

    def __init__(self, offerer: _Peer, deadline: float) -> None:
        self.offerers = [offerer]
        self.asked = 0
        self.asks = 1
        self.deadline = deadline

    def note(self, offerer: _Peer, cap: int) -> None:
        """Remembers another offerer of the id. One this node dialled is asked next; others
        queue, ``cap`` + 1 offerers at most. Otherwise identities dialling in that offered an
        id first (and never answer) held every place, and the node asked only them, ``d``
        times over, then gave up: a lazy message (an announcement) never arrived."""
        offerers = self.offerers
        if offerer in offerers:
            return
        if not offerer.outbound:
            if len(offerers) <= cap:
                offerers.append(offerer)
            return
        offerers.insert(self.asked + 1, offerer)
        if len(offerers) > cap + 1:
            for index in range(len(offerers) - 1, self.asked + 1, -1):
                if not offerers[index].outbound:
                    del offerers[index]
                    return

    def next_offerer(self, alive: Callable[[_Peer], bool]) -> _Peer | None:
        """The next live offerer after the one last asked, round the list once."""
        count = len(self.offerers)
        for step in range(1, count + 1):
            index = (self.asked + step) % count
            if alive(self.offerers[index]):
                self.asked = index
                return self.offerers[index]
        return None


class GossipRouter:
    def __init__(self, *, config: GossipConfig, rng: Rng, now: float) -> None:
        self._config = config
        self._rng = rng
        self.counters = Counters()
        self._peers: dict[NodeId, _Peer] = {}
        self._mesh: dict[str, dict[NodeId, _Peer]] = {}
        """Subscribed topic -> mesh peers (the keys are this node's subscriptions)."""
        self._peers_by_topic: dict[str, dict[NodeId, _Peer]] = {}
        self._fanout: dict[str, dict[NodeId, _Peer]] = {}
        self._fanout_last_publish: dict[str, float] = {}
        self._backoff: dict[str, dict[NodeId, float]] = {}
        self._validators: dict[str, Validator] = {}
        self._known: dict[str, Callable[[bytes], bool]] = {}
        self._seen = SeenCache(ttl_s=config.seen_ttl_s, capacity=config.seen_capacity)
        self._mcache = MessageCache(
            history_length=config.history_length,
            history_gossip=config.history_gossip,
            max_messages=config.mcache_max_messages,
            max_bytes=config.mcache_max_bytes,
        )
        self._lazy_mcache = MessageCache(
            history_length=config.lazy_history_length,
            history_gossip=config.history_gossip,
            max_messages=config.mcache_max_messages,
            max_bytes=config.mcache_max_bytes,
        )
        """Lazy-topic messages, kept longer: they are offered a heartbeat late and may be
        asked for again after an unanswered IWANT."""
        self._scores = PeerScores(decay=config.score_decay, max_retained=config.max_retained_scores)
        self._actions: list[GossipAction] = []
        self._dirty: list[_Peer] = []
        self._lazy_topics = config.lazy_topics
        self._lazy_pending: dict[NodeId, _Peer] = {}
        """Peers with ids in ``lazy_ids``, offered at the next heartbeat."""
        self._promises: OrderedDict[bytes, _Promise] = OrderedDict()
        """Message id -> the IWANT awaiting it; oldest deadline first (deadlines only grow)."""
        self._spent: OrderedDict[NodeId, tuple[int, int, int]] = OrderedDict()
        """Peers that left during this heartbeat -> the ``ihave_entries``, ``ihave_ids`` and
        ``iwant_replies`` they had spent, given back if they reconnect before it ends (as in
        gossipsub, whose counts are keyed by peer id and cleared only at the heartbeat);
        otherwise every handshake bought a fresh allowance. The ``max_retained_scores`` that
        left last are kept."""
        self._next_heartbeat = now + config.heartbeat_interval_s
        self._shared: SharedMessages | None = None

    def share_messages(self, shared: SharedMessages) -> None:
        """Take message bytes, ids and records from ``shared`` (a process hosting many
        routers: see :mod:`murmur.overlay.gossip.shared`); changes no output."""
        self._shared = shared

    # --- commands ---------------------------------------------------------------------------

    def mark_outbound(self, peer: NodeId) -> None:
        """``peer`` turned out to be one this node dialled (its link came second): it counts
        towards ``d_out`` from now on. Unknown peers are ignored."""
        st = self._peers.get(peer)
        if st is not None:
            st.outbound = True

    def add_peer(self, peer: NodeId, now: float, *, outbound: bool = False) -> None:
        """Start gossiping with ``peer``; ``outbound``: this node chose it (dialled it), so it
        counts towards every mesh's ``d_out``, which peers that dial in cannot fill."""
        if peer in self._peers:
            raise LocalProtocolError("gossip peer added twice")
        if len(self._peers) >= self._config.max_peers:
            raise LocalProtocolError(f"gossip router is full ({self._config.max_peers} peers)")
        st = _Peer(peer, RpcBatch(max_queued_bytes=self._config.max_outbox_bytes), outbound)
        self._peers[peer] = st
        spent = self._spent.pop(peer, None)
        if spent is not None:
            st.ihave_entries, st.ihave_ids, st.iwant_replies = spent
        if self._scores.connect(peer) < self._config.graylist_threshold:
            self._ignore(st, "graylisted")
            return
        for topic in self._mesh:
            self._queue(st, Section.SUBSCRIPTIONS, encode_subscription(Subscription(topic, True)))

    def remove_peer(self, peer: NodeId, now: float) -> None:
        """Forget a disconnected peer (unknown peers are ignored)."""
        st = self._peers.pop(peer, None)
        if st is None:
            return
        self._detach(st)
        self._keep_backoff(peer, now)
        self._scores.disconnect(peer)
        if (st.ihave_entries or st.iwant_replies) and self._config.max_retained_scores:
            spent = (st.ihave_entries, st.ihave_ids, st.iwant_replies)
            remember(self._spent, peer, spent, self._config.max_retained_scores)

    def _keep_backoff(self, peer: NodeId, now: float) -> None:
        """A departed peer's backoffs outlive its link, as in gossipsub's reference router:
        forgotten, a pruned peer could reconnect and GRAFT at once, unpenalised. Each is cut
        to at most ``prune_backoff_s`` from now, so the table holds, besides connected peers,
        only the peers that left within that time, whatever backoff they asked for."""
        latest = now + self._config.prune_backoff_s
        for backoff in self._backoff.values():
            until = backoff.get(peer)
            if until is not None and until > latest:
                backoff[peer] = latest

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics this router is subscribed to."""
        return tuple(self._mesh)

    def subscribe(self, topic: str, now: float) -> None:
        if not is_valid_topic(topic):
            raise LocalProtocolError(f"invalid gossip topic {topic!r}")
        if topic in self._mesh:
            return
        if len(self._mesh) >= self._config.max_topics:
            raise LocalProtocolError(f"already subscribed to {self._config.max_topics} topics")
        fanout = self._fanout.pop(topic, _NO_PEERS)
        self._fanout_last_publish.pop(topic, None)
        backoff = self._backoff.get(topic, _NO_BACKOFF)
        mesh = {
            pid: st
            for pid, st in fanout.items()
            if self._scores.get(pid) >= 0 and backoff.get(pid, now) <= now
        }
        self._mesh[topic] = mesh
        self._graft_up_to(topic, mesh, self._config.d, now)
        record = encode_subscription(Subscription(topic, True))
        for st in self._peers.values():
            if not st.ignored:
                self._queue(st, Section.SUBSCRIPTIONS, record)
        graft = encode_graft(Graft(topic))
        for st in mesh.values():
            self._queue(st, Section.GRAFT, graft)

    def unsubscribe(self, topic: str, now: float) -> None:
        mesh = self._mesh.pop(topic, None)
        if mesh is None:
            return
        record = encode_subscription(Subscription(topic, False))
        for st in self._peers.values():
            if not st.ignored:
                self._queue(st, Section.SUBSCRIPTIONS, record)
        for st in mesh.values():
            self._prune(st, topic, now)

    def set_validator(self, topic: str, validator: Validator) -> None:
        """Run ``validator`` on every message of ``topic`` before delivering or forwarding it."""
        if not is_valid_topic(topic):
            raise LocalProtocolError(f"invalid gossip topic {topic!r}")
        self._validators[topic] = validator

    def set_known(self, topic: str, known: Callable[[bytes], bool]) -> None:
        """Consult ``known(message_id)`` before asking for an offered message of ``topic``: the
        owner may hold messages longer than the seen cache remembers their ids."""
        if not is_valid_topic(topic):
            raise LocalProtocolError(f"invalid gossip topic {topic!r}")
        self._known[topic] = known

    def publish(self, topic: str, data: bytes, now: float, *, from_circuit: bool = False) -> bytes:
        """Send ``data`` on ``topic``; returns the message id.

        Raises :class:`murmur.overlay.routing.PrivatePathUnavailable` for private message types
        (unless ``from_circuit``: an exit publishing what left a circuit, whose origin the
        circuit hid) and :class:`LocalProtocolError` for an invalid topic, oversized data or
        data the topic's validator rejects. Publishing the same data twice sends it once.
        """
        if not from_circuit:
            require_fast_path(topic)
        msg = Message(topic, data)
        if self._shared is None:
            mid, record = message_id(topic, data), None
        else:
            data, mid, record = self._shared.share(topic, data)
        if mid in self._seen:
            self.counters.inc("gossip.publish.duplicate")
            return mid
        self._promises.pop(mid, None)
        validator = self._validators.get(topic)
        if validator is not None and _verdict(validator, data, now) is not Validation.ACCEPT:
            raise LocalProtocolError(f"own message on {topic!r} failed validation")
        self._seen.add(mid, now)
        if record is None:
            record = encode_message(msg)
        self._cache_for(topic).put(mid, topic, record)
        self.counters.inc("gossip.publish")
        mesh = self._mesh.get(topic)
        if mesh is None:
            targets: Iterable[_Peer] = self._fanout_peers(topic, now).values()
        else:
            self._actions.append(Deliver(topic, mid, data, None))
            targets = mesh.values() if mesh else self._pick(topic, (), _NO_BACKOFF, now)
        for st in targets:
            self._queue(st, Section.MESSAGES, record)
        return mid

    def offer_to_peer(
        self, peer: NodeId, topic: str, messages: Sequence[tuple[bytes, bytes]]
    ) -> None:
        """Offers one peer some messages it may lack (catch-up for a new link: known
        announcements): an IHAVE of their ids now, each message itself only if the peer asks
        (IWANT) within ``history_length`` heartbeats. ``messages`` pairs each message id with
        its data (the caller keeps the ids, so a new link does not hash every message again).

        Pushing them would cost a peer that already holds them (most peers, once a network
        runs) every byte of every message; an id is 20 bytes. The peer treats what it asked
        for like any gossip message (validates, delivers, forwards what is new to it); nothing
        is marked seen here, so this never suppresses a later publish.
        """
        st = self._peers.get(peer)
        if st is None or not messages:
            return
        ids = []
        for mid, data in messages[: self._config.max_ihave_length]:
            st.offered[mid] = (topic, data)
            ids.append(mid)
        st.offer_heartbeats = self._config.history_length
        self._queue(st, Section.IHAVE, encode_ihave(IHave(topic, tuple(ids))))
        self.counters.inc("gossip.offer.ids", len(ids))

    # --- inputs -----------------------------------------------------------------------------

    def receive_rpc(
        self, peer: NodeId, data: bytes, now: float, *, subscriptions_only: bool = False
    ) -> None:
        """One RPC from ``peer``. ``subscriptions_only``: the owner's rate limits dropped this
        RPC, yet it is the first on a new link and holds the peer's subscriptions, which the
        peer sends only then; take those and nothing else from it."""
        st = self._peers.get(peer)
        if st is None:
            self.counters.inc("gossip.rpc.unknown_peer")
            return
        if st.ignored:
            self.counters.inc("gossip.rpc.ignored")
            return
        try:
            rpc = decode_rpc(data)
        except RemoteProtocolError as exc:
            self.counters.inc(f"gossip.malformed.{exc.reason}")
            self._scores.penalize(peer, self._config.malformed_rpc_penalty)
            self._ignore(st, f"malformed_rpc:{exc.reason}")
            return
        if rpc.subscriptions:
            self._on_subscriptions(st, rpc.subscriptions)
        if subscriptions_only:
            return
        for msg in rpc.messages:
            if st.ignored:  # graylisted by an earlier message of this RPC
                return
            self._on_message(st, msg, now)
        if st.ignored:
            return
        if rpc.graft or rpc.prune:
            self._on_graft_prune(st, rpc, now)
        if rpc.ihave:
            self._on_ihave(st, rpc.ihave, now)
        if rpc.iwant:
            self._on_iwant(st, rpc.iwant)

    def handle_timer(self, now: float) -> None:
        if now < self._next_heartbeat:
            return
        self._heartbeat(now)
        self._next_heartbeat += self._config.heartbeat_interval_s
        if self._next_heartbeat <= now:
            self._next_heartbeat = now + self._config.heartbeat_interval_s

    def next_deadline(self) -> float | None:
        return self._next_heartbeat

    # --- outputs ----------------------------------------------------------------------------

    def drain_actions(self) -> list[GossipAction]:
        actions = self._actions
        self._actions = []
        for st in self._dirty:
            st.dirty = False
            for data in st.batch.take():
                actions.append(SendRpc(st.id, data))
        self._dirty = []
        return actions

    def mesh_peers(self, topic: str) -> frozenset[NodeId]:
        """The peers in this node's mesh for ``topic`` (empty if not subscribed)."""
        return frozenset(self._mesh.get(topic, _NO_PEERS))

    def score(self, peer: NodeId) -> float:
        """A connected peer's current score (0 for unknown peers)."""
        return self._scores.get(peer)

    def status(self) -> dict[str, object]:
        return {
            "peers": len(self._peers),
            "topics": sorted(self._mesh),
            "mesh": {topic: len(mesh) for topic, mesh in sorted(self._mesh.items())},
            "fanout": {topic: len(peers) for topic, peers in sorted(self._fanout.items())},
            "seen": len(self._seen),
            "mcache_messages": len(self._mcache) + len(self._lazy_mcache),
            "mcache_bytes": self._mcache.stored_bytes + self._lazy_mcache.stored_bytes,
            "pending_iwants": len(self._promises),
            "queued_bytes": sum(st.batch.queued_bytes for st in self._peers.values()),
        }

    # --- receive path -----------------------------------------------------------------------

    def _on_message(self, st: _Peer, msg: Message, now: float) -> None:
        """The hot path: one message from a peer."""
        topic = msg.topic
        mesh = self._mesh.get(topic)
        if mesh is None:
            self.counters.inc("gossip.message.unsubscribed")
            return
        data = msg.data
        if self._shared is None:
            mid, record = message_id(topic, data), None
        else:
            data, mid, record = self._shared.share(topic, data)
        if self._promises:
            self._promises.pop(mid, None)
        if not self._seen.add(mid, now):
            self.counters.inc("gossip.message.duplicate")
            return
        validator = self._validators.get(topic)
        if validator is not None:
            verdict = _verdict(validator, data, now)
            if verdict is Validation.REJECT:
                self.counters.inc("gossip.message.invalid")
                self._penalize(st, self._config.invalid_message_penalty)
                return
            if verdict is Validation.IGNORE:
                self.counters.inc("gossip.message.ignored")
                return
        if record is None:
            record = encode_message(msg)
        self._cache_for(topic).put(mid, topic, record)
        self.counters.inc("gossip.message.accepted")
        self._actions.append(Deliver(topic, mid, data, st.id))
        if topic in self._lazy_topics:
            self._offer_lazily(mesh, st, topic, mid)
            return
        for target in mesh.values():
            if target is not st:  # _queue, inlined: this loop is the relay path
                if target.batch.add(_MESSAGES, record):
                    if not target.dirty:
                        target.dirty = True
                        self._dirty.append(target)
                else:
                    self.counters.inc("gossip.outbox.full")

    def _on_subscriptions(self, st: _Peer, subscriptions: tuple[Subscription, ...]) -> None:
        for sub in subscriptions:
            topic = sub.topic
            if not sub.subscribe:
                if topic in st.topics:
                    self._forget_topic(st, topic)
            elif topic not in st.topics:
                if len(st.topics) >= self._config.max_peer_topics:
                    self.counters.inc("gossip.subscription.peer_cap")
                    continue
                st.topics.add(topic)
                self._peers_by_topic.setdefault(topic, {})[st.id] = st

    def _on_graft_prune(self, st: _Peer, rpc: Rpc, now: float) -> None:
        cfg = self._config
        for graft in rpc.graft:
            topic = graft.topic
            mesh = self._mesh.get(topic)
            if mesh is None:
                self.counters.inc("gossip.graft.unsubscribed_topic")
                continue
            if st.id in mesh:
                continue
            if topic not in st.topics:
                self.counters.inc("gossip.graft.peer_not_subscribed")
                self._prune(st, topic, now)
            elif self._backoff.get(topic, _NO_BACKOFF).get(st.id, now) > now:
                self.counters.inc("gossip.graft.backoff_violation")
                self._prune(st, topic, now)
                self._penalize(st, cfg.backoff_violation_penalty)
                if st.ignored:
                    return
            elif self._scores.get(st.id) < 0 or (len(mesh) >= cfg.d_hi and not st.outbound):
                self.counters.inc("gossip.graft.refused")
                self._prune(st, topic, now)
            else:
                mesh[st.id] = st
        for prune in rpc.prune:
            mesh = self._mesh.get(prune.topic)
            if mesh is None:
                continue
            mesh.pop(st.id, None)
            self._set_backoff(prune.topic, st.id, now + (prune.backoff_s or cfg.prune_backoff_s))

    def _offer_lazily(
        self, mesh: dict[NodeId, _Peer], source: _Peer, topic: str, mid: bytes
    ) -> None:
        pending = self._lazy_pending
        for target in mesh.values():
            if target is not source:
                ids = target.lazy_ids.get(topic)
                if ids is None:
                    ids = target.lazy_ids[topic] = []
                ids.append(mid)
                pending[target.id] = target

    def _on_ihave(self, st: _Peer, ihaves: tuple[IHave, ...], now: float) -> None:
        cfg = self._config
        if self._scores.get(st.id) < cfg.gossip_threshold:
            self.counters.inc("gossip.ihave.ignored_low_score")
            return
        promises = self._promises
        wanted: dict[bytes, None] = {}
        retries: dict[_Peer, list[bytes]] = {}
        for ihave in ihaves:
            if st.ihave_entries >= cfg.max_ihave_messages:
                self.counters.inc("gossip.ihave.flood")
                break
            st.ihave_entries += 1
            if ihave.topic not in self._mesh:
                continue
            known = self._known.get(ihave.topic)
            for mid in ihave.message_ids:
                if mid in self._seen or mid in wanted:
                    continue
                if known is not None and known(mid):
                    self.counters.inc("gossip.ihave.known")
                    continue
                promise = promises.get(mid)
                if promise is not None:
                    promise.note(st, cfg.d)
                    if promise.deadline > now:
                        self.counters.inc("gossip.ihave.already_asked")
                        continue
                    # Lapsed, not yet followed up: follow it up now, as the heartbeat would.
                    # Replacing it let the peer asked renew its own promise by offering again,
                    # uncharged, and forgot every other offerer: the message never came.
                    del promises[mid]
                    offerer = self._follow_up(mid, promise, now)
                    if st.ignored:  # it was the peer asked, now graylisted
                        self._ask_again(retries)
                        return
                    if offerer is not None:
                        retries.setdefault(offerer, []).append(mid)
                        continue
                if st.ihave_ids >= cfg.max_ihave_length:
                    self.counters.inc("gossip.ihave.flood")
                    break
                st.ihave_ids += 1
                wanted[mid] = None
                if len(promises) < cfg.max_pending_iwants:
                    promises[mid] = _Promise(st, now + cfg.iwant_followup_s)
                else:
                    self.counters.inc("gossip.iwant.untracked")
        if wanted:  # at most max_ihave_length <= MAX_IDS_PER_CONTROL ids: one IWANT
            self._queue(st, Section.IWANT, encode_iwant(IWant(tuple(wanted))))
            self.counters.inc("gossip.iwant.sent_ids", len(wanted))
        self._ask_again(retries)

    def _on_iwant(self, st: _Peer, iwants: tuple[IWant, ...]) -> None:
        cfg = self._config
        if self._scores.get(st.id) < cfg.gossip_threshold:
            self.counters.inc("gossip.iwant.ignored_low_score")
            return
        served = st.iwant_served
        for iwant in iwants:
            for mid in iwant.message_ids:
                if mid in served:
                    continue
                if st.iwant_replies >= cfg.max_iwant_replies:
                    self.counters.inc("gossip.iwant.flood")
                    return
                cache = self._mcache if mid in self._mcache else self._lazy_mcache
                if mid in cache:
                    record = cache.serve(mid, st.id, cfg.gossip_retransmission)
                    if record is None:
                        self.counters.inc("gossip.iwant.retransmission_limit")
                        continue
                else:
                    offered = st.offered.pop(mid, None)
                    if offered is None:
                        self.counters.inc("gossip.iwant.missing")
                        continue
                    record = encode_message(Message(*offered))
                served.add(mid)
                st.iwant_replies += 1
                self.counters.inc("gossip.iwant.served")
                self._queue(st, Section.MESSAGES, record)

    # --- heartbeat ----------------------------------------------------------------------------

    def _heartbeat(self, now: float) -> None:
        self.counters.inc("gossip.heartbeat")
        self._scores.decay()
        for topic in list(self._backoff):
            backoff = self._backoff[topic]
            for pid in [pid for pid, until in backoff.items() if until <= now]:
                del backoff[pid]
            if not backoff:
                del self._backoff[topic]
        for topic, mesh in self._mesh.items():
            self._maintain_mesh(topic, mesh, now)
        self._maintain_fanout(now)
        self._follow_up_promises(now)
        self._emit_lazy()
        self._emit_gossip()
        self._mcache.shift()
        self._lazy_mcache.shift()
        self._seen.expire(now)
        self._spent.clear()
        for st in self._peers.values():
            st.ihave_entries = 0
            st.ihave_ids = 0
            st.iwant_replies = 0
            st.iwant_served.clear()
            if st.offered:
                st.offer_heartbeats -= 1
                if st.offer_heartbeats <= 0:
                    st.offered.clear()

    def _maintain_mesh(self, topic: str, mesh: dict[NodeId, _Peer], now: float) -> None:
        cfg = self._config
        for pid in [pid for pid in mesh if self._scores.get(pid) < 0]:
            self._prune(mesh.pop(pid), topic, now)
        grafted: list[_Peer] = []
        if len(mesh) < cfg.d_lo:
            grafted = self._graft_up_to(topic, mesh, cfg.d, now)
        elif len(mesh) >= cfg.d_hi:
            self._prune_to_d(topic, mesh, now)
        outbound = sum(1 for st in mesh.values() if st.outbound)
        if outbound < cfg.d_out:
            backoff = self._backoff.get(topic, _NO_BACKOFF)
            for st in self._pick(topic, mesh, backoff, now, cfg.d_out - outbound, outbound=True):
                mesh[st.id] = st
                grafted.append(st)
        if grafted:
            graft = encode_graft(Graft(topic))
            for st in grafted:
                self._queue(st, Section.GRAFT, graft)

    def _prune_to_d(self, topic: str, mesh: dict[NodeId, _Peer], now: float) -> None:
        """Prunes an oversized mesh to ``d`` random peers, ``d_out`` of them outbound if it
        has that many: the last inbound peers drawn give way to outbound ones left out."""
        cfg = self._config
        members = list(mesh.values())
        self._rng.shuffle(members)
        keep = members[: cfg.d]
        short = cfg.d_out - sum(1 for st in keep if st.outbound)
        if short > 0:
            spare = [st for st in members[cfg.d :] if st.outbound][:short]
            gone = [st for st in reversed(keep) if not st.outbound][: len(spare)]
            keep = [st for st in keep if st not in gone] + spare
        kept = {st.id for st in keep}
        for st in members:
            if st.id not in kept:
                del mesh[st.id]
                self._prune(st, topic, now)

    def _maintain_fanout(self, now: float) -> None:
        cfg = self._config
        for topic in list(self._fanout):
            if self._fanout_last_publish[topic] + cfg.fanout_ttl_s <= now:
                del self._fanout[topic], self._fanout_last_publish[topic]
                continue
            fanout = self._fanout[topic]
            for pid in [pid for pid in fanout if self._scores.get(pid) < 0]:
                del fanout[pid]
            if len(fanout) < cfg.d:
                for st in self._pick(topic, fanout, _NO_BACKOFF, now, cfg.d - len(fanout)):
                    fanout[st.id] = st

    def _follow_up_promises(self, now: float) -> None:
        """Ask the next offerer (round the offerers, ``d`` asks at most) for each id whose
        IWANT went unanswered."""
        promises = self._promises
        retries: dict[_Peer, list[bytes]] = {}
        while promises:
            mid, promise = next(iter(promises.items()))
            if promise.deadline > now:
                break
            del promises[mid]
            if mid in self._seen:
                continue
            offerer = self._follow_up(mid, promise, now)
            if offerer is not None:
                retries.setdefault(offerer, []).append(mid)
        self._ask_again(retries)

    def _follow_up(self, mid: bytes, promise: _Promise, now: float) -> _Peer | None:
        """A lapsed IWANT (already out of ``_promises``): charges the peer asked and re-arms
        the promise for the next live offerer, returned to be asked; ``None`` once ``d`` asks
        are spent or no offerer is left (the promise is then dropped)."""
        cfg = self._config
        self.counters.inc("gossip.iwant.unanswered")
        self._broke_promise(promise.offerers[promise.asked].id)
        if promise.asks >= cfg.d:
            return None
        offerer = promise.next_offerer(self._is_live)
        if offerer is not None:
            promise.asks += 1
            promise.deadline = now + cfg.iwant_followup_s
            self._promises[mid] = promise
        return offerer

    def _ask_again(self, retries: dict[_Peer, list[bytes]]) -> None:
        limit = self._config.max_ihave_length
        for st, ids in retries.items():
            if st.ignored:  # graylisted by a later follow-up of the same batch
                continue
            for start in range(0, len(ids), limit):
                chunk = tuple(ids[start : start + limit])
                self._queue(st, Section.IWANT, encode_iwant(IWant(chunk)))
            self.counters.inc("gossip.iwant.retried", len(ids))

    def _emit_lazy(self) -> None:
        """One IHAVE per peer and lazy topic: the ids it was due since the last heartbeat."""
        limit = self._config.max_ihave_length
        for st in self._lazy_pending.values():
            for topic, ids in st.lazy_ids.items():
                if st.ignored or topic not in st.topics:
                    continue
                if len(ids) > limit:
                    self.counters.inc("gossip.lazy.dropped", len(ids) - limit)
                    ids = ids[-limit:]
                self._queue(st, Section.IHAVE, encode_ihave(IHave(topic, tuple(ids))))
                self.counters.inc("gossip.lazy.offered", len(ids))
            st.lazy_ids = {}
        self._lazy_pending = {}

    def _emit_gossip(self) -> None:
        for cache in (self._mcache, self._lazy_mcache):
            self._emit_gossip_from(cache)

    def _emit_gossip_from(self, cache: MessageCache) -> None:
        cfg = self._config
        for topic in cache.gossip_topics():
            members = self._mesh.get(topic)
            if members is None:
                members = self._fanout.get(topic)
                if members is None:
                    continue
            candidates = [
                st
                for pid, st in self._peers_by_topic.get(topic, _NO_PEERS).items()
                if pid not in members and self._scores.get(pid) >= cfg.gossip_threshold
            ]
            if not candidates:
                continue
            ids = cache.gossip_ids(topic, cfg.max_ihave_length, self._rng)
            record = encode_ihave(IHave(topic, tuple(ids)))
            for st in self._rng.sample(candidates, min(cfg.d_lazy, len(candidates))):
                self._queue(st, Section.IHAVE, record)

    # --- helpers ------------------------------------------------------------------------------

    def _queue(self, st: _Peer, section: Section, record: bytes) -> None:
        if not st.batch.add(section, record):
            self.counters.inc("gossip.outbox.full")
            return
        if not st.dirty:
            st.dirty = True
            self._dirty.append(st)

    def _pick(
        self,
        topic: str,
        exclude: Container[NodeId],
        backoff: dict[NodeId, float],
        now: float,
        k: int | None = None,
        *,
        outbound: bool = False,
    ) -> list[_Peer]:
        """Up to ``k`` (default ``d``) random topic peers with a score >= 0, not excluded, and
        not in ``backoff`` (with ``outbound``, only peers this node dialled)."""
        candidates = [
            st
            for pid, st in self._peers_by_topic.get(topic, _NO_PEERS).items()
            if pid not in exclude
            and self._scores.get(pid) >= 0
            and backoff.get(pid, now) <= now
            and (st.outbound or not outbound)
        ]
        k = self._config.d if k is None else k
        return self._rng.sample(candidates, min(k, len(candidates)))

    def _graft_up_to(
        self, topic: str, mesh: dict[NodeId, _Peer], d: int, now: float
    ) -> list[_Peer]:
        """Add random eligible peers to ``mesh`` until it holds ``d``; returns the new ones."""
        backoff = self._backoff.get(topic, _NO_BACKOFF)
        added = self._pick(topic, mesh, backoff, now, d - len(mesh)) if len(mesh) < d else []
        for st in added:
            mesh[st.id] = st
        return added

    def _fanout_peers(self, topic: str, now: float) -> dict[NodeId, _Peer]:
        fanout = self._fanout.get(topic)
        if fanout is None:
            if len(self._fanout) >= self._config.max_fanout_topics:
                stalest = min(self._fanout_last_publish, key=self._fanout_last_publish.__getitem__)
                del self._fanout[stalest], self._fanout_last_publish[stalest]
            fanout = self._fanout[topic] = {}
        if len(fanout) < self._config.d:
            for st in self._pick(topic, fanout, _NO_BACKOFF, now, self._config.d - len(fanout)):
                fanout[st.id] = st
        self._fanout_last_publish[topic] = now
        return fanout

    def _prune(self, st: _Peer, topic: str, now: float) -> None:
        """Tell ``st`` it is not (or no longer) in our mesh for ``topic``, with a backoff."""
        backoff_s = self._config.prune_backoff_s
        self._set_backoff(topic, st.id, now + backoff_s)
        self._queue(st, Section.PRUNE, encode_prune(Prune(topic, backoff_s)))

    def _set_backoff(self, topic: str, peer: NodeId, until: float) -> None:
        backoff = self._backoff.setdefault(topic, {})
        backoff[peer] = max(until, backoff.get(peer, until))

    def _cache_for(self, topic: str) -> MessageCache:
        return self._lazy_mcache if topic in self._lazy_topics else self._mcache

    def _is_live(self, st: _Peer) -> bool:
        return not st.ignored and self._peers.get(st.id) is st

    def _broke_promise(self, peer: NodeId) -> None:
        """``peer`` offered a message, was asked for it and never sent it (nor did anyone else
        in time). Honest peers do this now and then (a message that left their cache, a lost
        link); one that does it more than ``broken_promise_threshold`` times within a few
        heartbeats is offering what it withholds, and each further time costs it
        ``broken_promise_penalty`` (gossipsub v1.1's P7, its behaviour penalty). Charged to
        its node id, as gossipsub's promise tracker does, whether it is still on the link the
        IWANT went out on, on a new one, or gone: otherwise leaving before the IWANT lapsed
        escaped the charge, and reconnecting reset the count."""
        cfg = self._config
        if self._scores.break_promise(peer) > cfg.broken_promise_threshold:
            self.counters.inc("gossip.iwant.broken_promise_penalty")
            st = self._peers.get(peer)
            if st is None:
                self._scores.penalize(peer, cfg.broken_promise_penalty)
            else:
                self._penalize(st, cfg.broken_promise_penalty)

    def _penalize(self, st: _Peer, amount: float) -> None:
        score = self._scores.penalize(st.id, amount)
        if score < self._config.graylist_threshold and not st.ignored:
            self._ignore(st, "graylisted")

    def _ignore(self, st: _Peer, reason: str) -> None:
        """Cut ``st`` off: out of every mesh, nothing queued, and report it to the node."""
        self._detach(st)
        self.counters.inc(f"gossip.penalized.{reason.partition(':')[0]}")
        self._actions.append(PenalizePeer(st.id, reason))

    def _detach(self, st: _Peer) -> None:
        st.ignored = True
        for topic in list(st.topics):
            self._forget_topic(st, topic)
        st.batch.take()

    def _forget_topic(self, st: _Peer, topic: str) -> None:
        st.topics.discard(topic)
        peers = self._peers_by_topic.get(topic)
        if peers is not None:
            peers.pop(st.id, None)
            if not peers:
                del self._peers_by_topic[topic]
        for table in (self._mesh, self._fanout):
            members = table.get(topic)
            if members is not None:
                members.pop(st.id, None)


def _verdict(validator: Validator, data: bytes, now: float) -> Validation:
    try:
        result = validator(data, now)
    except RemoteProtocolError:
        return Validation.REJECT
    if isinstance(result, Validation):
        return result
    return Validation.ACCEPT if result else Validation.REJECT
