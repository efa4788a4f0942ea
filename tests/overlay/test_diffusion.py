from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.overlay.diffusion import (
    Broadcast,
    Diffusion,
    RelayTx,
    Transaction,
    TxAccepted,
    decode_message,
    encode_message,
)
from murmur.sim.rng import SeededRng
from tests.damage import damaged, refused_or_canonical

from .baseline_helpers import sends


def make(peers: list[str], *, seed: int = 1, mean_s: float = 2.0) -> Diffusion[str]:
    node: Diffusion[str] = Diffusion(rng=SeededRng(seed), relay_delay_mean_s=mean_s)
    for peer in peers:
        node.add_peer(peer, 0.0)
    return node


TX = Transaction(b"tx-body")


def test_relays_a_new_transaction_to_every_neighbour_but_the_sender() -> None:
    node = make(["a", "b", "c", "d"])
    node.receive_message("b", RelayTx(TX), 1.0)
    actions = node.drain_actions()
    assert actions[0] == TxAccepted(TX)
    out = sends(actions)
    assert [s.peer for s in out] == ["a", "c", "d"]
    assert all(s.message == RelayTx(TX) and s.delay_s > 0.0 for s in out)
    assert len({s.delay_s for s in out}) == 3  # independent delays
    assert node.counters.get("tx_relayed") == 1


def test_a_relay_is_one_broadcast_with_the_delays_drawn_in_peer_order() -> None:
    node = make(["a", "b", "c", "d"], seed=7, mean_s=2.0)
    node.receive_message("c", RelayTx(TX), 1.0)
    reference = SeededRng(7)
    expected = [reference.expovariate(0.5) for _ in range(3)]
    assert node.drain_actions() == [
        TxAccepted(TX),
        Broadcast(RelayTx(TX), ["a", "b", "d"], expected),
    ]


def test_a_node_without_other_peers_accepts_and_sends_nothing() -> None:
    node = make(["a"])
    node.receive_message("a", RelayTx(TX), 1.0)
    assert node.drain_actions() == [TxAccepted(TX)]


def test_duplicates_and_unknown_peers_are_dropped_without_actions() -> None:
    node = make(["a", "b"])
    node.receive_message("a", RelayTx(TX), 1.0)
    node.drain_actions()
    node.receive_message("b", RelayTx(TX), 2.0)
    node.receive_message("zed", RelayTx(Transaction(b"other")), 2.0)
    assert node.drain_actions() == []
    assert node.counters.get("tx_duplicate") == 1
    assert node.counters.get("dropped_unknown_peer") == 1


def test_own_transaction_goes_to_every_neighbour_once() -> None:
    node = make(["a", "b"])
    node.submit(TX, 0.0)
    assert [s.peer for s in sends(node.drain_actions())] == ["a", "b"]
    node.submit(TX, 1.0)
    assert node.drain_actions() == []
    assert node.counters.get("tx_known") == 1


def test_relay_delays_are_exponential_with_the_configured_mean() -> None:
    node = make([f"p{i}" for i in range(4000)], mean_s=3.0)
    node.submit(TX, 0.0)
    delays = [s.delay_s for s in sends(node.drain_actions())]
    mean = sum(delays) / len(delays)
    assert 2.85 < mean < 3.15
    # Exponential: about 1 - 1/e of the draws fall below the mean.
    below = sum(d < 3.0 for d in delays) / len(delays)
    assert 0.60 < below < 0.66


def test_seen_set_is_bounded_and_forgets_the_oldest() -> None:
    node: Diffusion[str] = Diffusion(rng=SeededRng(1), seen_capacity=2)
    txs = [Transaction(bytes([i])) for i in range(3)]
    for tx in txs:
        node.submit(tx, 0.0)
    assert not node.has_seen(txs[0].tx_id)
    assert node.has_seen(txs[1].tx_id) and node.has_seen(txs[2].tx_id)


def test_no_timers() -> None:
    node = make(["a"])
    node.handle_timer(5.0)
    assert node.next_deadline() is None
    assert node.drain_actions() == []


def test_transaction_id_is_the_hash_of_the_body_and_size_is_bounded() -> None:
    assert Transaction(b"x").tx_id != Transaction(b"y").tx_id
    assert len(TX.tx_id) == 32
    with pytest.raises(LocalProtocolError):
        Transaction(b"")


def test_wire_size_counts_header_and_body() -> None:
    assert RelayTx(TX).wire_size == len(encode_message(RelayTx(TX)))


@given(st.binary(min_size=1, max_size=2000))
def test_wire_round_trip(body: bytes) -> None:
    message = RelayTx(Transaction(body))
    assert decode_message(encode_message(message)) == message


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_garbage_in_only_remote_protocol_error_out(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_message(data)


_messages = st.binary(min_size=1, max_size=300).map(lambda body: RelayTx(Transaction(body)))


@settings(max_examples=300)
@given(damaged(_messages.map(encode_message)))
def test_damaged_message_raises_only_remote_protocol_error(data: bytes) -> None:
    refused_or_canonical(decode_message, encode_message, data)


def test_hostile_bytes_become_a_drop_and_a_counter() -> None:
    node = make(["a", "b"])
    node.receive_bytes("a", b"\x01\x00\x00\x00\x09short", 0.0)
    node.receive_bytes("a", b"\x07", 0.0)
    node.receive_bytes("a", encode_message(RelayTx(TX)) + b"!", 0.0)
    assert node.drain_actions() == []
    assert node.counters.get("dropped_truncated") == 1
    assert node.counters.get("dropped_unknown_type") == 1
    assert node.counters.get("dropped_trailing_data") == 1
    node.receive_bytes("a", encode_message(RelayTx(TX)), 0.0)
    assert [s.peer for s in sends(node.drain_actions())] == ["b"]
