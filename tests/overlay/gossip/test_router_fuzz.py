"""Whatever peers send, receive_rpc never raises and the caps hold."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.wire.gossip import Graft, IHave, IWant, Message, Prune, Rpc, Subscription, encode_rpc

from .helpers import TOPIC, connect, make_router, peer

topics = st.sampled_from([TOPIC, "scp_statement", "transaction", "other"])
ids = st.binary(min_size=20, max_size=20)
valid_rpcs = st.builds(
    Rpc,
    subscriptions=st.lists(st.builds(Subscription, topics, st.booleans()), max_size=3).map(tuple),
    messages=st.lists(st.builds(Message, topics, st.binary(max_size=40)), max_size=3).map(tuple),
    graft=st.lists(st.builds(Graft, topics), max_size=2).map(tuple),
    prune=st.lists(st.builds(Prune, topics, st.integers(0, 5)), max_size=2).map(tuple),
    ihave=st.lists(st.builds(IHave, topics, st.lists(ids, max_size=3).map(tuple)), max_size=2).map(
        tuple
    ),
    iwant=st.lists(st.builds(IWant, st.lists(ids, max_size=3).map(tuple)), max_size=2).map(tuple),
).map(encode_rpc)
inputs = st.lists(
    st.tuples(
        st.integers(1, 4),
        st.one_of(valid_rpcs, st.binary(max_size=40)),
        st.floats(0.0, 0.5),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(inputs)
def test_receive_rpc_never_raises(script: list[tuple[int, bytes, float]]) -> None:
    router = make_router(
        d=2,
        d_lo=2,
        d_hi=3,
        d_out=1,
        d_lazy=2,
        lazy_topics=frozenset({"scp_statement"}),
        iwant_followup_s=0.5,
        max_pending_iwants=4,
    )
    router.subscribe(TOPIC, 0.0)
    router.subscribe("scp_statement", 0.0)
    connect(router, [peer(1), peer(2)], outbound=True)  # their GRAFT is taken even at d_hi
    connect(router, [peer(3), peer(4)])
    now = 0.0
    for sender, data, step in script:
        now += step
        router.receive_rpc(peer(sender), data, now)
        router.handle_timer(now)
        router.drain_actions()
    router.drain_actions()
    status = router.status()
    assert isinstance(status["mesh"], dict)
    assert all(size <= 3 + 2 for size in status["mesh"].values())  # d_hi + outbound peers
    assert status["queued_bytes"] == 0
    assert status["pending_iwants"] <= 4
