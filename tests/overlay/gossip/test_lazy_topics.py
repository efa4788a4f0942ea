"""Lazy topics: relays offer ids to the mesh, send on IWANT, and an IWANT is a promise."""

from __future__ import annotations

from typing import Any

from murmur.overlay.gossip import GossipRouter
from murmur.wire.gossip import IHave, IWant, Message, message_id

from .helpers import TOPIC, connect, delivered, heartbeat, make_router, peer, penalized, rpc, sent

DATA = b"announcement" + bytes(500)
MID = message_id(TOPIC, DATA)


def lazy_router(**config: Any) -> GossipRouter:
    router = make_router(lazy_topics=frozenset({TOPIC}), **config)
    router.subscribe(TOPIC, 0.0)
    return router


def test_a_relay_offers_a_lazy_message_to_its_mesh_at_the_heartbeat_and_sends_on_iwant() -> None:
    router = lazy_router()
    connect(router, [peer(i) for i in range(1, 7)])
    heartbeat(router, 1.0)
    mesh = router.mesh_peers(TOPIC)
    source = next(iter(mesh))
    router.receive_rpc(source, rpc(messages=[Message(TOPIC, DATA)]), 1.1)
    actions = router.drain_actions()
    assert [d.message_id for d in delivered(actions)] == [MID]
    assert sent(actions) == {}  # nothing pushed in full
    out = sent(heartbeat(router, 2.0))
    offered = {p for p, rpcs in out.items() if any(IHave(TOPIC, (MID,)) in r.ihave for r in rpcs)}
    assert offered == mesh - {source}
    asker = next(iter(offered))
    router.receive_rpc(asker, rpc(iwant=[IWant((MID,))]), 2.1)
    (reply,) = sent(router.drain_actions())[asker]
    assert reply.messages == (Message(TOPIC, DATA),)


def test_ids_arriving_between_heartbeats_leave_as_one_ihave_per_peer() -> None:
    router = lazy_router()
    connect(router, [peer(i) for i in range(1, 7)])
    heartbeat(router, 1.0)
    source = next(iter(router.mesh_peers(TOPIC)))
    bodies = [b"record %d" % i for i in range(25)]
    for i, body in enumerate(bodies):  # one drain each, as a node drains after every input
        router.receive_rpc(source, rpc(messages=[Message(TOPIC, body)]), 1.0 + i / 100)
        router.drain_actions()
    out = sent(heartbeat(router, 2.0))
    for p in router.mesh_peers(TOPIC) - {source}:
        (ihave,) = [i for r in out[p] for i in r.ihave]
        assert ihave.message_ids == tuple(message_id(TOPIC, b) for b in bodies)
    assert not any(r.ihave for r in sent(heartbeat(router, 3.0)).get(source, []))


def test_own_lazy_messages_are_still_pushed_to_the_mesh() -> None:
    router = lazy_router()
    connect(router, [peer(i) for i in range(1, 7)])
    heartbeat(router, 1.0)
    router.publish(TOPIC, DATA, 1.5)
    out = sent(router.drain_actions())
    assert set(out) == router.mesh_peers(TOPIC)
    assert all(rpcs[0].messages == (Message(TOPIC, DATA),) for rpcs in out.values())


