"""Signed peer announcements: round trip, forgery, replays, issue times, expiry, bounded book."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import RemoteProtocolError
from murmur.crypto.identity import SIGNATURE_BYTES, Identity
from murmur.overlay.announce import (
    DECODE_CACHE_ENTRIES,
    MAX_CLOCK_SKEW_S,
    MAX_TTL_S,
    Admission,
    AnnouncementBook,
    Freshness,
    PeerAnnouncement,
    freshness,
    keep_decoded,
    next_sequence,
    sign_announcement,
)
from murmur.overlay.circuits.onion_keys import OnionKeyPair
from murmur.overlay.circuits.selection import RATIO_SCALE, NatType, RelayCapacity
from murmur.overlay.routing import MessageType
from murmur.sim.rng import SeededRng
from murmur.wire.cells import RelayAddress
from murmur.wire.gossip import message_id
from tests.damage import damaged, refused_or_canonical

ALICE = Identity.from_seed(b"a" * 32)
MALLORY = Identity.from_seed(b"m" * 32)
KEYS = OnionKeyPair.generate(SeededRng(1)).public
CAPACITY = RelayCapacity(2_000, 0.9, NatType.OPEN, 0.2)
WALL = 1_700_000_000.0
"""A wall-clock time (Unix seconds) that the tests below date records at."""
WALL_MS = 1_700_000_000_000


def _announce(identity: Identity = ALICE, sequence: int = 1, ttl_s: int = 60) -> PeerAnnouncement:
    return sign_announcement(
        identity,
        address=RelayAddress("127.5.0.1", 7000),
        onion_keys=KEYS,
        capacity=CAPACITY,
        sequence=sequence,
        ttl_s=ttl_s,
    )


def test_a_decoded_record_is_shared_with_its_gossip_id_and_relay_info() -> None:
    data = _announce().encode()
    record = PeerAnnouncement.decode(data)
    assert PeerAnnouncement.decode(data[:1] + data[1:]) is record  # an equal copy
    assert record.gossip_id == message_id(MessageType.PEER_ANNOUNCEMENT.value, data)
    assert record.relay_info() is record.relay_info()
    assert record.relay_info().node_id == ALICE.node_id


def test_a_process_holding_more_records_than_the_cache_can_keep_them_all_decoded() -> None:
    """Decoding every record in turn, as each of many simulated nodes does, shares one copy of
    each once the cache is sized for them (a smaller one would miss every time)."""
    count = DECODE_CACHE_ENTRIES + 100
    keep_decoded(count)
    unsigned = _announce()
    encodings = [replace(unsigned, sequence=i).encode() for i in range(1, count + 1)]
    first = [PeerAnnouncement.decode(data) for data in encodings]
    assert all(PeerAnnouncement.decode(d) is r for d, r in zip(encodings, first, strict=True))


def _book(max_entries: int = 10_000) -> AnnouncementBook:
    """A book whose wall clock reads ``now``: sequence numbers of a few milliseconds date
    records at the epoch, so these tests see lifetimes measured from receipt."""
    return AnnouncementBook(wall_clock_offset_s=0.0, max_entries=max_entries)


def test_round_trip_and_signature() -> None:
    a = _announce()
    b = PeerAnnouncement.decode(a.encode())
    assert b == a and b.verified()
    assert b.node_id == ALICE.node_id
    assert b.relay_info().address.port == 7000


@pytest.mark.parametrize("index", [1, 2600, 2605, 4300, 4310, 4320, -1])
def test_any_altered_byte_breaks_the_signature_or_the_parse(index: int) -> None:
    data = bytearray(_announce().encode())
    data[index] ^= 0x01
    try:
        parsed = PeerAnnouncement.decode(bytes(data))
    except RemoteProtocolError:
        return
    assert not parsed.verified()


def test_someone_elses_key_cannot_sign_for_alice() -> None:
    forged = replace(_announce(MALLORY), public_key=ALICE.public_key)
    assert not PeerAnnouncement.decode(forged.encode()).verified()


def test_book_keeps_only_newer_and_expires_on_local_clock() -> None:
    book = _book()
    assert book.accept(_announce(sequence=5, ttl_s=60), now=100.0) == Admission(accepted=True)
    assert not book.accept(_announce(sequence=5), now=101.0).accepted
    assert not book.accept(_announce(sequence=4), now=101.0).accepted
    assert book.accept(_announce(sequence=6, ttl_s=60), now=110.0).accepted
    assert book.expire(169.9) == []
    assert book.expire(170.0) == [ALICE.node_id]
    assert len(book) == 0


def test_an_announcement_lives_from_its_issue_time_for_its_ttl_give_or_take_the_skew() -> None:
    record = _announce(sequence=WALL_MS, ttl_s=600)
    assert record.issued_at == WALL
    assert freshness(record, WALL) is Freshness.FRESH
    # The receiver's clock may be behind the signer's, or ahead of it, by up to the skew.
    assert freshness(record, WALL - MAX_CLOCK_SKEW_S) is Freshness.FRESH
    assert freshness(record, WALL - MAX_CLOCK_SKEW_S - 0.001) is Freshness.FROM_FUTURE
    assert freshness(record, WALL + 600 + MAX_CLOCK_SKEW_S - 0.001) is Freshness.FRESH
    assert freshness(record, WALL + 600 + MAX_CLOCK_SKEW_S) is Freshness.STALE


def test_the_sequence_is_the_issue_time_and_grows_even_when_the_clock_steps_back() -> None:
    assert next_sequence(0, WALL) == WALL_MS
    assert next_sequence(WALL_MS, WALL + 2.5) == WALL_MS + 2_500
    assert next_sequence(WALL_MS, WALL) == WALL_MS + 1  # twice in one millisecond
    assert next_sequence(WALL_MS + 2_500, WALL - 3_600) == WALL_MS + 2_501  # clock set back


def test_a_replay_after_expiry_is_refused_and_none_outlives_the_original() -> None:
    """Replayed once the book forgot the node, a recorded announcement is taken back only
    until the original's end of life (its issue time + ttl, plus the skew), and then never."""
    book = AnnouncementBook(wall_clock_offset_s=WALL)  # now 0 reads WALL
    record = _announce(sequence=WALL_MS, ttl_s=600)
    assert book.accept(record, now=0.0).accepted
    assert book.expire(600.0) == [ALICE.node_id]  # receipt + ttl
    assert book.accept(record, now=700.0).accepted  # within the skew of its end
    assert book.expire(1_199.9) == []
    assert book.expire(1_200.0) == [ALICE.node_id]  # issued + ttl + skew, not 700 + ttl
    assert not book.accept(record, now=1_200.0).accepted
    assert not book.accept(record, now=90_000.0).accepted
    assert len(book) == 0


