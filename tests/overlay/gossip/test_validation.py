"""Validators, scores and malformed input: peer input costs the peer, never the node."""

from __future__ import annotations

import pytest

from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.overlay.gossip import GossipRouter, PenalizePeer, Validation
from murmur.wire.gossip import Graft, IHave, IWant, Message

from .helpers import (
    TOPIC,
    connect,
    delivered,
    heartbeat,
    make_router,
    peer,
    penalized,
    rpc,
    sent,
    sent_messages,
)


def _router_with_validator() -> tuple[GossipRouter, list[NodeId]]:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    router.set_validator(TOPIC, lambda data, now: data.startswith(b"ok"))
    peers = [peer(i) for i in range(1, 9)]
    connect(router, peers)
    heartbeat(router, 1.0)
    return router, peers


def test_invalid_message_is_not_delivered_not_forwarded_and_costs_score() -> None:
    router, peers = _router_with_validator()
    bad = peers[0]
    router.receive_rpc(bad, rpc(messages=[Message(TOPIC, b"forged")]), 1.1)
    assert router.drain_actions() == []
    assert router.counters.get("gossip.message.invalid") == 1
    assert router.score(bad) == -10.0
    router.receive_rpc(peers[1], rpc(messages=[Message(TOPIC, b"ok block")]), 1.2)
    actions = router.drain_actions()
    assert len(delivered(actions)) == 1
    assert set(sent_messages(actions)) == router.mesh_peers(TOPIC) - {peers[1]}
    heartbeat(router, 2.0)  # a negative score leaves the mesh
    assert bad not in router.mesh_peers(TOPIC)


def test_repeated_invalid_messages_graylist_the_sender() -> None:
    router, peers = _router_with_validator()
    bad = peers[0]
    for i in range(6):
        router.receive_rpc(bad, rpc(messages=[Message(TOPIC, b"bad %d" % i)]), 1.1)
    actions = router.drain_actions()
    assert penalized(actions) == [PenalizePeer(bad, "graylisted")]
    assert router.counters.get("gossip.message.invalid") == 6
    router.receive_rpc(bad, rpc(messages=[Message(TOPIC, b"ok now")]), 1.2)
    assert router.drain_actions() == []
    assert router.counters.get("gossip.rpc.ignored") == 1


def test_graylisted_peer_stays_graylisted_across_a_reconnect() -> None:
    router, peers = _router_with_validator()
    bad = peers[0]
    for i in range(6):
        router.receive_rpc(bad, rpc(messages=[Message(TOPIC, b"bad %d" % i)]), 1.1)
    router.remove_peer(bad, 1.2)
    router.drain_actions()
    router.add_peer(bad, 1.3)
    assert penalized(router.drain_actions()) == [PenalizePeer(bad, "graylisted")]


def test_fresh_identities_that_misbehave_less_cannot_wipe_a_graylisted_slate() -> None:
    """A graylisted peer leaves, and more fresh identities than the router keeps slates for
    connect and leave: some behave (a clean slate, not kept), some send an invalid message
    (a slate kept, but nearer neutral than the graylisted one). It comes back graylisted.
    Forgetting the least recently departed, it came back with a clean slate."""
    router, peers = _router_with_validator()
    bad = peers[0]
    for i in range(6):
        router.receive_rpc(bad, rpc(messages=[Message(TOPIC, b"bad %d" % i)]), 1.1)
    router.remove_peer(bad, 1.2)
    cap = router._config.max_retained_scores
    for i in range(2 * cap + 10):
        fresh = peer(1000 + i)
        connect(router, [fresh], now=1.3)
        if i % 2:
            router.receive_rpc(fresh, rpc(messages=[Message(TOPIC, b"bad %d" % i)]), 1.3)
        router.remove_peer(fresh, 1.3)
    assert router._scores.retained == cap
    router.drain_actions()
    router.add_peer(bad, 1.4)
    assert penalized(router.drain_actions()) == [PenalizePeer(bad, "graylisted")]