def test_an_id_offered_by_several_peers_is_asked_of_one_until_the_promise_lapses() -> None:
    router = lazy_router(iwant_followup_s=3.0)
    a, b, c = peer(1), peer(2), peer(3)
    connect(router, [a, b, c])
    offer = rpc(ihave=[IHave(TOPIC, (MID,))])
    router.receive_rpc(a, offer, 0.1)
    assert sent(router.drain_actions())[a][0].iwant == (IWant((MID,)),)
    router.receive_rpc(b, offer, 0.2)
    router.receive_rpc(c, offer, 0.3)
    assert sent(router.drain_actions()) == {}
    for t in (1.0, 2.0, 3.0):  # the promise runs to 3.1
        assert not any(r.iwant for rpcs in sent(heartbeat(router, t)).values() for r in rpcs)
    out = sent(heartbeat(router, 4.0))  # lapsed: the next offerer is asked
    assert [p for p, rpcs in out.items() if any(r.iwant for r in rpcs)] == [b]
    router.receive_rpc(b, rpc(messages=[Message(TOPIC, DATA)]), 4.1)
    assert [d.message_id for d in delivered(router.drain_actions())] == [MID]
    for t in (5.0, 6.0, 7.0, 8.0):  # kept: nothing more is asked
        assert not any(r.iwant for rpcs in sent(heartbeat(router, t)).values() for r in rpcs)
    assert router.counters.get("gossip.iwant.retried") == 1


def test_a_departed_offerer_is_skipped_and_asks_stop_after_d() -> None:
    router = lazy_router(iwant_followup_s=1.0, d=4, d_lo=2, d_hi=6, d_out=1)
    a, b = peer(1), peer(2)
    connect(router, [a, b])
    offer = rpc(ihave=[IHave(TOPIC, (MID,))])
    router.receive_rpc(a, offer, 0.1)
    router.receive_rpc(b, offer, 0.2)
    router.drain_actions()
    router.remove_peer(b, 0.5)
    asked = []
    for t in range(1, 10):
        out = sent(heartbeat(router, float(t)))
        asked += [p for p, rpcs in out.items() for r in rpcs if r.iwant]
    assert asked == [a, a, a]  # b is gone; four asks in all (d = 4), then it gives up
    assert router.status()["pending_iwants"] == 0


def test_an_offer_from_a_peer_this_node_dialled_is_asked_next() -> None:
    """Seven identities dial in and offer an id first, then never answer: they held every
    place among the offerers and the node asked only them until it gave up. An outbound
    peer's offer is asked next, so the message arrives a follow-up later."""
    router = lazy_router(iwant_followup_s=1.0)
    sybils = [peer(i) for i in range(100, 107)]
    chosen = peer(1)
    connect(router, sybils)
    connect(router, [chosen], outbound=True)
    offer = rpc(ihave=[IHave(TOPIC, (MID,))])
    for p in [*sybils, chosen]:
        router.receive_rpc(p, offer, 0.1)
    assert sent(router.drain_actions())[sybils[0]][0].iwant == (IWant((MID,)),)
    heartbeat(router, 1.0)  # the IWANT lapses at 1.1
    asked = [p for p, rpcs in sent(heartbeat(router, 2.0)).items() for r in rpcs if r.iwant]
    assert asked == [chosen]
    router.receive_rpc(chosen, rpc(messages=[Message(TOPIC, DATA)]), 2.2)
    assert [d.message_id for d in delivered(router.drain_actions())] == [MID]


def test_outbound_offerers_take_the_place_of_inbound_ones_in_a_full_list() -> None:
    router = lazy_router(iwant_followup_s=1.0, d=4, d_lo=2, d_hi=6, d_out=1)
    inbound = [peer(i) for i in range(100, 106)]
    chosen = [peer(1), peer(2)]
    connect(router, inbound)
    connect(router, chosen, outbound=True)
    offer = rpc(ihave=[IHave(TOPIC, (MID,))])
    for p in [*inbound, *chosen]:
        router.receive_rpc(p, offer, 0.1)
    router.drain_actions()
    asked = []
    for t in range(1, 10):
        out = sent(heartbeat(router, float(t)))
        asked += [p for p, rpcs in out.items() for r in rpcs if r.iwant]
    # the first offerer, both outbound ones, then inbound ones: d = 4 asks in all
    assert asked == [chosen[1], chosen[0], inbound[1]]


