"""Receiving, forwarding, publishing and fanout."""

from __future__ import annotations

import pytest

from murmur.base.ids import NodeId
from murmur.overlay.gossip import Deliver, GossipRouter
from murmur.overlay.routing import PrivatePathUnavailable
from murmur.wire.gossip import MAX_MESSAGES_PER_RPC, Message, message_id

from .helpers import (
    TOPIC,
    connect,
    delivered,
    heartbeat,
    make_router,
    peer,
    rpc,
    sent,
    sent_messages,
)


def _meshed_router(n_peers: int = 8) -> tuple[GossipRouter, list[NodeId], list[NodeId]]:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    peers = [peer(i) for i in range(1, n_peers + 1)]
    connect(router, peers)
    heartbeat(router, 1.0)
    mesh = [p for p in peers if p in router.mesh_peers(TOPIC)]
    return router, peers, mesh


def test_received_message_is_delivered_and_forwarded_to_the_mesh_but_not_back() -> None:
    router, _, mesh = _meshed_router()
    source = mesh[0]
    router.receive_rpc(source, rpc(messages=[Message(TOPIC, b"block 1")]), 1.1)
    actions = router.drain_actions()
    assert delivered(actions) == [Deliver(TOPIC, message_id(TOPIC, b"block 1"), b"block 1", source)]
    assert sent_messages(actions) == {p: [b"block 1"] for p in mesh if p != source}


def test_a_duplicate_is_neither_delivered_nor_forwarded() -> None:
    router, peers, mesh = _meshed_router()
    data = rpc(messages=[Message(TOPIC, b"block 1")])
    router.receive_rpc(mesh[0], data, 1.1)
    router.drain_actions()
    router.receive_rpc(mesh[1], data, 1.2)
    router.receive_rpc(peers[-1], data, 1.3)
    assert router.drain_actions() == []
    assert router.counters.get("gossip.message.duplicate") == 2


def test_own_publish_is_delivered_locally_and_sent_to_the_mesh() -> None:
    router, _, mesh = _meshed_router()
    mid = router.publish(TOPIC, b"header", 1.5)
    assert mid == message_id(TOPIC, b"header")
    actions = router.drain_actions()
    assert delivered(actions) == [Deliver(TOPIC, mid, b"header", None)]
    assert sent_messages(actions) == {p: [b"header"] for p in mesh}
    assert router.publish(TOPIC, b"header", 1.6) == mid  # same bytes: same message, sent once
    assert router.drain_actions() == []


def test_publish_before_the_mesh_forms_still_reaches_topic_peers() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)  # no peers yet: an empty mesh until the next heartbeat
    connect(router, [peer(1), peer(2)])
    router.drain_actions()
    assert router.mesh_peers(TOPIC) == frozenset()
    router.publish(TOPIC, b"early", 0.5)
    assert set(sent_messages(router.drain_actions())) == {peer(1), peer(2)}


def test_messages_on_topics_we_do_not_subscribe_are_dropped() -> None:
    router, _, mesh = _meshed_router()
    router.receive_rpc(mesh[0], rpc(messages=[Message("scp_statement", b"x")]), 1.1)
    assert router.drain_actions() == []
    assert router.counters.get("gossip.message.unsubscribed") == 1


def test_fanout_publish_to_an_unsubscribed_topic() -> None:
    router = make_router()
    topic = "scp_statement"
    peers = [peer(i) for i in range(1, 11)]
    connect(router, peers, topic)
    router.drain_actions()
    router.publish(topic, b"vote", 0.5)
    actions = router.drain_actions()
    assert delivered(actions) == []
    first = set(sent_messages(actions))
    assert len(first) == 6
    router.publish(topic, b"vote 2", 0.7)  # the same fanout set is reused
    assert set(sent_messages(router.drain_actions())) == first
    assert router.status()["fanout"] == {topic: 6}
    heartbeat(router, 1.0)
    heartbeat(router, 61.0)  # 60 s after the last publish the fanout set is dropped
    assert router.status()["fanout"] == {}


def test_subscribing_turns_the_fanout_set_into_the_mesh() -> None:
    router = make_router()
    topic = "scp_statement"
    connect(router, [peer(i) for i in range(1, 11)], topic)
    router.publish(topic, b"vote", 0.5)
    fanout = set(sent_messages(router.drain_actions()))
    router.subscribe(topic, 0.6)
    grafted = {p for p, rpcs in sent(router.drain_actions()).items() if rpcs[0].graft}
    assert grafted == fanout
    assert router.status()["fanout"] == {}


@pytest.mark.parametrize("topic", ["transaction", "sync_request"])
def test_private_topics_are_refused(topic: str) -> None:
    router = make_router()
    connect(router, [peer(1)], topic)
    router.drain_actions()
    with pytest.raises(PrivatePathUnavailable, match="refusing to send it in the clear"):
        router.publish(topic, b"spend", 0.5)
    assert router.drain_actions() == []
    assert router.status()["seen"] == 0


def test_seen_cache_expiry_lets_a_message_through_again() -> None:
    router, _, mesh = _meshed_router()
    data = rpc(messages=[Message(TOPIC, b"old news")])
    router.receive_rpc(mesh[0], data, 1.1)
    router.drain_actions()
    heartbeat(router, 100.0)
    router.receive_rpc(mesh[0], data, 100.5)
    assert delivered(router.drain_actions()) == []
    heartbeat(router, 121.1)  # 120 s after it was first seen
    assert router.status()["seen"] == 0
    router.receive_rpc(mesh[0], data, 121.5)
    assert len(delivered(router.drain_actions())) == 1


def test_one_rpc_per_peer_per_drain_split_only_at_the_caps() -> None:
    router, peers, mesh = _meshed_router()
    (source, *_) = [p for p in peers if p not in mesh]
    n = MAX_MESSAGES_PER_RPC + 10
    for i in range(n):
        router.receive_rpc(source, rpc(messages=[Message(TOPIC, i.to_bytes(2, "big"))]), 1.1)
    router.publish(TOPIC, b"mine", 1.2)
    router.handle_timer(2.0)  # the heartbeat's IHAVE rides along too
    out = sent(router.drain_actions())
    for p in mesh:
        rpcs = out[p]
        assert [len(r.messages) for r in rpcs] == [MAX_MESSAGES_PER_RPC, 11]
    for p in peers:
        if p not in mesh and p in out:
            assert len(out[p]) == 1 and out[p][0].ihave