def test_validator_raising_remote_protocol_error_rejects() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)

    def strict(data: bytes, now: float) -> bool:
        raise RemoteProtocolError("bad_block", "unparseable")

    router.set_validator(TOPIC, strict)
    connect(router, [peer(1)])
    router.receive_rpc(peer(1), rpc(messages=[Message(TOPIC, b"x")]), 0.5)
    assert delivered(router.drain_actions()) == []
    assert router.counters.get("gossip.message.invalid") == 1


def test_own_message_failing_validation_is_refused() -> None:
    router, _ = _router_with_validator()
    with pytest.raises(LocalProtocolError):
        router.publish(TOPIC, b"not ok", 1.5)
    assert sent_messages(router.drain_actions()) == {}
    with pytest.raises(LocalProtocolError):
        router.set_validator("Bad Topic", bool)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x09", "bad_version"),
        (b"\x01\x00\x01\x01A\x00\x00\x00\x00", "bad_topic"),
        (b"\x01" + bytes(7), "trailing_data"),
    ],
)
def test_malformed_rpc_is_counted_penalized_and_the_peer_ignored(data: bytes, reason: str) -> None:
    router, peers = _router_with_validator()
    router.receive_rpc(peers[0], data, 1.1)
    actions = router.drain_actions()
    assert penalized(actions) == [PenalizePeer(peers[0], f"malformed_rpc:{reason}")]
    assert router.counters.get(f"gossip.malformed.{reason}") == 1
    assert peers[0] not in router.mesh_peers(TOPIC)
    router.receive_rpc(peers[0], rpc(messages=[Message(TOPIC, b"ok")]), 1.2)
    assert router.drain_actions() == []
    # nothing is queued for it any more, and the others are unaffected
    router.receive_rpc(peers[1], rpc(messages=[Message(TOPIC, b"ok 2")]), 1.3)
    actions = router.drain_actions()
    assert len(delivered(actions)) == 1 and peers[0] not in sent(actions)


def test_unknown_peer_input_is_dropped() -> None:
    router = make_router()
    router.receive_rpc(peer(5), b"\x00garbage", 0.0)
    assert router.drain_actions() == []
    assert router.counters.get("gossip.rpc.unknown_peer") == 1


def test_low_score_peers_get_no_gossip_service_and_cannot_graft() -> None:
    router, peers = _router_with_validator()
    (bad, *_) = [p for p in peers if p not in router.mesh_peers(TOPIC)]
    mid = router.publish(TOPIC, b"ok mine", 1.1)
    router.receive_rpc(bad, rpc(messages=[Message(TOPIC, b"x1"), Message(TOPIC, b"x2")]), 1.2)
    router.drain_actions()  # score -20 < gossip threshold -10
    router.receive_rpc(bad, rpc(iwant=[IWant((mid,))], ihave=[IHave(TOPIC, (bytes(20),))]), 1.3)
    assert router.drain_actions() == []
    assert router.counters.get("gossip.iwant.ignored_low_score") == 1
    assert router.counters.get("gossip.ihave.ignored_low_score") == 1
    router.receive_rpc(bad, rpc(graft=[Graft(TOPIC)]), 1.4)
    assert sent(router.drain_actions())[bad][0].prune
    assert router.counters.get("gossip.graft.refused") == 1
    assert bad not in router.mesh_peers(TOPIC)


def test_an_ignored_message_is_dropped_without_blaming_its_sender() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    router.set_validator(
        TOPIC, lambda data, now: Validation.IGNORE if data.startswith(b"old") else Validation.ACCEPT
    )
    peers = [peer(i) for i in range(1, 9)]
    connect(router, peers)
    heartbeat(router, 1.0)
    for i in range(10):  # more than would graylist a sender of invalid messages
        router.receive_rpc(peers[0], rpc(messages=[Message(TOPIC, b"old %d" % i)]), 1.1)
    assert router.drain_actions() == []
    assert router.counters.get("gossip.message.ignored") == 10
    assert router.counters.get("gossip.message.invalid") == 0
    assert router.score(peers[0]) == 0.0
    router.receive_rpc(peers[0], rpc(messages=[Message(TOPIC, b"new")]), 1.2)
    assert len(delivered(router.drain_actions())) == 1
    with pytest.raises(LocalProtocolError):  # nor may the node publish what it would ignore
        router.publish(TOPIC, b"old news", 1.3)