def test_the_book_refuses_records_issued_further_ahead_than_the_skew() -> None:
    book = AnnouncementBook(wall_clock_offset_s=WALL)
    ahead = _announce(sequence=WALL_MS + round(MAX_CLOCK_SKEW_S * 1000) + 1, ttl_s=600)
    assert not book.accept(ahead, now=0.0).accepted
    assert book.accept(ahead, now=0.001).accepted  # now just within it
    assert book.expire(600.0) == []  # its receipt + ttl comes first: at 600.001
    assert book.expire(600.001) == [ALICE.node_id]


def test_book_expires_each_entry_when_due_and_not_before() -> None:
    book = _book()
    people = [Identity.from_seed(bytes([i]) * 32) for i in range(4)]
    for i, who in enumerate(people):
        book.accept(_announce(who, ttl_s=10 * (i + 1)), now=0.0)
    book.accept(_announce(people[0], sequence=9, ttl_s=100), now=5.0)  # renewed: due at 105
    assert book.expire(19.9) == []
    assert book.expire(20.0) == [people[1].node_id]
    assert book.expire(40.0) == [people[2].node_id, people[3].node_id]
    assert book.expire(104.9) == []
    assert book.expire(105.0) == [people[0].node_id]
    assert len(book) == 0


def test_the_book_holds_by_gossip_id_only_the_record_it_keeps_of_each_node() -> None:
    """The id index follows the entries: a replaced, expired or dropped record is no longer
    held (a catch-up offer of it is pulled again), the one that replaced it is."""
    book = _book(max_entries=2)
    bob, carol = (Identity.from_seed(bytes([i]) * 32) for i in (30, 31))
    first, second = _announce(sequence=1, ttl_s=60), _announce(sequence=2, ttl_s=60)
    book.accept(first, now=0.0)
    assert book.holds(first.gossip_id)
    assert not book.accept(first, now=1.0).accepted
    assert book.holds(first.gossip_id)  # a refused replay leaves the held record be
    book.accept(second, now=10.0)
    assert book.holds(second.gossip_id) and not book.holds(first.gossip_id)
    of_bob, of_carol = _announce(bob, ttl_s=30), _announce(carol, ttl_s=60)
    book.accept(of_bob, now=20.0)
    assert book.accept(of_carol, now=20.0).dropped == (ALICE.node_id,)
    assert not book.holds(second.gossip_id) and book.holds(of_carol.gossip_id)
    assert book.expire(50.0) == [bob.node_id]
    assert not book.holds(of_bob.gossip_id) and book.holds(of_carol.gossip_id)
    book.accept(first, now=51.0)  # forgotten, so taken back (still fresh on this clock)
    assert book.holds(first.gossip_id)