def test_a_late_offer_after_the_promise_lapsed_asks_again() -> None:
    router = lazy_router(iwant_followup_s=1.0)
    a, b = peer(1), peer(2)
    connect(router, [a, b])
    offer = rpc(ihave=[IHave(TOPIC, (MID,))])
    router.receive_rpc(a, offer, 0.1)
    router.drain_actions()
    router.receive_rpc(b, offer, 1.5)  # a's promise lapsed at 1.1, before any heartbeat
    assert sent(router.drain_actions())[b][0].iwant == (IWant((MID,)),)


def test_pending_iwants_are_capped_and_untracked_ids_are_still_asked() -> None:
    router = lazy_router(max_pending_iwants=2)
    connect(router, [peer(1)])
    ids = tuple(message_id(TOPIC, b"%d" % i) for i in range(5))
    router.receive_rpc(peer(1), rpc(ihave=[IHave(TOPIC, ids)]), 0.1)
    (ask,) = sent(router.drain_actions())[peer(1)]
    assert ask.iwant == (IWant(ids),)
    assert router.status()["pending_iwants"] == 2
    assert router.counters.get("gossip.iwant.untracked") == 3


def test_a_lazy_message_is_served_long_after_eager_ones_leave_the_cache() -> None:
    router = make_router(lazy_topics=frozenset({TOPIC}), history_length=5, lazy_history_length=8)
    router.subscribe(TOPIC, 0.0)
    router.subscribe("block_body", 0.0)
    connect(router, [peer(1)], TOPIC, "block_body")
    lazy_mid = router.publish(TOPIC, DATA, 0.5)
    eager_mid = router.publish("block_body", DATA, 0.5)
    router.drain_actions()
    for t in range(1, 7):
        heartbeat(router, float(t))
    router.receive_rpc(peer(1), rpc(iwant=[IWant((lazy_mid, eager_mid))]), 6.5)
    (reply,) = sent(router.drain_actions())[peer(1)]
    assert reply.messages == (Message(TOPIC, DATA),)


def test_a_peer_that_keeps_offering_what_it_never_sends_is_penalised_then_cut_off() -> None:
    """A few unanswered IWANTs cost nothing (an honest peer's message may have left its
    cache); a peer that offers many ids and sends none of them loses score with each one past
    the threshold until it is graylisted (gossipsub's behaviour penalty)."""
    router = lazy_router(iwant_followup_s=1.0)
    liar, honest = peer(1), peer(2)
    connect(router, [liar, honest])
    few = [message_id(TOPIC, b"few %d" % i) for i in range(5)]
    router.receive_rpc(liar, rpc(ihave=[IHave(TOPIC, tuple(few))]), 0.1)
    for t in (1.0, 2.0, 3.0):
        heartbeat(router, t)
    assert router.counters.get("gossip.iwant.unanswered") >= 5  # each re-ask of it too
    assert router.score(liar) == 0.0
    t = 3.0
    for round_ in range(10):
        ids = tuple(message_id(TOPIC, b"lie %d %d" % (round_, i)) for i in range(40))
        router.receive_rpc(liar, rpc(ihave=[IHave(TOPIC, ids)]), t + 0.1)
        t += 2.0
        heartbeat(router, t)
    assert router.counters.get("gossip.iwant.broken_promise_penalty") > 0
    assert router.counters.get("gossip.penalized.graylisted") == 1
    assert router.score(honest) == 0.0


