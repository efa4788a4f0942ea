"""Dandelion++ routing in the node: nodes wired in memory, fake clock, seeded RNG."""

from __future__ import annotations

import pytest

from murmur.overlay.stem import NoStemPeer, StemConfig
from murmur.wire.envelope import Channel, wrap
from murmur.wire.stem import StemMessage, encode_stem
from tests.node.test_node import Net

TOPIC = "transaction"
N = 8


def _ring(i: int) -> list[int]:
    """Every node dials two others, so every node has outbound peers (stem candidates)."""
    return [(i + 1) % N, (i + 3) % N]


def _tx_deliveries(net: Net, i: int, message_id: bytes) -> list:
    return [d for d in net.delivered[i] if d.topic == TOPIC and d.message_id == message_id]


def test_a_stemmed_transaction_reaches_every_node_and_not_from_its_origin_first() -> None:
    net = Net(N, peers_of=_ring)
    net.tick(5.0)
    sent = []
    for k in range(12):
        origin = (5 * k) % N
        node = net.nodes[origin]
        message_id = node.send_stem(TOPIC, f"tx {k}".encode(), net.now)
        sent.append((origin, message_id))
        net.run()
        net.tick(net.now + 1.0)
    net.tick(net.now + 300.0)  # a stem that looped (8 nodes, q = 0.1) waits for an embargo
    fluffs = 0
    published_own = [0] * N
    for origin, message_id in sent:
        origin_id = net.nodes[origin].node_id
        firsts = [_tx_deliveries(net, i, message_id) for i in range(N)]
        assert all(len(first) == 1 for first in firsts)  # delivered once, everywhere
        if firsts[origin][0].received_from is None:
            # Only its own embargo fluffs a transaction at its origin (any stem node holding
            # it is as likely to fire first); otherwise the origin learnt it from the mesh.
            published_own[origin] += 1
            continue
        for i, (first,) in enumerate(firsts):
            if i != origin and origin_id in net.nodes[i]._by_peer:
                assert first.received_from != origin_id, f"neighbour {i} of {origin}"
    for i, node in enumerate(net.nodes):
        counters = node.status(net.now)["counters"]
        assert counters.get("stem.fluffed.no_stem_peer", 0) == 0
        assert published_own[i] <= counters.get("stem.fluffed.embargo", 0)
        fluffs += counters.get("stem_fluffed", 0)
        assert node.stem.next_deadline() is None  # every embargo was cancelled by gossip
    assert fluffs == len(sent)


@pytest.mark.interpreted_only
def test_a_black_hole_on_the_stem_is_overcome_by_the_embargo() -> None:
    net = Net(N, peers_of=_ring, stem_config=StemConfig(embargo_mean_s=2.0))
    net.tick(5.0)
    origin = net.nodes[0]
    for node in net.nodes[1:]:
        node.stem.receive_stem = lambda peer, data, now: None  # type: ignore[method-assign]
    message_id = origin.send_stem(TOPIC, b"swallowed", net.now)
    net.run()
    assert all(_tx_deliveries(net, i, message_id) == [] for i in range(N))
    deadline = origin.next_deadline()
    assert deadline is not None
    net.tick(net.now + 60.0)
    assert origin.stem.counters.get("fluffed.embargo") == 1
    assert all(len(_tx_deliveries(net, i, message_id)) == 1 for i in range(N))


def test_only_peers_the_node_dialled_are_stem_edges() -> None:
    # Node 0 dials nobody; the others dial it: it has peers, but none it chose.
    net = Net(3, peers_of=lambda i: [0] if i else [])
    net.tick(3.0)
    assert len(net.nodes[0]._by_peer) == 2
    with pytest.raises(NoStemPeer):
        net.nodes[0].send_stem(TOPIC, b"tx", net.now)
    message_id = net.nodes[1].send_stem(TOPIC, b"tx", net.now)
    net.run()
    assert net.nodes[1].stem.stem_peers == (net.nodes[0].node_id,)
    assert len(_tx_deliveries(net, 2, message_id)) == 1


def test_lost_stem_peer_is_replaced_by_another_outbound_peer() -> None:
    net = Net(N, peers_of=_ring)
    net.tick(5.0)
    node = net.nodes[0]
    outbound = {net.nodes[j].node_id for j in _ring(0)}
    node.send_stem(TOPIC, b"first", net.now)
    net.run()
    assert set(node.stem.stem_peers) == outbound
    lost = node.stem.stem_peers[0]
    node.connection_lost(node._by_peer[lost].conn_id, net.now)
    assert node.stem.stem_peers == tuple(outbound - {lost})
    message_id = node.send_stem(TOPIC, b"second", net.now)
    net.run()
    net.tick(net.now + 300.0)  # a stem that looped waits for an embargo
    assert node.counters.get("drops.stem_without_link") == 0
    assert all(len(_tx_deliveries(net, i, message_id)) == 1 for i in range(1, N))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x0btransaction\x00\x00\x00\x00", "stem.bad_length"),
        (encode_stem(StemMessage("block_header", b"x")), "stem.bad_topic"),
        (b"\x0btrans", "stem.truncated"),
    ],
)
def test_a_malformed_stem_frame_bans_the_authenticated_peer(body: bytes, reason: str) -> None:
    net = Net(3)
    net.tick(3.0)
    victim, offender = net.nodes[0], net.nodes[1]
    offender_session = offender._by_peer[victim.node_id]
    offender_session.link.send_message(wrap(Channel.STEM, body), net.now)
    victim.data_received(
        victim._by_peer[offender.node_id].conn_id,
        offender_session.link.data_to_send(),
        net.now,
    )
    net.run()
    assert victim.counters.get(f"misbehaviour.{reason}") == 1
    assert victim._bans.is_banned(offender.node_id, net.now)
    assert net.nodes[2].node_id in victim._by_peer


def test_a_fluff_the_application_refuses_is_a_counted_drop_not_an_exception() -> None:
    net = Net(2, peers_of=lambda i: [0] if i else [], stem_config=StemConfig(fluff_probability=1))
    net.tick(3.0)
    relay, origin = net.nodes
    relay.gossip.set_validator(TOPIC, lambda data, now: False)
    origin.send_stem(TOPIC, b"invalid tx", net.now)
    net.run()
    assert relay.counters.get("drops.stem_fluff_refused") == 1
    assert origin.node_id in relay._by_peer  # the sender is not punished for the application
    assert net.delivered[0] == net.delivered[1] == []
