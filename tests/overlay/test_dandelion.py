from __future__ import annotations

import contextlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.overlay.dandelion import (
    Dandelion,
    DandelionConfig,
    StemTx,
    decode_message,
    encode_message,
)
from murmur.overlay.diffusion import RelayTx, Transaction, TxAccepted
from murmur.overlay.stem_graph import Role
from murmur.sim.rng import SeededRng
from tests.damage import damaged, refused_or_canonical

from .baseline_helpers import sends

STEM_ONLY = DandelionConfig(fluff_probability=0.0)


def make(
    *,
    outbound: Sequence[str],
    inbound: Sequence[str] = (),
    config: DandelionConfig = STEM_ONLY,
    seed: int = 1,
    stem_peers: list[str] | None = None,
) -> Dandelion[str]:
    node: Dandelion[str] = Dandelion(
        rng=SeededRng(seed), now=0.0, config=config, stem_peers=stem_peers
    )
    for peer in outbound:
        node.add_peer(peer, 0.0, outbound=True)
    for peer in inbound:
        node.add_peer(peer, 0.0, outbound=False)
    return node


def tx(i: int) -> Transaction:
    return Transaction(f"tx-{i}".encode())


def stem_target(node: Dandelion[str], sender: str, transaction: Transaction) -> str:
    node.receive_message(sender, StemTx(transaction), 1.0)
    (out,) = sends(node.drain_actions())
    assert isinstance(out.message, StemTx) and out.delay_s == 0.0
    return out.peer


def test_stem_edges_are_two_of_the_outbound_peers_only() -> None:
    for seed in range(20):
        node = make(outbound=["o1", "o2", "o3", "o4"], inbound=["i1", "i2"], seed=seed)
        stem = node.stem_peers
        assert len(stem) == 2 and set(stem) <= {"o1", "o2", "o3", "o4"}
    chosen = {make(outbound=["o1", "o2", "o3", "o4"], seed=s).stem_peers for s in range(40)}
    assert len({p for pair in chosen for p in pair}) == 4  # not always the first peers added


def test_forwarding_is_one_to_one_and_stable_within_an_epoch() -> None:
    node = make(outbound=["o1", "o2"], inbound=["i1", "i2"])
    first = {sender: stem_target(node, sender, tx(k)) for k, sender in enumerate(["i1", "i2"])}
    assert set(first.values()) == {"o1", "o2"}  # each inbound edge gets its own outbound edge
    assert {sender: node.route_for(sender) for sender in first} == first
    for k in range(2, 22):
        sender = ("i1", "i2")[k % 2]
        assert stem_target(node, sender, tx(k)) == first[sender]


def test_more_inbound_than_outbound_edges_fill_outbound_edges_evenly() -> None:
    inbound = ["i1", "i2", "i3", "i4"]
    node = make(outbound=["o1", "o2"], inbound=inbound)
    targets = [stem_target(node, sender, tx(k)) for k, sender in enumerate(inbound)]
    assert sorted(targets) == ["o1", "o1", "o2", "o2"]


def test_own_transactions_use_one_fixed_edge_per_epoch() -> None:
    node = make(outbound=["o1", "o2", "o3"])
    edges = set()
    for k in range(10):
        node.submit(tx(k), 0.0)
        (out,) = sends(node.drain_actions())
        edges.add(out.peer)
    assert edges == {node.own_edge()}


def test_a_new_epoch_redraws_the_routing() -> None:
    config = DandelionConfig(fluff_probability=0.0, epoch_s=10.0, embargo_mean_s=1e6)
    node = make(outbound=["o1", "o2", "o3", "o4"], inbound=["i1"], config=config, seed=3)
    seen = set()
    for epoch in range(12):
        now = 10.0 * epoch + 1.0
        node.handle_timer(now)
        node.receive_message("i1", StemTx(tx(epoch)), now)
        (out,) = sends(node.drain_actions())
        seen.add(out.peer)
        assert node.next_deadline() is not None
    assert len(seen) > 1


def test_fluff_role_is_drawn_with_probability_q() -> None:
    config = DandelionConfig(fluff_probability=0.25, epoch_s=1.0)
    node = make(outbound=["o1", "o2"], config=config, seed=9)
    roles = []
    for epoch in range(1, 2001):
        node.handle_timer(float(epoch))
        roles.append(node.role)
    share = roles.count(Role.FLUFF) / len(roles)
    assert 0.22 < share < 0.28


def test_fluff_node_diffuses_a_stem_transaction_to_every_peer() -> None:
    node = make(
        outbound=["o1", "o2"], inbound=["i1"], config=DandelionConfig(fluff_probability=1.0)
    )
    assert node.role is Role.FLUFF
    node.receive_message("i1", StemTx(tx(1)), 1.0)
    actions = node.drain_actions()
    assert TxAccepted(tx(1)) in actions
    out = sends(actions)
    assert {s.peer for s in out} == {"o1", "o2", "i1"}  # the predecessor too, to end its embargo
    assert all(isinstance(s.message, RelayTx) for s in out)


