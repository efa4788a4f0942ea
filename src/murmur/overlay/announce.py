"""Signed peer announcements: how a node tells the network where it is and how to use it.

Theory of operation. Every node periodically publishes, on the fast-path ``peer_announcement``
topic, one self-signed record: its ML-DSA-87 public key (so the node id is checkable), the
address peers dial, its current onion public keys (for circuit key agreement), its relay
capacity, a sequence number and a time-to-live. Receivers verify the signature in the gossip
validator, before anything is forwarded, so forged or altered announcements die at the first
honest hop. A newer sequence number from the same node replaces an older one; equal or older
ones are replays and are dropped.

The sequence number is the record's issue time, in Unix milliseconds (libp2p's signed peer
records do the same): each signing takes ``max(previous + 1, wall-clock ms now)``
(:func:`next_sequence`), so it grows with every signing, even if the clock steps back, and
across restarts as the wall clock moves on. A record is alive from its issue time to its issue
time plus ``ttl_s`` on the receiver's wall clock, give or take ``MAX_CLOCK_SKEW_S``
(:func:`freshness`); one past that, or issued further ahead than that, is ignored (never
penalised: an honest relay with a bad clock must not get its peers banned). So a recorded
announcement replayed after receivers forgot its node (expired or evicted) is not taken back,
and a dead relay or a retired onion key leaves every directory at most ``ttl_s +
MAX_CLOCK_SKEW_S`` after the issue time of its last record. The book keeps a record until the
earlier of its receive time plus ``ttl_s`` (the receiver's own clock) and that end of life
converted to the receiver's monotonic clock. The core reads no clock: it is given an offset
(wall time = ``now`` + offset), which the runtime measures and corrects when the wall clock
steps, and the simulator and the tests fix. docs/protocol/announcements.md has the layout and
the rules.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from murmur.base.errors import RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.crypto.identity import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Identity,
    node_id_of,
    verify,
)
from murmur.overlay.circuits.onion_keys import ONION_PUBLIC_KEYS_BYTES, OnionPublicKeys
from murmur.overlay.circuits.selection import RelayCapacity, RelayInfo
from murmur.overlay.routing import MessageType
from murmur.wire.cells import RelayAddress
from murmur.wire.codec import Reader, Writer
from murmur.wire.gossip import message_id

ANNOUNCEMENT_VERSION = 1
SIGNATURE_CONTEXT = b"murmur-announce-v1"
CAPACITY_BYTES = 9
MAX_TTL_S = 86_400
DEFAULT_TTL_S = 10_800
"""Three hours; a node re-announces every hour (a third of it). Onion keys rotate weekly, so a
re-announcement mostly says "still here", and an hour is the refresh Tor's consensus has. Each
record costs every node about 9.5 kB (lazily forwarded; measured at 1,000 nodes), so upkeep per
node is that times n per interval: 2.6 kB/s at n = 1,000 hourly, where ten-minute
re-announcements cost 15.8 kB/s lazily and about 75 kB/s pushed. A relay that leaves stays
listed up to three hours; circuits through it fail to build and are built elsewhere, ahead of
use (the pool is kept full in the background)."""
MAX_CLOCK_SKEW_S = 600.0
"""How far (seconds) a receiver's wall clock may disagree with a signer's before the signer's
records are ignored: ten minutes. NTP keeps synchronised hosts within a second, but hosts
without it (a VM restored from a snapshot, a machine without a battery-backed clock, a
home router) drift by minutes, and an honest relay whose records are ignored is unusable as
one. The price of the margin is that a replay or a retired onion key can outlive its signer's
intended lifetime by this much: 10 minutes beside the 3-hour lifetime (``DEFAULT_TTL_S``) and
the 1-day grace of a rotated onion key, so a dead relay still leaves directories promptly."""
DECODE_CACHE_ENTRIES = 2_048
"""Decoded announcements kept for reuse (~18 MB at most; bad input is never cached)."""


class Freshness(enum.Enum):
    """Where an announcement's lifetime stands on a receiver's wall clock."""

    FRESH = "fresh"
    STALE = "stale"
    """Its issue time plus ``ttl_s`` is more than ``MAX_CLOCK_SKEW_S`` in the past: a replay,
    or a record from a node whose clock is far behind."""
    FROM_FUTURE = "from_future"
    """Issued more than ``MAX_CLOCK_SKEW_S`` ahead: a node whose clock is far ahead."""


@dataclass(frozen=True, slots=True)
class PeerAnnouncement:
    public_key: bytes = field(repr=False)
    address: RelayAddress
    onion_keys: OnionPublicKeys
    capacity: RelayCapacity
    sequence: int
    ttl_s: int
    signature: bytes = field(repr=False, default=b"")
    node_id: NodeId = field(init=False, repr=False, compare=False)
    _encoded: bytes = field(init=False, repr=False, compare=False, default=b"")
    """The encoding, kept once made: a node hands its stored announcements to every new peer,
    and hashing the 2.6 kB key or re-encoding each time dominated large simulations."""
    _verified: bool | None = field(init=False, repr=False, compare=False, default=None)
    _relay_info: RelayInfo | None = field(init=False, repr=False, compare=False, default=None)
    """Made once, like ``_gossip_id``: every node holding this record holds this one object
    (in the simulator, a thousand nodes share one decoded announcement)."""
    _gossip_id: bytes = field(init=False, repr=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        object.__setattr__(self, "node_id", node_id_of(self.public_key))

    def signed_part(self) -> bytes:
        w = Writer().push_u8(ANNOUNCEMENT_VERSION).push_bytes(self.public_key)
        self.address.push(w)
        return (
            w.push_bytes(self.onion_keys.encode())
            .push_bytes(self.capacity.encode())
            .push_u64(self.sequence)
            .push_u32(self.ttl_s)
            .getvalue()
        )

    def encode(self) -> bytes:
        if not self._encoded:
            object.__setattr__(self, "_encoded", self.signed_part() + self.signature)
        return self._encoded

    @classmethod
    def decode(cls, data: bytes) -> PeerAnnouncement:
        """Decodes (memoised: the same announcement reaches a node from several peers, and in
        the simulator every node holds the same records; decoded announcements are immutable,
        so sharing one object is safe)."""
        return _decode(bytes(data))

    @classmethod
    def _parse(cls, data: bytes) -> PeerAnnouncement:
        r = Reader(data)
        version = r.pull_u8()
        if version != ANNOUNCEMENT_VERSION:
            raise RemoteProtocolError("bad_version", f"announcement version {version}")
        public_key = r.pull_bytes(PUBLIC_KEY_BYTES)
        address = RelayAddress.pull(r)
        try:
            onion_keys = OnionPublicKeys.decode(r.pull_bytes(ONION_PUBLIC_KEYS_BYTES))
        except ValueError:
            raise RemoteProtocolError("bad_announcement", "onion keys") from None
        capacity = RelayCapacity.decode(r.pull_bytes(CAPACITY_BYTES))
        sequence, ttl_s = r.pull_u64(), r.pull_u32()
        if not 0 < ttl_s <= MAX_TTL_S:
            raise RemoteProtocolError("bad_announcement", f"ttl {ttl_s}")
        signature = r.pull_bytes(SIGNATURE_BYTES)
        r.expect_end()
        announcement = cls(public_key, address, onion_keys, capacity, sequence, ttl_s, signature)
        object.__setattr__(announcement, "_encoded", data)
        return announcement

    def verified(self) -> bool:
        if self._verified is None:
            ok = verify(self.public_key, self.signature, self.signed_part(), SIGNATURE_CONTEXT)
            object.__setattr__(self, "_verified", ok)
        return bool(self._verified)

    @property
    def gossip_id(self) -> bytes:
        """The gossip message id of this record's encoding (a hash of 9 kB: kept once made)."""
        if not self._gossip_id:
            gossip_id = message_id(MessageType.PEER_ANNOUNCEMENT.value, self.encode())
            object.__setattr__(self, "_gossip_id", gossip_id)
        return self._gossip_id

    def relay_info(self) -> RelayInfo:
        info = self._relay_info
        if info is None:
            info = RelayInfo(self.node_id, self.address, self.onion_keys, self.capacity)
            object.__setattr__(self, "_relay_info", info)
        return info

    @property
    def issued_at(self) -> float:
        """Wall-clock issue time, Unix seconds (the sequence number is in milliseconds)."""
        return self.sequence / 1000

    @property
    def ends_at(self) -> float:
        """Wall-clock end of life, Unix seconds, with the receiver's allowance for skew."""
        return self.issued_at + self.ttl_s + MAX_CLOCK_SKEW_S


