"""Caps hold under a flood: memory and work per peer stay bounded."""

from __future__ import annotations

from murmur.overlay.gossip import GossipRouter
from murmur.wire.gossip import IHave, IWant, Message, Subscription

from .helpers import TOPIC, connect, heartbeat, make_router, peer, rpc, sent


def test_message_flood_keeps_every_cache_and_queue_bounded() -> None:
    router = make_router(
        seen_capacity=500,
        mcache_max_messages=200,
        mcache_max_bytes=300_000,
        max_outbox_bytes=300_000,
    )
    router.subscribe(TOPIC, 0.0)
    flooder = peer(100)
    connect(router, [*(peer(i) for i in range(1, 7)), flooder])
    heartbeat(router, 1.0)
    for burst in range(50):  # 3,200 distinct 2 KiB messages, never drained
        messages = [
            Message(TOPIC, burst.to_bytes(2, "big") + i.to_bytes(2, "big") + bytes(2044))
            for i in range(64)
        ]
        router.receive_rpc(flooder, rpc(messages=messages), 1.5)
    status = router.status()
    assert status["seen"] == 500
    assert status["mcache_messages"] <= 200 and status["mcache_bytes"] <= 300_000
    assert status["queued_bytes"] <= 7 * 300_000
    assert router.counters.get("gossip.outbox.full") > 0
    actions = router.drain_actions()
    assert len(actions) < 3200 + 7 * 3  # deliveries plus a few RPCs per peer
    assert router.status()["queued_bytes"] == 0


def test_peer_subscription_flood_is_capped() -> None:
    router = make_router(max_peer_topics=5)
    router.add_peer(peer(1), 0.0)
    router.receive_rpc(
        peer(1), rpc(subscriptions=[Subscription(f"t{i}", True) for i in range(64)]), 0.1
    )
    assert router.counters.get("gossip.subscription.peer_cap") == 59
    router.publish("t4", b"x", 0.2)  # the fifth topic was accepted...
    assert peer(1) in sent(router.drain_actions())
    router.publish("t5", b"x", 0.3)  # ...the sixth was not: the peer is not a "t5" peer
    assert router.drain_actions() == []


def _ihave_flood(router: GossipRouter, now: float, salt: int) -> int:
    """Ids asked of peer(1) after it offers 2 x 5 IHAVEs of 60 new ids each."""
    ihaves = [
        IHave(TOPIC, tuple(bytes([salt, k]) + i.to_bytes(18, "big") for i in range(60)))
        for k in range(5)
    ]
    router.receive_rpc(peer(1), rpc(ihave=ihaves), now)
    router.receive_rpc(peer(1), rpc(ihave=ihaves), now)
    return sum(
        len(w.message_ids) for r in sent(router.drain_actions()).get(peer(1), []) for w in r.iwant
    )


def test_ihave_flood_asks_for_a_bounded_number_of_ids_per_heartbeat() -> None:
    router = make_router(max_ihave_length=100, max_ihave_messages=3)
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1)])
    router.drain_actions()
    assert _ihave_flood(router, 0.5, 1) == 100
    heartbeat(router, 1.0)
    assert _ihave_flood(router, 1.5, 2) == 100  # the allowance is per heartbeat
    assert router.counters.get("gossip.ihave.flood") >= 2


def test_iwant_flood_is_served_a_bounded_number_of_times() -> None:
    router = make_router(max_iwant_replies=5)
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1)])
    ids = [router.publish(TOPIC, bytes([i]), 0.1) for i in range(10)]
    router.drain_actions()
    router.receive_rpc(peer(1), rpc(iwant=[IWant(tuple(ids))] * 4), 0.2)
    router.receive_rpc(peer(1), rpc(iwant=[IWant(tuple(ids))]), 0.3)
    served = [m for r in sent(router.drain_actions())[peer(1)] for m in r.messages]
    assert len(served) == 5 and len(set(served)) == 5
    assert router.counters.get("gossip.iwant.flood") == 2


