"""Mesh maintenance: the heartbeat, GRAFT, PRUNE and backoff."""

from __future__ import annotations

import pytest

from murmur.base.errors import LocalProtocolError
from murmur.wire.gossip import Graft, Prune, Subscription

from .helpers import TOPIC, connect, heartbeat, make_router, mesh_of, peer, rpc, sent


def test_mesh_forms_to_d_within_bounds_with_20_peers() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    peers = [peer(i) for i in range(1, 21)]
    connect(router, peers)
    assert router.next_deadline() == 1.0
    actions = heartbeat(router, 1.0)
    grafted = {p for p, rpcs in sent(actions).items() for r in rpcs if r.graft}
    assert len(grafted) == 6 == mesh_of(router)
    for t in range(2, 12):
        heartbeat(router, float(t))
        assert 4 <= mesh_of(router) <= 12
    assert mesh_of(router) == 6
    assert router.next_deadline() == 12.0
    status = router.status()
    assert status["peers"] == 20 and status["topics"] == [TOPIC]


def test_subscribe_announces_to_every_peer_and_grafts_up_to_d() -> None:
    router = make_router()
    peers = [peer(i) for i in range(1, 9)]
    connect(router, peers)
    router.drain_actions()
    router.subscribe(TOPIC, 0.0)
    out = sent(router.drain_actions())
    assert set(out) == set(peers)
    for rpcs in out.values():
        assert len(rpcs) == 1  # subscription and GRAFT batched into one RPC
        assert rpcs[0].subscriptions == (Subscription(TOPIC, True),)
    assert sum(1 for rpcs in out.values() if rpcs[0].graft == (Graft(TOPIC),)) == 6
    assert mesh_of(router) == 6


def test_new_peer_learns_our_subscriptions() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    router.subscribe("scp_statement", 0.0)
    router.add_peer(peer(1), 0.0)
    (hello,) = sent(router.drain_actions())[peer(1)]
    assert {s.topic for s in hello.subscriptions} == {TOPIC, "scp_statement"}


def test_incoming_graft_joins_the_mesh() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1)])
    router.receive_rpc(peer(1), rpc(graft=[Graft(TOPIC)]), 0.1)
    assert mesh_of(router) == 1
    assert not any(r.prune for r in sent(router.drain_actions()).get(peer(1), []))


def test_graft_from_a_peer_not_subscribed_is_pruned() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    router.add_peer(peer(1), 0.0)
    router.receive_rpc(peer(1), rpc(graft=[Graft(TOPIC)]), 0.1)
    assert mesh_of(router) == 0
    (reply,) = sent(router.drain_actions())[peer(1)][-1:]
    assert reply.prune == (Prune(TOPIC, 60),)
    assert router.counters.get("gossip.graft.peer_not_subscribed") == 1


def test_graft_for_a_topic_we_do_not_subscribe_is_ignored() -> None:
    router = make_router()
    connect(router, [peer(1)])
    router.receive_rpc(peer(1), rpc(graft=[Graft(TOPIC)]), 0.1)
    assert router.counters.get("gossip.graft.unsubscribed_topic") == 1
    assert peer(1) not in sent(router.drain_actions())


def test_prune_removes_and_backoff_holds_until_it_expires() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1)])
    router.receive_rpc(peer(1), rpc(graft=[Graft(TOPIC)]), 0.1)
    router.receive_rpc(peer(1), rpc(prune=[Prune(TOPIC, 30)]), 0.5)
    assert mesh_of(router) == 0
    for t in range(1, 31):  # mesh below d_lo, but the only peer is backing off
        heartbeat(router, float(t))
        assert mesh_of(router) == 0, t
    actions = heartbeat(router, 31.0)
    assert mesh_of(router) == 1
    assert sent(actions)[peer(1)][0].graft == (Graft(TOPIC),)


def test_graft_during_backoff_is_refused_and_penalized() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1)])
    router.receive_rpc(peer(1), rpc(prune=[Prune(TOPIC, 0)]), 0.1)  # 0: our default backoff
    router.drain_actions()
    router.receive_rpc(peer(1), rpc(graft=[Graft(TOPIC)]), 59.0)
    assert mesh_of(router) == 0
    assert sent(router.drain_actions())[peer(1)][0].prune == (Prune(TOPIC, 60),)
    assert router.counters.get("gossip.graft.backoff_violation") == 1
    # the refusal restarted the backoff, so the peer is still out after the old one ended
    heartbeat(router, 61.0)
    assert mesh_of(router) == 0


def test_heartbeat_prunes_an_oversized_mesh_to_d() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    peers = [peer(i) for i in range(1, 14)]
    connect(router, peers)
    router.drain_actions()
    for p in peers:
        router.receive_rpc(p, rpc(graft=[Graft(TOPIC)]), 0.1)
    assert mesh_of(router) == 12  # the 13th GRAFT was refused at d_hi
    router.drain_actions()
    actions = heartbeat(router, 1.0)
    pruned = [p for p, rpcs in sent(actions).items() for r in rpcs if r.prune]
    assert mesh_of(router) == 6 and len(pruned) == 6