def freshness(announcement: PeerAnnouncement, wall_now: float) -> Freshness:
    """Whether ``announcement`` is alive at ``wall_now`` (Unix seconds, the receiver's clock)."""
    if announcement.ends_at <= wall_now:
        return Freshness.STALE
    if announcement.issued_at > wall_now + MAX_CLOCK_SKEW_S:
        return Freshness.FROM_FUTURE
    return Freshness.FRESH


def next_sequence(previous: int, wall_now: float) -> int:
    """The sequence number to sign at ``wall_now`` (Unix seconds) after ``previous``: the issue
    time in milliseconds, or one more than the previous one if the clock stepped back."""
    return max(previous + 1, math.floor(wall_now * 1000))


_decode = functools.lru_cache(maxsize=DECODE_CACHE_ENTRIES)(PeerAnnouncement._parse)


def keep_decoded(entries: int) -> None:
    """Keep at least ``entries`` decoded announcements (emptying the cache once).

    For a process hosting many nodes (the simulator): where it holds more records than
    ``DECODE_CACHE_ENTRIES`` and each node decodes all of them in turn, a smaller cache misses
    every time, and each node keeps its own decoded copy (9 kB a record and node)."""
    global _decode
    if entries > (_decode.cache_info().maxsize or 0):
        _decode = functools.lru_cache(maxsize=entries)(PeerAnnouncement._parse)