def test_iwant_repeated_every_heartbeat_is_served_gossip_retransmission_times() -> None:
    """A 20-byte id must not buy the same large message again at every heartbeat: each peer
    gets a cached message at most ``gossip_retransmission`` times, another peer its own."""
    router = make_router(gossip_retransmission=3)
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1), peer(2)])
    mid = router.publish(TOPIC, bytes(100_000), 0.1)
    router.drain_actions()
    copies = 0
    for t in range(4):  # history_length = 5: the message stays cached throughout
        router.receive_rpc(peer(1), rpc(iwant=[IWant((mid,))]), t + 0.5)
        copies += len(sent(router.drain_actions()).get(peer(1), []))
        heartbeat(router, t + 1.0)
    assert copies == 3
    assert router.counters.get("gossip.iwant.retransmission_limit") == 1
    router.receive_rpc(peer(2), rpc(iwant=[IWant((mid,))]), 4.5)
    assert [m.data for r in sent(router.drain_actions())[peer(2)] for m in r.messages] == [
        bytes(100_000)
    ]


def test_fanout_topics_are_capped() -> None:
    router = make_router(max_fanout_topics=2)
    connect(router, [peer(1)], "a", "b", "c")
    for t, topic in enumerate(["a", "b", "c"]):
        router.publish(topic, b"x", float(t))
    fanout = router.status()["fanout"]
    assert fanout == {"b": 1, "c": 1}  # the stalest topic made room


def test_a_peer_that_reconnects_within_a_heartbeat_keeps_its_spent_ihave_allowance() -> None:
    """The allowance is per peer and heartbeat, as in gossipsub (``peerhave`` and ``iasked``,
    keyed by peer id and cleared at the heartbeat): a new link must not renew it, or each
    handshake would buy another ``max_ihave_length`` IWANTs and awaited promises."""
    router = make_router(max_ihave_length=100, max_ihave_messages=3)
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1)])
    router.drain_actions()
    assert _ihave_flood(router, 0.2, 1) == 100
    router.remove_peer(peer(1), 0.3)
    connect(router, [peer(1)], now=0.4)
    assert _ihave_flood(router, 0.5, 2) == 0
    heartbeat(router, 1.0)
    assert _ihave_flood(router, 1.5, 3) == 100


def test_a_peer_that_reconnects_within_a_heartbeat_keeps_its_spent_iwant_allowance() -> None:
    router = make_router(max_iwant_replies=5)
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1)])
    ids = [router.publish(TOPIC, bytes([i]), 0.1) for i in range(10)]
    router.drain_actions()
    router.receive_rpc(peer(1), rpc(iwant=[IWant(tuple(ids[:5]))]), 0.2)
    assert len(sent(router.drain_actions())[peer(1)][0].messages) == 5
    router.remove_peer(peer(1), 0.3)
    connect(router, [peer(1)], now=0.4)
    router.drain_actions()
    router.receive_rpc(peer(1), rpc(iwant=[IWant(tuple(ids[5:]))]), 0.5)
    assert sent(router.drain_actions()) == {}
    assert router.counters.get("gossip.iwant.flood") == 1
    heartbeat(router, 1.0)
    router.receive_rpc(peer(1), rpc(iwant=[IWant(tuple(ids[5:]))]), 1.5)
    assert len(sent(router.drain_actions())[peer(1)][0].messages) == 5


def test_only_the_latest_departed_peers_keep_their_spent_allowances() -> None:
    router = make_router(max_iwant_replies=1, max_retained_scores=1)
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1), peer(2)])
    ids = [router.publish(TOPIC, bytes([i]), 0.1) for i in range(3)]
    for p in (peer(1), peer(2)):
        router.receive_rpc(p, rpc(iwant=[IWant((ids[0],))]), 0.2)
        router.remove_peer(p, 0.3)  # peer(2) leaves last: peer(1)'s record makes room
    connect(router, [peer(1), peer(2)], now=0.4)
    router.drain_actions()
    for p in (peer(1), peer(2)):
        router.receive_rpc(p, rpc(iwant=[IWant((ids[1],))]), 0.5)
    assert set(sent(router.drain_actions())) == {peer(1)}
