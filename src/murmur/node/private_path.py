"""The node's private path: onion circuits, its onion keys, and what it knows of other relays.

Theory of operation. Every node is a relay and an origin (:class:`CircuitHost`). Relays learn
of each other from signed peer announcements gossiped on the fast path; each verified one feeds
the :class:`RelayDirectory` hops are drawn from, so hops come from every node the origin has
heard of, not only its direct peers. The node re-announces itself every third of the
announcement's lifetime and at once when its onion keys rotate or its address becomes known.
An announcement's sequence number is its issue time on the node's wall clock (``now`` plus the
offset it was given), and one whose lifetime is over, or which was issued too far ahead, is
ignored and counted (``announce.stale``, ``announce.from_future``; see
:mod:`murmur.overlay.announce`).

At the exit, a transaction is checked by ``validate`` and published to gossip as the exit's own
message; a sync request (a list of message ids) is answered from the bounded store of messages
this node has delivered, and the answer travels back through the same circuit.

Outgoing private messages are shaped by privacy level (:mod:`murmur.node.levels`): a
:class:`ShapedOrigin` lane per level in use, the node's own level opened at start so its cover
traffic (if any) runs from the beginning; a level named by one transaction opens its lane then
and keeps it. The node's level also sets the relay's per-cell delay and the idle-link padder the
node polls (:attr:`PrivatePath.link_padder`).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Collection, Iterable, Mapping

from murmur.base.errors import RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.crypto.identity import Identity
from murmur.node.levels import PrivacySettings
from murmur.overlay.announce import (
    DEFAULT_TTL_S,
    MAX_CLOCK_SKEW_S,
    AnnouncementBook,
    Freshness,
    PeerAnnouncement,
    freshness,
    next_sequence,
    sign_announcement,
)
from murmur.overlay.circuits.config import ClientConfig, RelayConfig
from murmur.overlay.circuits.guards import GuardRecord
from murmur.overlay.circuits.host import CircuitHost
from murmur.overlay.circuits.onion_keys import OnionKeyPair, OnionKeyRing
from murmur.overlay.circuits.regions import RegionMap
from murmur.overlay.circuits.selection import (
    NatType,
    RelayCapacity,
    RelayDirectory,
)
from murmur.overlay.gossip import Validation
from murmur.overlay.peers.netgroup import network_prefix
from murmur.overlay.routing import MessageType
from murmur.overlay.shaping.link_padding import IdlePadder
from murmur.overlay.shaping.origin import ShapedOrigin
from murmur.wire.cells import RelayAddress
from murmur.wire.gossip import MESSAGE_ID_BYTES, message_id

DEFAULT_CAPACITY = RelayCapacity(
    bandwidth_kbps=80_000, uptime_ratio=1.0, nat_type=NatType.OPEN, load=0.0
)
MAX_TRANSACTION_BYTES = 131_072
MAX_SYNC_IDS = 64
STORE_MAX_BYTES = 16 * 1024 * 1024
REANNOUNCE_INTERVAL_S = DEFAULT_TTL_S / 3
"""Mean time between a node's periodic re-announcements: a third of the announcement's
lifetime, so peers keep the node through a lost renewal (even with the ±25 % spread)."""
REANNOUNCE_JITTER = 0.25
"""Each periodic re-announcement comes after the interval times a uniform factor in
[1 - this, 1 + this]. Without it, nodes started together (a network-wide upgrade, a simulation)
re-announce together forever, and a thousand 9 kB records flooding at once backlog every
uplink for about a minute; in the simulator that wave held 20 GB of frames in flight."""
EARLY_REANNOUNCE_S = (10.0, 30.0)
"""Re-announce soon after start: a node that joined the mesh after our first announcement
(and after the catch-up its links gave it) still hears of us within seconds, not minutes."""
CATCH_UP_ANNOUNCEMENTS = 128
OWN_REPLACED_KEPT = 8
"""Gossip ids of this node's own replaced announcements it remembers, so that a catch-up offer
of one is not pulled (``holds``): a peer that missed our newest record still holds an older one
and offers it on every new link, and each time we pulled it (9 kB) only to ignore it. Peers drop
a record three hours (and the skew) after it was issued; in that time a node signs at most its
first record, two early re-announcements and four or five periodic ones (at least 45 minutes
apart), so the last eight cover every one still alive unless its onion keys rotated or its clock
stepped meanwhile, or it restarted (they are not kept across runs). An older one is pulled once
per new link, as every one was before."""


class MessageStore:
    """Recently delivered messages by id, bounded in bytes (oldest evicted first)."""

    def __init__(self, max_bytes: int = STORE_MAX_BYTES) -> None:
        self._items: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes

    def put(self, message_id: bytes, data: bytes) -> None:
        if message_id in self._items or len(data) > self._max_bytes:
            return
        self._items[message_id] = data
        self._bytes += len(data)
        while self._bytes > self._max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old)

    def get(self, message_id: bytes) -> bytes | None:
        return self._items.get(message_id)


def encode_sync_request(message_ids: list[bytes]) -> bytes:
    if not 0 < len(message_ids) <= MAX_SYNC_IDS or any(
        len(m) != MESSAGE_ID_BYTES for m in message_ids
    ):
        raise ValueError(f"a sync request names 1 to {MAX_SYNC_IDS} message ids")
    return b"".join(message_ids)


def decode_sync_response(payload: bytes) -> dict[bytes, bytes]:
    """``id (20) || len (u32) || data`` records, as :meth:`PrivatePath.answer` writes them."""
    found: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(payload):
        if pos + MESSAGE_ID_BYTES + 4 > len(payload):
            raise RemoteProtocolError("truncated", "sync response")
        mid = payload[pos : pos + MESSAGE_ID_BYTES]
        size = int.from_bytes(payload[pos + MESSAGE_ID_BYTES : pos + MESSAGE_ID_BYTES + 4], "big")
        start = pos + MESSAGE_ID_BYTES + 4
        if start + size > len(payload):
            raise RemoteProtocolError("truncated", "sync response record")
        found[mid] = payload[start : start + size]
        pos = start + size
    return found


def check_sync_response(
    found: Mapping[bytes, bytes], asked: Collection[bytes], topics: Iterable[str]
) -> None:
    """Raises unless every record of a decoded sync reply is one we asked for and its data
    hashes to its id under one of ``topics``. The reply comes from an exit we do not trust, and
    a gossip message id is a hash of topic and data, so an exit can withhold messages but not
    invent or alter them."""
    wanted = set(asked)
    for mid, data in found.items():
        if mid not in wanted:
            raise RemoteProtocolError("unasked", "sync response names an id not asked for")
        if not any(message_id(topic, data) == mid for topic in topics):
            raise RemoteProtocolError("bad_record", "sync response data does not match its id")


CLOCK_REANNOUNCE_MIN_S = 60.0
"""The shortest time between two announcements a wall-clock step triggers."""
MISTIMED_KEPT = 256
"""Announcements ignored for their time (stale or from the future on this node's clock) kept
to be judged again if the clock is corrected: about 2.3 MB at most. A node that started before
NTP set its clock (a machine without one) ignored every record it was offered meanwhile; with
these it has a directory at once, not as relays re-announce over the next hour. Each place is
one node's, taken only by its newest correctly signed record and given up when the book takes
a newer one of that node, so neither forgeries nor one node's many records push other nodes
out; like the book, they do not stop a flood of fresh identities (free to make, and each signs
its own records)."""


class PrivatePath:
    def __init__(
        self,
        *,
        identity: Identity,
        rng: Rng,
        now: float,
        wall_clock_offset_s: float,
        capacity: RelayCapacity = DEFAULT_CAPACITY,
        client_config: ClientConfig | None = None,
        relay_config: RelayConfig | None = None,
        privacy: PrivacySettings | None = None,
        guards: Iterable[GuardRecord] = (),
        regions: RegionMap | None = None,
    ) -> None:
        """``wall_clock_offset_s``: wall-clock time (Unix seconds) minus ``now``, for the issue
        times announcements carry and the entry guards' lifetimes. Circuit configs not given
        explicitly come from ``privacy`` (default: the standard preset). ``guards``: the entry
        guards kept from an earlier run. ``regions``: the region map regional paths place
        relays and this node with (needed when ``privacy`` asks for them)."""
        self.privacy = privacy or PrivacySettings.from_names()
        self._identity = identity
        self._capacity = capacity
        self._rng = rng
        self._sequence = 0
        self._signed_at: float | None = None
        """When this node last signed its announcement."""
        self._mistimed: OrderedDict[NodeId, PeerAnnouncement] = OrderedDict()
        """Node → its newest announcement ignored for its time, the latest kept last
        (``MISTIMED_KEPT``)."""
        self._mistimed_ids: dict[bytes, NodeId] = {}
        """Gossip id of each record in ``_mistimed`` → its node (see ``holds``)."""
        self._mistimed_due = math.inf
        """No record kept from the future comes within the skew before this (see ``expire``)."""
        self.counters = Counters()
        self.onion_keys = OnionKeyRing(OnionKeyPair.generate(rng), now=now)
        self.directory = RelayDirectory()
        self.book = AnnouncementBook(wall_clock_offset_s=wall_clock_offset_s)
        self.store = MessageStore()
        self.advertised: RelayAddress | None = None
        self.own_announcement: bytes | None = None
        self._own_ids: deque[bytes] = deque(maxlen=OWN_REPLACED_KEPT + 1)
        """Gossip ids of the node's own announcement and of the ones it last replaced (see
        ``holds``)."""
        self._next_announce: float | None = None
        self._announcements_sent = 0
        self.circuits = CircuitHost(
            node_id=identity.node_id,
            onion_keys=self.onion_keys,
            directory=self.directory,
            rng=rng,
            now=now,
            validate=self.validate,
            answer=self.answer,
            client_config=client_config or self.privacy.client_config(regions),
            relay_config=relay_config or self.privacy.relay_config(),
            guards=guards,
            wall_clock_offset_s=wall_clock_offset_s,
        )
        self.book.keep = self.circuits.client.guards.holds
        self.origin = ShapedOrigin(port=self.circuits.client, rng=rng)
        own = self.privacy.level
        self.origin.open_lane(own.name, own.shaping, now)
        self.link_padder: IdlePadder[object] | None = (
            None if own.link_padding is None else IdlePadder(own.link_padding, rng)
        )

    # --- sending -------------------------------------------------------------------------

    def send(self, topic: str, payload: bytes, now: float, level: str | None = None) -> int:
        """Sends ``payload`` the way ``level`` (default: the node's) shapes it; returns its id.

        Raises ``ConfigError`` naming the valid levels for an unknown one, ``QueueFull`` when the
        level's queue is full, ``NoCircuitAvailable`` when an unshaped send finds no circuit.
        """
        chosen = self.privacy.level_for(level)
        self.origin.open_lane(chosen.name, chosen.shaping, now)
        # Gossip delivers a message id once, and exits drop what they refuse: such a message
        # cannot come back, so it is neither resent nor held against our guard.
        known = self.store.get(message_id(topic, payload)) is not None
        comes_back = self.validate(topic, payload) and not known
        return self.origin.submit(chosen.name, topic, payload, now, watch=comes_back)

    def handle_timer(self, now: float) -> None:
        self.origin.handle_timer(now)

    # --- announcements -------------------------------------------------------------------

    @property
    def wall_clock_offset_s(self) -> float:
        """Wall-clock time minus ``now``: the book's, which judges records on it
        (:meth:`set_wall_clock` corrects it)."""
        return self.book.wall_clock_offset_s

    def set_wall_clock(self, offset_s: float, now: float) -> None:
        """The wall clock was corrected (wall time = ``now`` + ``offset_s`` from now on).

        If it moved by more than half the skew receivers allow, what this node last announced
        may be dated wrongly for them (a machine without a clock that started before NTP set
        it), and records it ignored for their time may be fresh after all: those are judged
        again at once, and the node announces again: at once, or ``CLOCK_REANNOUNCE_MIN_S``
        after it last signed if that was more recent (a clock that keeps stepping must not make
        it flood the network with records), or at its own next announcement if that comes
        sooner; each signing uses the clock as it is by then. A last record dated beyond the
        skew ahead of the corrected clock was ignored by every receiver whose clock is right,
        so its sequence number is forgotten and the next record is dated right; otherwise the
        next one is dated one millisecond after it, which receivers take."""
        step = offset_s - self.wall_clock_offset_s
        moved = abs(step)
        self._mistimed_due -= step
        self.book.wall_clock_offset_s = offset_s
        self.circuits.client.wall_clock_offset_s = offset_s
        self.circuits.client.guards.clock_stepped(step)
        if self._sequence > (now + offset_s + MAX_CLOCK_SKEW_S) * 1000:
            self._sequence = 0
        if moved <= MAX_CLOCK_SKEW_S / 2:
            return
        self.counters.inc("announce.clock_step")
        self._judge_mistimed_again(now)
        last = self._signed_at
        due = now if last is None else max(now, last + CLOCK_REANNOUNCE_MIN_S)
        scheduled = self._next_announce
        if self.advertised is not None and (scheduled is None or due < scheduled):
            self._next_announce = due

    def _judge_mistimed_again(self, now: float) -> None:
        """The records ignored for their time, judged on the corrected clock: those now fresh
        (and correctly signed) join the book and the directory, as gossip would have made them."""
        mistimed, self._mistimed = self._mistimed, OrderedDict()
        self._mistimed_ids.clear()
        self._mistimed_due = math.inf
        for announcement in mistimed.values():
            data = announcement.encode()
            if self.validate_announcement(data, now) is Validation.ACCEPT:
                self.counters.inc("announce.retimed")
                self.on_announcement(data, now)

    def set_advertised_address(self, host: str, port: int, now: float) -> None:
        self.advertised = RelayAddress(host, port)
        self.circuits.client.own_prefixes = frozenset({network_prefix(host)})
        self.circuits.client.own_host = host
        self._next_announce = now

    @property
    def next_announcement_at(self) -> float | None:
        """When this node next signs and publishes its announcement (None: no address yet)."""
        return self._next_announce

    def reannounce(self, now: float) -> None:
        """Announce again at the next timer (the onion keys rotated, or the operator asks)."""
        if self.advertised is not None:
            self._next_announce = now

    def next_deadline(self) -> float | None:
        soonest = self.origin.next_deadline()
        for deadline in (
            self._next_announce,
            None if self.link_padder is None else self.link_padder.next_deadline(),
        ):
            if deadline is not None and (soonest is None or deadline < soonest):
                soonest = deadline
        return soonest

    def announcement_due(self, now: float) -> bytes | None:
        """The encoded announcement to publish now, if one is due."""
        if self.advertised is None or self._next_announce is None or now < self._next_announce:
            return None
        self._sequence = next_sequence(self._sequence, now + self.wall_clock_offset_s)
        announcement = sign_announcement(
            self._identity,
            address=self.advertised,
            onion_keys=self.onion_keys.current.public,
            capacity=self._capacity,
            sequence=self._sequence,
            ttl_s=DEFAULT_TTL_S,
        )
        self._announcements_sent += 1
        self._signed_at = now
        self._own_ids.append(announcement.gossip_id)
        early = self._announcements_sent - 1
        if early < len(EARLY_REANNOUNCE_S):
            self._next_announce = now + EARLY_REANNOUNCE_S[early]
        else:
            spread = 1.0 + REANNOUNCE_JITTER * (2.0 * self._rng.random() - 1.0)
            self._next_announce = now + spread * REANNOUNCE_INTERVAL_S
        self.own_announcement = announcement.encode()
        return self.own_announcement

    def catch_up(self, rng: Rng, now: float, *, others: bool = True) -> list[tuple[bytes, bytes]]:
        """What a newly linked peer is offered, as (gossip id, encoded announcement): ours
        and (``others``) a bounded sample of others.

        Without it a joining node would know no relays until each re-announced (every
        hour); the bound keeps a join from costing more than ``CATCH_UP_ANNOUNCEMENTS``
        records (the DHT will replace this for large networks). The node offers them by id
        (``GossipRouter.offer_to_peer``), so a peer that knows them costs 20 bytes each.
        Records past their lifetime leave the book first: the peer would ignore them. So do
        those of nodes whose newer record the node keeps aside for a clock correction (a clock
        set back): a peer that took the newer one would pull each, only to ignore it.
        """
        self.expire(now)
        mistimed = self._mistimed  # each newer than the book's record of its node, if any
        known = [a for a in self.book.all() if a.node_id not in mistimed] if others else []
        sample = rng.sample(known, min(len(known), CATCH_UP_ANNOUNCEMENTS))
        own = [self.own_announcement] if self.own_announcement is not None else []
        offered = [(announcement_id(data), data) for data in own]
        return offered + [(a.gossip_id, a.encode()) for a in sample]

    def validate_announcement(self, data: bytes, now: float) -> Validation:
        """Gossip validator: only well-formed, correctly signed, fresh announcements travel.

        One whose lifetime is over on this node's wall clock, or issued too far ahead of it
        (:func:`murmur.overlay.announce.freshness`), is ignored and counted
        (``announce.stale``, ``announce.from_future``): a replay of a recorded announcement
        after its node was forgotten must not bring it back, but the peer that passed it on may
        be honest, with a clock some minutes off from ours, and must not be penalised for it.
        The check comes before the signature's, which costs far more; such a record is verified
        only if it would be kept for a clock correction (``_keep_mistimed``).

        One no newer than the node's held copy is ignored, not rejected: an honest peer may
        still hold and forward it, and a catch-up pull asks for announcements the gossip seen
        cache has forgotten (it keeps ids for minutes, the book keeps announcements for
        hours), so blaming the sender would penalise, and in the end ban, honest peers for
        answering our own request.

        One in the node's own name is accepted only as the exact bytes it signed last: the
        public key is public, so anyone can wrap it in a record with a bad signature, and a
        node that passed that on unchecked would be banned by its honest peers for it. An
        older own record, correctly signed, is ignored (an honest peer may still hold it)."""
        try:
            announcement = PeerAnnouncement.decode(data)
        except RemoteProtocolError:
            return Validation.REJECT
        if announcement.node_id == self._identity.node_id:
            if data == self.own_announcement:
                return Validation.ACCEPT
            return Validation.IGNORE if announcement.verified() else Validation.REJECT
        state = freshness(announcement, now + self.wall_clock_offset_s)
        if state is not Freshness.FRESH:
            self.counters.inc(f"announce.{state.value}")
            return self._keep_mistimed(announcement, state)
        if self.book.is_stale(announcement):
            return Validation.IGNORE
        return Validation.ACCEPT if announcement.verified() else Validation.REJECT

    def _keep_mistimed(self, announcement: PeerAnnouncement, state: Freshness) -> Validation:
        """Keeps a record ignored for its time, to judge again if the clock is corrected, in
        its node's place (``MISTIMED_KEPT``): kept unchecked, each in a place of its own,
        forgeries (free to make, and unpenalised) pushed genuine records out. One no newer than
        what the node holds or keeps of its node is of no use and ignored unverified, as the
        book's replays are. Otherwise a bad signature is rejected, which costs the sender score
        as any forgery does: an honest peer passes on only records it verified, whatever its
        clock."""
        node_id = announcement.node_id
        kept = self._mistimed.get(node_id)
        if self.book.is_stale(announcement) or (
            kept is not None and kept.sequence >= announcement.sequence
        ):
            return Validation.IGNORE
        if not announcement.verified():
            return Validation.REJECT
        self._drop_mistimed(node_id)
        if len(self._mistimed) >= MISTIMED_KEPT:
            self._drop_mistimed(next(iter(self._mistimed)))
        self._mistimed[node_id] = announcement
        self._mistimed_ids[announcement.gossip_id] = node_id
        if state is Freshness.FROM_FUTURE:
            self._note_due(announcement)
        return Validation.IGNORE

    def _note_due(self, announcement: PeerAnnouncement) -> None:
        """A record kept from the future comes within the skew on this clock at this ``now``."""
        due = announcement.issued_at - MAX_CLOCK_SKEW_S - self.wall_clock_offset_s
        self._mistimed_due = min(self._mistimed_due, due)

    def _take_due(self, now: float) -> None:
        """Takes the records kept from the future that have come within the skew, as gossip
        would have taken them then (their signatures were checked before they were kept). A
        new link's catch-up no longer brings them again (``holds``), and a clock a little
        beyond the skew behind, never corrected, would otherwise take no fresh record ever."""
        self._mistimed_due = math.inf
        wall_now = now + self.wall_clock_offset_s
        for node_id, announcement in list(self._mistimed.items()):
            state = freshness(announcement, wall_now)
            if state is Freshness.FRESH:
                self._drop_mistimed(node_id)
                if self.on_announcement(announcement.encode(), now) is not None:
                    self.counters.inc("announce.came_due")
            elif state is Freshness.FROM_FUTURE:
                self._note_due(announcement)

    def _drop_mistimed(self, node_id: NodeId) -> None:
        kept = self._mistimed.pop(node_id, None)
        if kept is not None:
            del self._mistimed_ids[kept.gossip_id]

    def on_announcement(self, data: bytes, now: float) -> NodeId | None:
        """Stores a delivered announcement; returns the node it introduced, if new to us."""
        announcement = PeerAnnouncement.decode(data)
        node_id = announcement.node_id
        if node_id == self._identity.node_id:
            return None
        admission = self.book.accept(announcement, now)
        for gone in admission.dropped:
            self._forget(gone)
        if not admission.accepted:
            return None
        kept = self._mistimed.get(node_id)
        if kept is not None and kept.sequence <= announcement.sequence:
            self._drop_mistimed(node_id)  # of no use now: its place may serve another node
        self.directory.upsert(announcement.relay_info())
        return node_id

    def holds(self, gossip_id: bytes) -> bool:
        """Whether the book holds the announcement with this gossip id, or keeps it for a clock
        correction, or it is one of the node's own (its last or one it replaced lately,
        ``OWN_REPLACED_KEPT``): a catch-up offer of it is not worth pulling. The gossip seen
        cache forgets ids after minutes, the book keeps announcements for hours; without this,
        every link opened later would pull (9 kB each) up to ``CATCH_UP_ANNOUNCEMENTS`` records
        the node already has, a node with a wrong clock, which keeps its peers' latest records
        aside, all of them, only to ignore them again, and any node its own older record from
        each peer that had not taken its newest."""
        return (
            self.book.holds(gossip_id)
            or gossip_id in self._mistimed_ids
            or gossip_id in self._own_ids
        )

    def expire(self, now: float) -> None:
        """Drops the records whose time is over, and takes those kept from the future whose
        time has come (called at every timer of the node)."""
        for node_id in self.book.expire(now):
            self._forget(node_id)
        if now >= self._mistimed_due:
            self._take_due(now)

    def _forget(self, node_id: NodeId) -> None:
        """A node's announcement left the book: it is no relay of ours any more."""
        self.directory.remove(node_id)

    # --- exit callbacks ------------------------------------------------------------------

    def validate(self, topic: str, payload: bytes) -> bool:
        return topic == MessageType.TRANSACTION.value and 0 < len(payload) <= MAX_TRANSACTION_BYTES

    def answer(self, topic: str, payload: bytes) -> bytes | None:
        if topic != MessageType.SYNC_REQUEST.value or len(payload) % MESSAGE_ID_BYTES:
            return None
        count = len(payload) // MESSAGE_ID_BYTES
        if not 0 < count <= MAX_SYNC_IDS:
            return None
        parts: list[bytes] = []
        for i in range(count):
            mid = payload[i * MESSAGE_ID_BYTES : (i + 1) * MESSAGE_ID_BYTES]
            data = self.store.get(mid)
            if data is not None:
                parts += [mid, len(data).to_bytes(4, "big"), data]
        return b"".join(parts)


def announcement_id(encoded: bytes) -> bytes:
    """The gossip message id of a well-formed encoded announcement (the decoded record keeps
    it: catch-up would otherwise hash 9 kB records for every new link)."""
    return PeerAnnouncement.decode(encoded).gossip_id