def test_a_full_book_names_what_it_dropped_to_make_room() -> None:
    book = _book(max_entries=3)
    people = [Identity.from_seed(bytes([i]) * 32) for i in range(6)]
    admissions = [
        book.accept(_announce(who, ttl_s=10 + i), now=0.0) for i, who in enumerate(people)
    ]
    assert len(book) == 3
    # Each newcomer to the full book pushed out the entry received longest ago.
    assert [a.dropped for a in admissions] == [(), (), (), *((p.node_id,) for p in people[:3])]
    # Expired entries make the room first, and are named too.
    late = Identity.from_seed(b"\x09" * 32)
    admission = book.accept(_announce(late, ttl_s=100), now=14.0)
    assert admission == Admission(accepted=True, dropped=(people[3].node_id, people[4].node_id))
    assert {a.node_id for a in book.all()} == {people[5].node_id, late.node_id}


def test_a_full_book_does_not_keep_entries_for_claiming_a_long_lifetime() -> None:
    """A sybil's announcement claiming a day must not outstay honest ones (three hours,
    renewed hourly): in a full book, what was received longest ago, or renewed least
    recently, makes room."""
    book = _book(max_entries=3)
    sybil, alice, bob, carol = (Identity.from_seed(bytes([i]) * 32) for i in range(10, 14))
    book.accept(_announce(sybil, ttl_s=MAX_TTL_S), now=0.0)
    book.accept(_announce(alice, ttl_s=10_800), now=10.0)
    book.accept(_announce(bob, ttl_s=10_800), now=20.0)
    assert book.accept(_announce(carol, ttl_s=10_800), now=30.0).dropped == (sybil.node_id,)
    # Alice renews: Bob is now the one heard from longest ago.
    book.accept(_announce(alice, sequence=2, ttl_s=10_800), now=40.0)
    late = Identity.from_seed(b"\x20" * 32)
    assert book.accept(_announce(late, ttl_s=10_800), now=50.0).dropped == (bob.node_id,)
    assert {a.node_id for a in book.all()} == {alice.node_id, carol.node_id, late.node_id}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=9000))
def test_garbage_only_raises_remote_errors(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        PeerAnnouncement.decode(data)


_ratios = st.integers(0, RATIO_SCALE).map(lambda n: n / RATIO_SCALE)
_addresses = st.builds(
    RelayAddress,
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str),
    st.integers(1, 0xFFFF),
)
announcements = st.builds(
    PeerAnnouncement,
    public_key=st.just(ALICE.public_key),
    address=_addresses,
    onion_keys=st.just(KEYS),
    capacity=st.builds(
        RelayCapacity, st.integers(0, 2**32 - 1), _ratios, st.sampled_from(NatType), _ratios
    ),
    sequence=st.integers(0, 2**64 - 1),
    ttl_s=st.integers(1, MAX_TTL_S),
    signature=st.just(bytes(SIGNATURE_BYTES)),
)
"""Every field with a structure varies; the opaque keys and signature are fixed bytes."""


@settings(max_examples=200, deadline=None)
@given(announcements)
def test_any_announcement_reads_back_from_its_encoding(announcement: PeerAnnouncement) -> None:
    decoded = PeerAnnouncement.decode(announcement.encode())
    assert decoded == announcement
    assert decoded.node_id == announcement.node_id


_SIGNED = [
    sign_announcement(
        ALICE, address=RelayAddress(host, 7000), onion_keys=KEYS, capacity=CAPACITY, sequence=1
    ).encode()
    for host in ("127.5.0.1", "2001:db8::9")
]


@settings(max_examples=300, deadline=None)
@given(damaged(st.sampled_from(_SIGNED)))
def test_a_damaged_announcement_is_refused_or_fails_its_signature(data: bytes) -> None:
    parsed = refused_or_canonical(PeerAnnouncement.decode, PeerAnnouncement.encode, data)
    if parsed is not None:
        assert parsed.verified() == (data in _SIGNED)