def test_stem_node_keeps_the_transaction_out_of_its_mempool() -> None:
    node = make(outbound=["o1", "o2"], inbound=["i1"])
    node.receive_message("i1", StemTx(tx(1)), 1.0)
    assert not any(isinstance(a, TxAccepted) for a in node.drain_actions())
    assert node.in_stempool(tx(1).tx_id) and not node.has_seen(tx(1).tx_id)


def test_embargo_fail_safe_diffuses_when_the_stem_is_black_holed() -> None:
    node = make(outbound=["o1", "o2"], inbound=["i1"])
    node.submit(tx(1), 0.0)
    node.drain_actions()
    deadline = node.next_deadline()
    assert deadline is not None and deadline < 600.0  # the embargo, before the epoch ends
    node.handle_timer(deadline - 1e-6)
    assert node.drain_actions() == []
    node.handle_timer(deadline)
    actions = node.drain_actions()
    assert TxAccepted(tx(1)) in actions
    assert {s.peer for s in sends(actions)} == {"o1", "o2", "i1"}
    assert node.counters.get("embargo_fired") == 1


def test_seeing_the_fluff_cancels_the_embargo() -> None:
    node = make(outbound=["o1", "o2"], inbound=["i1"])
    node.receive_message("i1", StemTx(tx(1)), 1.0)
    node.drain_actions()
    deadline = node.next_deadline()
    assert deadline is not None
    node.receive_message("o1", RelayTx(tx(1)), 2.0)
    relayed = sends(node.drain_actions())
    assert {s.peer for s in relayed} == {"o2", "i1"}
    node.handle_timer(deadline)
    assert node.drain_actions() == []
    assert node.counters.get("embargo_cancelled") == 1
    assert node.counters.get("embargo_fired") == 0


def test_stem_duplicates_are_dropped() -> None:
    node = make(outbound=["o1", "o2"], inbound=["i1", "i2"])
    node.receive_message("i1", StemTx(tx(1)), 1.0)
    node.drain_actions()
    node.receive_message("i2", StemTx(tx(1)), 1.5)
    assert node.drain_actions() == []
    assert node.counters.get("stem_duplicate") == 1


def test_exact_stem_graph_from_the_caller() -> None:
    node = make(outbound=["o1", "o2", "o3"], inbound=["i1"], stem_peers=["i1", "o3"])
    assert set(node.stem_peers) == {"i1", "o3"}
    node.remove_peer("o3", 5.0)
    assert node.stem_peers == ("i1",)


def test_a_lost_stem_edge_is_replaced_by_another_outbound_peer() -> None:
    node = make(outbound=["o1", "o2", "o3"])
    lost = node.stem_peers[0]
    node.remove_peer(lost, 1.0)
    assert len(node.stem_peers) == 2 and lost not in node.stem_peers


def test_without_stem_peers_a_transaction_is_diffused() -> None:
    node = make(outbound=[], inbound=["i1"])
    node.submit(tx(1), 0.0)
    assert TxAccepted(tx(1)) in node.drain_actions()
    assert node.counters.get("no_stem_peer") == 1


def test_stempool_is_bounded() -> None:
    config = DandelionConfig(fluff_probability=0.0, stempool_capacity=2)
    node = make(outbound=["o1"], inbound=["i1"], config=config)
    for k in range(3):
        node.receive_message("i1", StemTx(tx(k)), 1.0)
    assert not node.in_stempool(tx(0).tx_id) and node.has_seen(tx(0).tx_id)
    assert node.counters.get("stempool_full") == 1


def test_config_is_validated() -> None:
    with pytest.raises(LocalProtocolError):
        DandelionConfig(fluff_probability=1.5)
    with pytest.raises(LocalProtocolError):
        DandelionConfig(stem_out_degree=0)


@given(st.binary(min_size=1, max_size=1000), st.booleans())
def test_wire_round_trip(body: bytes, stem: bool) -> None:
    message = StemTx(Transaction(body)) if stem else RelayTx(Transaction(body))
    encoded = encode_message(message)
    assert decode_message(encoded) == message
    assert len(encoded) == message.wire_size


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_garbage_in_only_remote_protocol_error_out(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_message(data)


_messages = st.builds(
    lambda body, stem: StemTx(Transaction(body)) if stem else RelayTx(Transaction(body)),
    st.binary(min_size=1, max_size=300),
    st.booleans(),
)


@settings(max_examples=300)
@given(damaged(_messages.map(encode_message)))
def test_damaged_message_raises_only_remote_protocol_error(data: bytes) -> None:
    refused_or_canonical(decode_message, encode_message, data)


def test_hostile_bytes_become_a_drop_and_a_counter() -> None:
    node = make(outbound=["o1"], inbound=["i1"])
    node.receive_bytes("i1", b"\x02\x00\x00", 0.0)
    assert node.drain_actions() == []
    assert node.counters.get("dropped_truncated") == 1
    node.receive_bytes("i1", encode_message(StemTx(tx(1))), 0.0)
    assert [s.peer for s in sends(node.drain_actions())] == ["o1"]