def sign_announcement(
    identity: Identity,
    *,
    address: RelayAddress,
    onion_keys: OnionPublicKeys,
    capacity: RelayCapacity,
    sequence: int,
    ttl_s: int = DEFAULT_TTL_S,
) -> PeerAnnouncement:
    unsigned = PeerAnnouncement(identity.public_key, address, onion_keys, capacity, sequence, ttl_s)
    signature = identity.sign(unsigned.signed_part(), SIGNATURE_CONTEXT)
    return PeerAnnouncement(
        identity.public_key, address, onion_keys, capacity, sequence, ttl_s, signature
    )


@dataclass(slots=True)
class _Entry:
    announcement: PeerAnnouncement
    expires_at: float


@dataclass(frozen=True, slots=True)
class Admission:
    """What :meth:`AnnouncementBook.accept` did with an announcement."""

    accepted: bool
    """Stored: it was newer than what the book held of its node."""
    dropped: tuple[NodeId, ...] = ()
    """Nodes whose announcements left the book to make room for it (expired or, in a full
    book, the one received longest ago): whatever the node keeps beside the book about them
    (its relay directory) must go too."""


class AnnouncementBook:
    """The newest verified announcement of every node heard of, bounded and expiring.

    Kept in the order received (a renewal moves to the end). A full book makes room for a new
    node by dropping the entry received longest ago, not the one due to expire first: the
    lifetime is the author's choice (up to ``MAX_TTL_S``), so that rule kept every sybil that
    claimed a day and had honest nodes (three hours, renewed hourly) push each other out. It
    does not stop a flood of fresh identities (free to make): more new nodes an hour than the
    book holds still push every honest one out until they renew.

    ``wall_clock_offset_s`` turns the monotonic ``now`` the book is called with into wall-clock
    time (``now + offset``), which an announcement's issue time is measured on.
    """

    def __init__(self, *, wall_clock_offset_s: float, max_entries: int = 10_000) -> None:
        self._entries: dict[NodeId, _Entry] = {}
        self._ids: dict[bytes, NodeId] = {}
        """The gossip id of every announcement held → its node (:meth:`holds`). Kept here,
        where entries come and go, rather than beside the book with its inverse: in a
        simulation every node holds every record, and each map cost about 40 bytes a record.
        Not a set: sets grow fourfold and cost 50-70 bytes an entry to a dict's 30-40."""
        self.wall_clock_offset_s = wall_clock_offset_s
        """Set anew when the node's wall clock is corrected (``PrivatePath.set_wall_clock``)."""
        self._max_entries = max_entries
        self.keep: Callable[[NodeId], bool] = lambda node_id: False
        """Nodes whose announcement a full book does not drop for a newcomer (the node's
        entry guards: a flood of fresh identities must not push them out, which would make
        the node draw a new guard from a directory full of those identities)."""
        self._expiry_due = math.inf
        """No entry expires before this (a lower bound): the node calls :meth:`expire` on every
        timer, and scanning a thousand entries each time was a simulator hot spot."""

    def __len__(self) -> int:
        return len(self._entries)

    def accept(self, announcement: PeerAnnouncement, now: float) -> Admission:
        """Stores a verified announcement if it is alive (:func:`freshness`) and newer than the
        one held (not replays and old ones), making room in a full book. It is kept until the
        earlier of ``now + ttl_s`` and its end of life on this clock, so a replay cannot
        outlive the original."""
        node_id = announcement.node_id
        entry = self._entries.get(node_id)
        if entry is not None and entry.announcement.sequence >= announcement.sequence:
            return Admission(accepted=False)
        if freshness(announcement, now + self.wall_clock_offset_s) is not Freshness.FRESH:
            return Admission(accepted=False)
        dropped: list[NodeId] = []
        if entry is None and len(self._entries) >= self._max_entries:
            dropped = self.expire(now)
            if len(self._entries) >= self._max_entries:
                keep = self.keep
                oldest = next((k for k in self._entries if not keep(k)), next(iter(self._entries)))
                self._remove(oldest)
                dropped.append(oldest)
        expires_at = min(now + announcement.ttl_s, announcement.ends_at - self.wall_clock_offset_s)
        if entry is not None:
            self._remove(node_id)  # to the end: the book stays in the order received
        self._entries[node_id] = _Entry(announcement, expires_at)
        self._ids[announcement.gossip_id] = node_id
        self._expiry_due = min(self._expiry_due, expires_at)
        return Admission(accepted=True, dropped=tuple(dropped))

    def _remove(self, node_id: NodeId) -> None:
        del self._ids[self._entries.pop(node_id).announcement.gossip_id]

    def holds(self, gossip_id: bytes) -> bool:
        """Whether the announcement with this gossip id is the one held of its node."""
        return gossip_id in self._ids

    def is_stale(self, announcement: PeerAnnouncement) -> bool:
        entry = self._entries.get(announcement.node_id)
        return entry is not None and entry.announcement.sequence >= announcement.sequence

    def expire(self, now: float) -> list[NodeId]:
        if now < self._expiry_due:
            return []
        gone = [k for k, e in self._entries.items() if e.expires_at <= now]
        for node_id in gone:
            self._remove(node_id)
        self._expiry_due = min((e.expires_at for e in self._entries.values()), default=math.inf)
        return gone

    def get(self, node_id: NodeId) -> PeerAnnouncement | None:
        entry = self._entries.get(node_id)
        return None if entry is None else entry.announcement

    def all(self) -> list[PeerAnnouncement]:
        return [e.announcement for e in self._entries.values()]