def test_peers_that_dial_in_cannot_take_every_mesh_slot() -> None:
    """Thirty sybils dial in and GRAFT at once: the mesh fills to d_hi with them, but the
    heartbeat grafts d_out peers this node dialled, and pruning keeps those."""
    router = make_router(d_out=2)
    router.subscribe(TOPIC, 0.0)
    chosen = [peer(1), peer(2), peer(3)]
    sybils = [peer(i) for i in range(100, 130)]
    connect(router, sybils)
    connect(router, chosen, outbound=True)
    for p in sybils:
        router.receive_rpc(p, rpc(graft=[Graft(TOPIC)]), 0.1)
    assert mesh_of(router) == 12 and not set(chosen) & router.mesh_peers(TOPIC)
    router.drain_actions()
    for t in range(1, 20):
        actions = heartbeat(router, float(t))
        assert len(set(chosen) & router.mesh_peers(TOPIC)) >= 2
        if t == 1:
            grafted = {p for p, rpcs in sent(actions).items() for r in rpcs if r.graft}
            assert len(grafted & set(chosen)) == 2
        for p in sybils:  # they GRAFT again whenever their backoff allows
            if p not in router.mesh_peers(TOPIC):
                router.receive_rpc(p, rpc(graft=[Graft(TOPIC)]), t + 0.5)
        router.drain_actions()


def test_pruning_an_oversized_mesh_keeps_d_out_outbound_peers() -> None:
    for seed in range(20):
        router = make_router(seed=seed, d_out=2)
        router.subscribe(TOPIC, 0.0)
        chosen = [peer(1), peer(2)]
        connect(router, chosen, outbound=True)
        others = [peer(i) for i in range(10, 20)]
        connect(router, others)
        router.drain_actions()
        for p in [*others, *chosen]:
            router.receive_rpc(p, rpc(graft=[Graft(TOPIC)]), 0.1)
        assert mesh_of(router) == 12
        heartbeat(router, 1.0)
        assert mesh_of(router) == 6 and set(chosen) <= router.mesh_peers(TOPIC)


def test_a_graft_at_d_hi_is_taken_only_from_an_outbound_peer() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1)], outbound=True)
    connect(router, [peer(i) for i in range(10, 23)])
    for i in range(10, 23):
        router.receive_rpc(peer(i), rpc(graft=[Graft(TOPIC)]), 0.1)
    assert mesh_of(router) == 12 and router.counters.get("gossip.graft.refused") == 1
    router.receive_rpc(peer(1), rpc(graft=[Graft(TOPIC)]), 0.2)
    assert mesh_of(router) == 13 and peer(1) in router.mesh_peers(TOPIC)


def test_unsubscribe_prunes_the_mesh_and_announces() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    peers = [peer(i) for i in range(1, 4)]
    connect(router, peers)
    heartbeat(router, 1.0)
    router.unsubscribe(TOPIC, 1.5)
    out = sent(router.drain_actions())
    for p in peers:
        (r,) = out[p]
        assert r.subscriptions == (Subscription(TOPIC, False),)
        assert r.prune == (Prune(TOPIC, 60),)
    assert router.status()["topics"] == []


def test_peer_leaving_or_unsubscribing_leaves_the_mesh() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1), peer(2)])
    heartbeat(router, 1.0)
    assert mesh_of(router) == 2
    router.remove_peer(peer(1), 1.5)
    router.remove_peer(peer(1), 1.5)  # already gone: ignored
    router.receive_rpc(peer(2), rpc(subscriptions=[Subscription(TOPIC, False)]), 1.6)
    assert mesh_of(router) == 0
    assert router.status()["peers"] == 1


def test_command_misuse_raises_local_errors() -> None:
    router = make_router(max_peers=1, max_topics=1)
    router.add_peer(peer(1), 0.0)
    with pytest.raises(LocalProtocolError):
        router.add_peer(peer(1), 0.0)
    with pytest.raises(LocalProtocolError):
        router.add_peer(peer(2), 0.0)
    with pytest.raises(LocalProtocolError):
        router.subscribe("Not A Topic", 0.0)
    router.subscribe(TOPIC, 0.0)
    router.subscribe(TOPIC, 0.0)  # idempotent
    with pytest.raises(LocalProtocolError):
        router.subscribe("scp_statement", 0.0)


def test_timer_before_the_deadline_does_nothing() -> None:
    router = make_router()
    router.handle_timer(0.5)
    assert router.counters.get("gossip.heartbeat") == 0
    router.handle_timer(10.0)  # late: one heartbeat, and the next is a full interval away
    assert router.counters.get("gossip.heartbeat") == 1
    assert router.next_deadline() == 11.0


def test_a_pruned_peer_that_reconnects_is_still_backing_off() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1)])
    router.receive_rpc(peer(1), rpc(prune=[Prune(TOPIC, 0)]), 0.1)  # our default backoff, 60 s
    router.remove_peer(peer(1), 1.0)
    connect(router, [peer(1)], now=2.0)
    router.drain_actions()
    router.receive_rpc(peer(1), rpc(graft=[Graft(TOPIC)]), 3.0)
    assert mesh_of(router) == 0
    assert router.counters.get("gossip.graft.backoff_violation") == 1
    assert sent(router.drain_actions())[peer(1)][0].prune == (Prune(TOPIC, 60),)


def test_a_departed_peers_long_backoff_is_cut_to_ours() -> None:
    router = make_router()
    router.subscribe(TOPIC, 0.0)
    connect(router, [peer(1)])
    router.receive_rpc(peer(1), rpc(prune=[Prune(TOPIC, 3600)]), 0.1)
    router.remove_peer(peer(1), 1.0)
    connect(router, [peer(1)], now=2.0)
    for t in range(3, 61):  # the hour it asked for was cut to 60 s when it left at t = 1
        heartbeat(router, float(t))
        assert mesh_of(router) == 0, t
    heartbeat(router, 62.0)
    assert mesh_of(router) == 1