def test_an_offerer_cannot_renew_its_lapsed_promise_by_offering_again() -> None:
    """The first offerer of an id never answers, and offers the id again each time its IWANT
    has lapsed, before the heartbeat follows the promise up. That used to replace the promise
    with a new one: the withholder was asked again and never charged, and the peer that had
    offered the id meanwhile was forgotten, so the message never came. The lapsed promise is
    now followed up at once: the withholder is charged and the next offerer asked."""
    router = lazy_router(iwant_followup_s=3.0)
    withholder, honest = peer(1), peer(2)
    connect(router, [withholder, honest])
    offer = rpc(ihave=[IHave(TOPIC, (MID,))])
    router.receive_rpc(withholder, offer, 0.1)
    router.receive_rpc(honest, offer, 0.2)
    asked = [p for p, rpcs in sent(router.drain_actions()).items() for r in rpcs if r.iwant]
    for t in range(1, 13):
        heartbeat(router, float(t))
        router.receive_rpc(withholder, offer, t + 0.5)  # lapses fall between heartbeats
        out = sent(router.drain_actions())
        asked += [p for p, rpcs in out.items() for r in rpcs if r.iwant]
        if honest in out:
            router.receive_rpc(honest, rpc(messages=[Message(TOPIC, DATA)]), t + 0.6)
            assert [d.message_id for d in delivered(router.drain_actions())] == [MID]
            break
    assert asked == [withholder, honest]
    assert router.counters.get("gossip.iwant.unanswered") == 1


def test_an_offerer_cut_off_by_its_lapsed_promise_is_not_asked_again() -> None:
    router = lazy_router(
        iwant_followup_s=1.0, broken_promise_threshold=0.0, broken_promise_penalty=100.0
    )
    liar = peer(1)
    connect(router, [liar])
    offer = rpc(ihave=[IHave(TOPIC, (MID,))])
    router.receive_rpc(liar, offer, 0.1)
    router.drain_actions()
    router.receive_rpc(liar, offer, 1.5)  # lapsed at 1.1, before any heartbeat
    actions = router.drain_actions()
    assert [p.peer for p in penalized(actions)] == [liar]
    assert sent(actions) == {}


def test_unanswered_iwants_are_charged_to_a_peer_that_reconnected_meanwhile() -> None:
    """Unanswered IWANTs are counted by node id, as gossipsub's promise tracker counts them,
    not by link: a peer that withholds what it offered and reconnects is still charged for
    the IWANT its last link left unanswered, and does not start its count afresh."""
    router = lazy_router(
        iwant_followup_s=1.0, broken_promise_threshold=1.0, broken_promise_penalty=100.0
    )
    liar, honest = peer(1), peer(2)
    connect(router, [liar, honest])
    router.receive_rpc(liar, rpc(ihave=[IHave(TOPIC, (MID,))]), 0.1)
    heartbeat(router, 1.0)
    heartbeat(router, 2.0)  # lapsed at 1.1: one broken promise, within the threshold
    router.receive_rpc(honest, rpc(messages=[Message(TOPIC, DATA)]), 2.1)
    router.remove_peer(liar, 2.2)
    connect(router, [liar], now=2.3)
    other = message_id(TOPIC, b"other")
    router.receive_rpc(liar, rpc(ihave=[IHave(TOPIC, (other,))]), 2.4)
    assert [r.iwant for r in sent(router.drain_actions())[liar] if r.iwant] == [(IWant((other,)),)]
    assert not penalized(heartbeat(router, 3.0))
    actions = heartbeat(router, 4.0)  # lapsed at 3.4: 0.81 + 1 broken promises
    assert [p.peer for p in penalized(actions)] == [liar]
    assert router.counters.get("gossip.iwant.broken_promise_penalty") == 1


def test_a_peer_that_leaves_before_its_iwant_lapses_is_charged_all_the_same() -> None:
    router = lazy_router(
        iwant_followup_s=1.0, broken_promise_threshold=0.0, broken_promise_penalty=100.0
    )
    liar = peer(1)
    connect(router, [liar])
    router.receive_rpc(liar, rpc(ihave=[IHave(TOPIC, (MID,))]), 0.1)
    router.remove_peer(liar, 0.5)
    heartbeat(router, 1.0)
    heartbeat(router, 2.0)  # lapsed at 1.1, charged to the departed peer's kept score
    connect(router, [liar], now=2.5)
    assert [p.peer for p in penalized(router.drain_actions())] == [liar]
    assert router.score(liar) == -100.0
