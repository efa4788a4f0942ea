"""The Dandelion++ stem path driven directly: fake clock, seeded RNG, no links."""

from __future__ import annotations

import pytest

from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.overlay.stem import Fluff, NoStemPeer, SendStem, StemConfig, StemPath
from murmur.overlay.stem_graph import Role
from murmur.sim.rng import SeededRng
from murmur.wire.stem import StemMessage, encode_stem

TOPIC = "transaction"
OUT = [NodeId(bytes([0xA0 + i]) * 32) for i in range(3)]
IN = [NodeId(bytes([0xB0 + i]) * 32) for i in range(3)]


def _stem(seed: int = 1, *, outbound: list[NodeId] = OUT, **config: float) -> StemPath:
    path = StemPath(rng=SeededRng(seed), config=StemConfig(**config))  # type: ignore[arg-type]
    for peer in outbound:
        path.add_peer(peer, 0.0, outbound=True)
    for peer in IN:
        path.add_peer(peer, 0.0, outbound=False)
    return path


def _wire(data: bytes) -> bytes:
    return encode_stem(StemMessage(TOPIC, data))


def test_own_transaction_goes_to_one_outbound_peer_only() -> None:
    for seed in range(30):
        path = _stem(seed)
        mid = path.submit(TOPIC, b"tx %d" % seed, 0.0)
        (action,) = path.drain_actions()
        assert isinstance(action, SendStem)
        assert action.peer in OUT
        assert action.message.message_id == mid
        assert path.in_stempool(mid)


def test_no_outbound_peer_refuses_instead_of_fluffing_from_the_origin() -> None:
    path = _stem(outbound=[])
    with pytest.raises(NoStemPeer):
        path.submit(TOPIC, b"tx", 0.0)
    assert path.drain_actions() == []
    with pytest.raises(LocalProtocolError):
        _stem().submit("block_header", b"tx", 0.0)


def test_stem_relay_routes_each_inbound_edge_to_one_out_edge_for_the_epoch() -> None:
    path = _stem(fluff_probability=0.0)
    routes: dict[NodeId, set[NodeId]] = {peer: set() for peer in IN[:2]}
    for k in range(10):
        for peer in IN[:2]:
            path.receive_stem(peer, _wire(b"%s %d" % (peer[:1], k)), 1.0)
            (action,) = path.drain_actions()
            assert isinstance(action, SendStem)
            routes[peer].add(action.peer)
    assert all(len(edges) == 1 for edges in routes.values())
    first, second = (edges.pop() for edges in routes.values())
    assert first != second  # one-to-one: two inbound edges share no out-edge
    assert {first, second} == set(path.stem_peers) <= set(OUT)
    assert path.role is Role.STEM


def test_fluff_node_fluffs_into_gossip() -> None:
    path = _stem(fluff_probability=1.0)
    path.receive_stem(IN[0], _wire(b"tx"), 1.0)
    (action,) = path.drain_actions()
    assert action == Fluff(StemMessage(TOPIC, b"tx"))
    assert path.next_deadline() is None  # a fluffed transaction has no embargo


def test_embargo_fires_and_fluffs_when_gossip_never_shows_the_transaction() -> None:
    path = _stem(fluff_probability=0.0, embargo_mean_s=5.0)
    path.receive_stem(IN[0], _wire(b"dropped downstream"), 10.0)
    assert isinstance(path.drain_actions()[0], SendStem)
    deadline = path.next_deadline()
    assert deadline is not None and deadline > 10.0
    path.handle_timer(deadline - 1e-6)
    assert path.drain_actions() == []
    path.handle_timer(deadline)
    assert path.drain_actions() == [Fluff(StemMessage(TOPIC, b"dropped downstream"))]
    assert path.counters.get("fluffed.embargo") == 1
    assert path.next_deadline() is None


