"""The link state machine driven directly, with a fake clock and a seeded RNG."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import LocalProtocolError
from murmur.crypto.aead import AeadAlgorithm
from murmur.crypto.identity import Identity
from murmur.link import channel
from murmur.link.connection import (
    HandshakeCompleted,
    LinkClosed,
    LinkConfig,
    LinkConnection,
    LinkState,
    MessageReceived,
    PongReceived,
)
from murmur.overlay.shaping import CELL_FRAME_PADDING_BYTES
from murmur.sim.rng import SeededRng
from murmur.wire.cells import CELL_BYTES
from murmur.wire.envelope import Channel, wrap
from murmur.wire.link import CELL_RECORD_BYTES, HELLO_BYTES, LINK_VERSION, encode_record
from tests.damage import damaged


def pair(
    alice: Identity, bob: Identity, *, expected=None, aead=AeadAlgorithm.CHACHA20_POLY1305
) -> tuple[LinkConnection, LinkConnection]:
    cfg = LinkConfig(aead=aead)
    a = LinkConnection(
        initiator=True,
        identity=alice,
        rng=SeededRng(1),
        now=0.0,
        config=cfg,
        expected_peer=bob.node_id if expected is None else expected,
    )
    b = LinkConnection(initiator=False, identity=bob, rng=SeededRng(2), now=0.0, config=cfg)
    return a, b


def shuttle(a: LinkConnection, b: LinkConnection, now: float = 0.0) -> None:
    for _ in range(4):
        b.receive_data(a.data_to_send(), now)
        a.receive_data(b.data_to_send(), now)


@pytest.mark.parametrize("aead", list(AeadAlgorithm))
def test_handshake_then_messages_both_ways(alice, bob, aead) -> None:
    a, b = pair(alice, bob, aead=aead)
    shuttle(a, b)
    assert a.state is b.state is LinkState.ESTABLISHED
    [ea] = a.drain_events()
    [eb] = b.drain_events()
    assert isinstance(ea, HandshakeCompleted) and ea.peer_id == bob.node_id
    assert isinstance(eb, HandshakeCompleted) and eb.peer_id == alice.node_id
    assert a.session_id == b.session_id
    a.send_message(b"to bob", 0.0, padding=100)
    b.send_message(b"to alice", 0.0)
    shuttle(a, b)
    assert b.drain_events() == [MessageReceived(b"to bob")]
    assert a.drain_events() == [MessageReceived(b"to alice")]


def test_initiator_rejects_wrong_responder(alice, bob) -> None:
    a, b = pair(alice, bob, expected=alice.node_id)
    shuttle(a, b)
    assert a.state is LinkState.CLOSED
    assert a.drain_events() == [LinkClosed("unexpected_peer", by_peer_error=True)]
    assert b.state is not LinkState.ESTABLISHED


def test_no_application_data_before_handshake(alice, bob) -> None:
    a, _ = pair(alice, bob)
    with pytest.raises(LocalProtocolError):
        a.send_message(b"too early", 0.0)


def test_byte_at_a_time_delivery(alice, bob) -> None:
    a, b = pair(alice, bob)
    for _ in range(3):
        for byte in a.data_to_send():
            b.receive_data(bytes([byte]), 0.0)
        for byte in b.data_to_send():
            a.receive_data(bytes([byte]), 0.0)
    assert a.state is b.state is LinkState.ESTABLISHED


def test_replayed_frame_closes_link(alice, bob) -> None:
    a, b = pair(alice, bob)
    shuttle(a, b)
    a.send_message(b"once", 0.0)
    record = a.data_to_send()
    b.receive_data(record, 0.0)
    b.receive_data(record, 0.0)
    events = b.drain_events()
    assert events[-1] == LinkClosed("crypto", by_peer_error=True)
    assert b.state is LinkState.CLOSED


def test_corrupted_length_header_fails_tag(alice, bob) -> None:
    a, b = pair(alice, bob)
    shuttle(a, b)
    a.send_message(b"payload" * 10, 0.0, padding=16)
    record = bytearray(a.data_to_send())
    (length,) = struct.unpack_from(">I", record)
    struct.pack_into(">I", record, 0, length - 8)
    b.receive_data(bytes(record), 0.0)
    assert b.drain_events()[-1].reason == "crypto"


def test_oversized_length_is_refused_before_buffering(alice, bob) -> None:
    _, b = pair(alice, bob)
    b.receive_data(struct.pack(">I", 2**31) + b"x" * 10, 0.0)
    assert b.drain_events() == [LinkClosed("bad_length", by_peer_error=True)]


def test_truncated_handshake_times_out(alice, bob) -> None:
    a, b = pair(alice, bob)
    b.receive_data(a.data_to_send()[:100], 0.0)
    assert b.next_deadline() == pytest.approx(10.0)
    b.handle_timer(9.9)
    assert b.state is LinkState.AWAIT_HELLO
    b.handle_timer(10.0)
    assert b.drain_events() == [LinkClosed("handshake_timeout", by_peer_error=False)]


def test_the_handshake_measures_a_first_rtt_on_both_ends(alice, bob) -> None:
    a, b = pair(alice, bob)  # a's hello leaves at 0.0
    b.receive_data(a.data_to_send(), 0.03)  # b's reply leaves at 0.03
    a.receive_data(b.data_to_send(), 0.07)
    b.receive_data(a.data_to_send(), 0.11)
    assert a.state is b.state is LinkState.ESTABLISHED
    assert a.rtt_s == pytest.approx(0.07) and b.rtt_s == pytest.approx(0.08)


def test_keepalive_measures_rtt_and_idle_link_closes(alice, bob) -> None:
    a, b = pair(alice, bob)
    shuttle(a, b)
    a.drain_events(), b.drain_events()
    assert a.next_deadline() == pytest.approx(15.0)
    a.handle_timer(15.0)
    b.receive_data(a.data_to_send(), 15.02)
    a.receive_data(b.data_to_send(), 15.05)
    [pong] = a.drain_events()
    assert isinstance(pong, PongReceived) and pong.rtt_s == pytest.approx(0.05)
    b.handle_timer(15.02 + 60.0)
    assert b.drain_events()[-1] == LinkClosed("idle_timeout", by_peer_error=False)


def test_ping_flood_closes_link(alice, bob) -> None:
    a, b = pair(alice, bob)
    shuttle(a, b)
    for _ in range(25):
        a.ping(1.0)
    b.receive_data(a.data_to_send(), 1.0)
    assert b.drain_events()[-1] == LinkClosed("ping_flood", by_peer_error=True)


def test_padding_flood_closes_link(alice, bob) -> None:
    """Frames the link consumes itself never reach the node's rate limiter: the link caps
    them, or a peer could make it open tiny records at line rate for ever."""
    a, b = pair(alice, bob)
    shuttle(a, b)
    b.drain_events()
    for _ in range(64):
        a.send_padding(0, 1.0)
    b.receive_data(a.data_to_send(), 1.0)
    assert b.drain_events() == [] and b.state is LinkState.ESTABLISHED
    a.send_padding(0, 1.0)
    b.receive_data(a.data_to_send(), 1.0)
    assert b.drain_events() == [LinkClosed("control_flood", by_peer_error=True)]


def test_a_peer_rekeying_at_every_frame_is_cut_off(alice, bob, monkeypatch) -> None:
    """A REKEY costs an HKDF and a new cipher for 25 bytes: the cheapest way to burn a core."""
    a, b = pair(alice, bob)
    shuttle(a, b)
    b.drain_events()
    monkeypatch.setattr(channel, "REKEY_AFTER_FRAMES", 1)
    for i in range(80):
        a.send_message(str(i).encode(), 1.0)
    b.receive_data(a.data_to_send(), 1.0)
    events = b.drain_events()
    assert events[-1] == LinkClosed("control_flood", by_peer_error=True)
    assert b.counters.get("rekeys_received") == 64


def test_the_control_frame_allowance_is_per_window(alice, bob) -> None:
    a, b = pair(alice, bob)
    shuttle(a, b)
    b.drain_events()
    for window in range(5):  # 60 padding frames in each 10 s window
        for _ in range(60):
            a.send_padding(0, window * 10.0)
        b.receive_data(a.data_to_send(), window * 10.0)
    assert b.state is LinkState.ESTABLISHED
    assert b.counters.get("padding_frames_received") == 300


def test_rekey_ratchets_both_sides(alice, bob, monkeypatch) -> None:
    monkeypatch.setattr(channel, "REKEY_AFTER_FRAMES", 5)
    a, b = pair(alice, bob)
    shuttle(a, b)
    b.drain_events()
    for i in range(23):
        a.send_message(str(i).encode(), 0.0)
    b.receive_data(a.data_to_send(), 0.0)
    assert [e.payload for e in b.drain_events()] == [str(i).encode() for i in range(23)]
    assert b.counters.get("rekeys_received") == 4
    assert a.counters.get("frames_sent.data") == 23


def test_padding_frames_are_dropped_and_counted(alice, bob) -> None:
    a, b = pair(alice, bob)
    shuttle(a, b)
    b.drain_events()
    a.send_padding(1000, 0.0)
    b.receive_data(a.data_to_send(), 0.0)
    assert b.drain_events() == []
    assert b.counters.get("padding_frames_received") == 1


@pytest.mark.parametrize("aead", list(AeadAlgorithm))
def test_a_cell_and_a_cell_sized_padding_frame_are_one_record_of_cell_record_bytes(
    alice, bob, aead
) -> None:
    """What link observers (the simulator's taps, the testnet's cover estimate) rely on."""
    a, b = pair(alice, bob, aead=aead)
    shuttle(a, b)
    a.send_message(wrap(Channel.CIRCUIT, bytes(CELL_BYTES)), 0.0)
    assert len(a.data_to_send()) == CELL_RECORD_BYTES
    a.send_padding(CELL_FRAME_PADDING_BYTES, 0.0)
    assert len(a.data_to_send()) == CELL_RECORD_BYTES


def test_close_is_seen_by_peer(alice, bob) -> None:
    a, b = pair(alice, bob)
    shuttle(a, b)
    b.drain_events()
    a.close(0.0, "shutdown")
    b.receive_data(a.data_to_send(), 0.0)
    assert b.drain_events() == [LinkClosed("peer_closed", by_peer_error=False)]


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=3000)
    | st.binary(max_size=HELLO_BYTES + 64).map(encode_record)
    | st.binary(min_size=HELLO_BYTES - 2, max_size=HELLO_BYTES - 2).map(
        lambda keys: encode_record(bytes([LINK_VERSION, AeadAlgorithm.CHACHA20_POLY1305]) + keys)
    )
)
def test_garbage_to_responder_never_raises(bob, garbage) -> None:
    """Random bytes; random bodies in a well-formed record; and a Hello with a valid header
    and random public keys. Random bytes alone almost never pass the record's length check,
    and random bodies almost never the version byte."""
    b = LinkConnection(initiator=False, identity=bob, rng=SeededRng(3), now=0.0)
    b.receive_data(garbage, 0.0)
    events = b.drain_events()
    assert all(isinstance(e, LinkClosed) and e.by_peer_error for e in events)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=600), cut=st.integers(min_value=0))
def test_garbage_after_handshake_never_raises(alice, bob, data, cut) -> None:
    a, b = pair(alice, bob)
    shuttle(a, b)
    b.drain_events()
    a.send_message(b"real", 0.0)
    real = a.data_to_send()
    b.receive_data(real[: cut % len(real)] + data, 0.0)
    for event in b.drain_events():
        assert isinstance(event, (MessageReceived, LinkClosed))


@settings(max_examples=100, deadline=None)
@given(flight=st.integers(0, 2), data=st.data())
def test_a_damaged_handshake_flight_never_completes_the_handshake(
    alice: Identity, bob: Identity, flight: int, data: st.DataObject
) -> None:
    """Hello, Reply or Auth with a defect: whoever reads it (and, for the Hello, both ends)
    closes for the peer's error or keeps waiting, never raises, and never completes."""
    a, b = pair(alice, bob)
    sender, receiver = a, b
    intact = True
    for index in range(3):
        record = sender.data_to_send()
        if index == flight:
            delivered = data.draw(damaged(st.just(record)))
            intact = delivered.startswith(record)  # the damage only added bytes after it
            receiver.receive_data(delivered, 0.0)
        else:
            receiver.receive_data(record, 0.0)
        sender, receiver = receiver, sender
    readers = {0: (a, b), 1: (a,), 2: (b,)}[flight]
    for link in (a, b):
        events = link.drain_events()
        if link in readers and not intact:
            assert not any(isinstance(e, HandshakeCompleted) for e in events)
        for event in events:
            closed_for_peer_error = isinstance(event, LinkClosed) and event.by_peer_error
            assert isinstance(event, HandshakeCompleted) or closed_for_peer_error


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(min_size=1, max_size=300), data=st.data())
def test_a_damaged_record_is_never_delivered(
    alice: Identity, bob: Identity, payload: bytes, data: st.DataObject
) -> None:
    a, b = pair(alice, bob)
    shuttle(a, b)
    b.drain_events()
    a.send_message(payload, 0.0, padding=data.draw(st.integers(0, 64)))
    record = a.data_to_send()
    delivered = data.draw(damaged(st.just(record)))
    b.receive_data(delivered, 0.0)
    for event in b.drain_events():
        if isinstance(event, MessageReceived):
            assert delivered.startswith(record) and event.payload == payload
        else:
            assert isinstance(event, LinkClosed) and event.by_peer_error