def test_gossip_sighting_cancels_the_embargo_and_later_stem_copies() -> None:
    path = _stem(fluff_probability=0.0)
    mid = path.submit(TOPIC, b"tx", 0.0)
    path.drain_actions()
    path.seen_in_gossip(mid)
    assert not path.in_stempool(mid)
    path.handle_timer(10_000.0)
    assert path.drain_actions() == []
    assert path.counters.get("embargo_cancelled") == 1
    path.receive_stem(IN[0], _wire(b"tx"), 1.0)
    assert path.drain_actions() == []
    assert path.counters.get("stem_known") == 1


def test_the_known_table_forgets_by_first_sighting_when_full() -> None:
    """Ids seen in gossip are kept up to ``known_capacity``; a second sighting does not renew
    one, and the one sighted first is forgotten first (its late stem copy then stems again)."""
    path = _stem(fluff_probability=0.0, known_capacity=2)
    first, second, third = (StemMessage(TOPIC, data).message_id for data in (b"a", b"b", b"c"))
    for mid in (first, second, first, third):
        path.seen_in_gossip(mid)
    path.receive_stem(IN[0], _wire(b"b"), 1.0)
    path.receive_stem(IN[0], _wire(b"c"), 1.0)
    assert path.counters.get("stem_known") == 2
    path.receive_stem(IN[0], _wire(b"a"), 1.0)
    assert path.counters.get("stem_known") == 2
    assert path.in_stempool(first)


def test_role_and_routes_are_drawn_per_epoch() -> None:
    path = _stem(7, fluff_probability=0.5, epoch_s=10.0)
    roles = []
    for epoch in range(40):
        outcomes = set()
        for k in range(3):
            path.receive_stem(IN[0], _wire(b"e%d k%d" % (epoch, k)), epoch * 10.0 + k)
            (action,) = path.drain_actions()
            outcomes.add(type(action))
        assert len(outcomes) == 1  # the role holds for the whole epoch
        roles.append(path.role)
    assert {Role.STEM, Role.FLUFF} == set(roles)


def test_peer_loss_repicks_the_stem_edge() -> None:
    path = _stem(fluff_probability=0.0)
    path.submit(TOPIC, b"first", 0.0)
    (first,) = path.drain_actions()
    assert isinstance(first, SendStem)
    path.remove_peer(first.peer, 1.0)
    assert first.peer not in path.stem_peers and len(path.stem_peers) == 2
    path.submit(TOPIC, b"second", 2.0)
    (second,) = path.drain_actions()
    assert isinstance(second, SendStem)
    assert second.peer in OUT and second.peer != first.peer


def test_the_stempool_is_bounded_and_fluffs_its_oldest_when_full() -> None:
    path = _stem(fluff_probability=0.0, stempool_capacity=8)  # a peer's share: 2
    senders = [NodeId(bytes([0xC0 + i]) * 32) for i in range(5)]
    for peer in senders:
        path.add_peer(peer, 0.0, outbound=False)
    for k in range(9):
        path.receive_stem(senders[k % 5], _wire(b"tx %d" % k), float(k))
    actions = path.drain_actions()
    assert Fluff(StemMessage(TOPIC, b"tx 0")) in actions
    assert sum(isinstance(a, SendStem) for a in actions) == 9
    assert path.counters.get("fluffed.stempool_full") == 1


def test_one_peer_holds_at_most_a_quarter_of_the_stempool_and_evicts_only_its_own() -> None:
    """A peer flooding junk stem transactions fluffs (early) only what it sent itself, not
    the node's own transaction nor other peers' stems."""
    path = _stem(fluff_probability=0.0, stempool_capacity=40)
    own = path.submit(TOPIC, b"own", 0.0)
    path.receive_stem(IN[1], _wire(b"honest"), 0.0)
    for k in range(25):
        path.receive_stem(IN[0], _wire(b"junk %d" % k), 1.0)
    fluffed = [a.message.data for a in path.drain_actions() if isinstance(a, Fluff)]
    assert fluffed == [b"junk %d" % k for k in range(15)]  # its 10 newest stay
    assert path.counters.get("fluffed.peer_share") == 15
    assert path.in_stempool(own)
    assert path.in_stempool(StemMessage(TOPIC, b"honest").message_id)
    big = _stem(fluff_probability=0.0, stempool_bytes=4000)  # a quarter: 1,000 bytes
    for k in range(3):
        big.receive_stem(IN[0], _wire(bytes([k]) * 400), 0.0)
    assert big.counters.get("fluffed.peer_share") == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (encode_stem(StemMessage("block_header", b"x")), "bad_topic"),
        (_wire(b"x") + b"\x00", "trailing_data"),
    ],
)
def test_hostile_bytes_raise_remote_protocol_error(data: bytes, reason: str) -> None:
    path = _stem()
    with pytest.raises(RemoteProtocolError) as err:
        path.receive_stem(IN[0], data, 0.0)
    assert err.value.reason == reason
    assert path.drain_actions() == []


def test_nothing_is_drawn_from_the_rng_until_the_stem_is_used() -> None:
    rng, twin = SeededRng(3), SeededRng(3)
    path = StemPath(rng=rng)
    for peer in OUT:
        path.add_peer(peer, 0.0, outbound=True)
    path.seen_in_gossip(b"\x01" * 20)
    path.handle_timer(1_000.0)
    path.remove_peer(OUT[0], 1_000.0)
    assert rng.random() == twin.random()


def test_a_transaction_bounced_back_by_its_successor_does_not_tell_origin_from_relay() -> None:
    # The successor S of node X on the stem sends the transaction back to X. If an origin
    # answered differently from a relay (a relay fluffing at once, the origin stemming on), S
    # would learn for certain whether X created the transaction: the one thing the stem hides.
    for seed in range(20):
        origin = _stem(seed, fluff_probability=0.0)
        origin.submit(TOPIC, b"tx", 0.0)
        (sent,) = origin.drain_actions()
        assert isinstance(sent, SendStem)
        relay = _stem(seed, fluff_probability=0.0)
        relay.receive_stem(IN[0], _wire(b"tx"), 0.0)
        (relayed,) = relay.drain_actions()
        assert isinstance(relayed, SendStem)
        for path, successor in ((origin, sent.peer), (relay, relayed.peer)):
            for now in (1.0, 2.0):
                path.receive_stem(successor, _wire(b"tx"), now)
                assert path.drain_actions() == []
            assert path.counters.get("stem_duplicate") == 2
            assert path.next_deadline() is not None  # its embargo still ends the stem


def test_a_stem_cycle_stops_after_one_lap_and_any_of_its_nodes_may_fluff() -> None:
    # Three stem nodes whose routes form a cycle: the transaction goes round once and is
    # dropped where it started; the first embargo to fire fluffs it, at whichever node drew it.
    fluffers = set()
    for seed in range(30):
        a, b, c = (NodeId(bytes([0xC0 + i]) * 32) for i in range(3))
        paths = {}
        for k, (me, nxt, prev) in enumerate(((a, b, c), (b, c, a), (c, a, b))):
            path = StemPath(rng=SeededRng(3 * seed + k), config=StemConfig(fluff_probability=0))
            path.add_peer(nxt, 0.0, outbound=True)
            path.add_peer(prev, 0.0, outbound=False)
            paths[me] = path
        paths[a].submit(TOPIC, b"cycle", 0.0)
        queue = [(a, action) for action in paths[a].drain_actions()]
        sends = 0
        while queue and sends < 100:
            sender, action = queue.pop(0)
            assert isinstance(action, SendStem)
            sends += 1
            paths[action.peer].receive_stem(sender, encode_stem(action.message), 1.0)
            queue += [
                (action.peer, next_action) for next_action in paths[action.peer].drain_actions()
            ]
        assert sends == 3
        deadlines = {me: path.next_deadline() for me, path in paths.items()}
        first = min(deadlines, key=lambda me: deadlines[me] or 0.0)
        paths[first].handle_timer(deadlines[first] or 0.0)
        assert paths[first].drain_actions() == [Fluff(StemMessage(TOPIC, b"cycle"))]
        fluffers.add(first)
    assert fluffers == {a, b, c}
