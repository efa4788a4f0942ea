"""A peer's rate limits in the node: one budget per node id, across its links and reconnects."""

from __future__ import annotations

import pytest

from fuzz.hostile_peer import HostilePeer
from murmur.crypto.identity import Identity
from murmur.node import node as node_module
from murmur.node.actions import ConnId, Dial, SendBytes
from murmur.node.config import BootstrapPeer, HostPort, NodeConfig
from murmur.node.node import DEPARTED_LIMITERS, Node
from murmur.node.private_path import EARLY_REANNOUNCE_S
from murmur.overlay.gossip import GossipConfig
from murmur.overlay.peers.limits import PeerLimits
from murmur.sim.crypto_standin import standin_crypto
from murmur.sim.node_host import WALL_CLOCK_AT_ZERO_S
from murmur.sim.rng import SeededRng
from murmur.wire.envelope import Channel, wrap
from murmur.wire.gossip import Rpc, encode_rpc
from tests.node.test_node import Net


def _send(net: Net, sender: Node, receiver: Node, count: int) -> int:
    """``count`` empty gossip RPCs from ``sender`` on its link to ``receiver``, read in one go;
    returns how many of them ``receiver`` dropped over the rate limits."""
    link = sender._by_peer[receiver.node_id].link
    for _ in range(count):
        link.send_message(wrap(Channel.GOSSIP, encode_rpc(Rpc())), net.now)
    before = receiver.counters.get("drops.rate_limited")
    conn = receiver._by_peer[sender.node_id].conn_id
    receiver.data_received(conn, link.data_to_send(), net.now)
    return receiver.counters.get("drops.rate_limited") - before


def _drop(net: Net, i: int, j: int) -> None:
    """Node ``i``'s link to node ``j`` breaks; both ends see it go."""
    dialler, peer = net.nodes[i], net.nodes[j]
    conn = dialler._by_peer[peer.node_id].conn_id
    _, other = net.pipe.pop((i, conn))
    net.pipe.pop((j, other))
    dialler.connection_lost(conn, net.now)
    peer.connection_lost(other, net.now)
    net.run()


def _dial(net: Net, i: int, j: int) -> None:
    """Node ``i`` dials node ``j`` and the handshake completes, at the same instant on the
    fake clock."""
    net.apply(i, Dial(BootstrapPeer(net.addr[j], net.nodes[j].node_id)))
    net.run()
    assert net.nodes[j].node_id in net.nodes[i]._by_peer


def _reconnect(net: Net, i: int, j: int) -> None:
    _drop(net, i, j)
    _dial(net, i, j)


def test_a_peer_that_reconnects_keeps_its_spent_rate_budget() -> None:
    """A new link must not buy a new burst (4,000 messages and 8 MiB by default): the budget a
    departed peer left with is given back when it authenticates again, refilled at its rates
    for the time it was away."""
    net = Net(2)
    net.tick(2.0)
    victim, sender = net.nodes
    burst = victim.config.limits.messages_burst
    assert _send(net, sender, victim, burst) == 0
    _reconnect(net, 1, 0)
    assert _send(net, sender, victim, 100) == 100
    net.now += 0.5  # 1,000 messages at 2,000/s
    assert _send(net, sender, victim, 1001) == 1
    assert not victim._bans.is_banned(sender.node_id, net.now)
    assert victim.counters.get("rate_limited.subscriptions_taken") == 1


def test_a_flood_split_across_reconnects_is_still_a_flood() -> None:
    """The allowance of drops before a peer counts as flooding is kept with the rest: a peer
    cannot send over its rate indefinitely by reconnecting before the allowance runs out."""
    net = Net(2)
    net.tick(2.0)
    victim, sender = net.nodes
    assert _send(net, sender, victim, victim.config.limits.messages_burst + 150) == 150
    _reconnect(net, 1, 0)
    _send(net, sender, victim, 100)
    assert victim.counters.get("misbehaviour.flood") == 1
    assert victim._bans.is_banned(sender.node_id, net.now)


def test_a_link_that_replaces_another_keeps_the_peer_s_spent_rate_budget() -> None:
    """Of two links between a pair, both keep the one the smaller id dialled: a peer with the
    smaller id that dials a node already linked with it takes over the link, and must not get
    a fresh budget with it."""
    net = Net(2, peers_of=lambda i: [])
    small, large = sorted(range(2), key=lambda i: net.nodes[i].node_id)
    victim, sender = net.nodes[large], net.nodes[small]
    _dial(net, large, small)
    net.tick(2.0)
    burst = victim.config.limits.messages_burst
    assert _send(net, sender, victim, burst) == 0
    first = victim._by_peer[sender.node_id]
    _dial(net, small, large)
    assert victim._by_peer[sender.node_id] is not first  # the new link took over
    assert _send(net, sender, victim, 100) == 100


def test_only_the_most_recently_departed_peers_keep_their_rate_budgets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(node_module, "DEPARTED_LIMITERS", 1)
    net = Net(3, peers_of=lambda i: [0] if i else [])
    net.tick(2.0)
    victim = net.nodes[0]
    burst = victim.config.limits.messages_burst
    for i in (1, 2):
        assert _send(net, net.nodes[i], victim, burst) == 0
    for i in (1, 2):
        _drop(net, i, 0)  # node 2 leaves last: node 1's spent budget makes room for its own
    for i in (1, 2):
        _dial(net, i, 0)
    assert _send(net, net.nodes[1], victim, 10) == 0
    assert _send(net, net.nodes[2], victim, 10) == 10


def test_a_reconnecting_peer_with_a_spent_burst_still_has_its_subscriptions_honoured() -> None:
    """A peer's first message on a link is the RPC with its subscriptions, sent once: dropped
    because the peer's budget was spent on its last link, the node never learnt which topics it
    takes on this one (no mesh, no gossip with it; its GRAFTs pruned) until it reconnected.
    They are taken; nothing else in that message is (its catch-up offer), nor anything after
    it over the limits."""
    net = Net(2)
    for i, node in enumerate(net.nodes):
        node.set_advertised_address(net.addr[i].host, net.addr[i].port, 0.0)
    net.tick(EARLY_REANNOUNCE_S[-1] + 2 * GossipConfig().seen_ttl_s)  # offers: not yet seen
    victim, sender = net.nodes
    topics = set(victim.gossip.topics)
    assert all(sender.node_id in victim.gossip.mesh_peers(t) for t in topics)
    assert _send(net, sender, victim, victim.config.limits.messages_burst) == 0
    offers = victim.gossip.counters.get("gossip.ihave.known")
    _reconnect(net, 1, 0)
    assert victim.counters.get("drops.rate_limited") == 1  # its first RPC, over the limits
    assert victim.gossip.counters.get("gossip.ihave.known") == offers
    assert _send(net, sender, victim, 100) == 100
    net.tick(net.now + 3.0)
    assert all(sender.node_id in victim.gossip.mesh_peers(t) for t in topics)
    assert victim.gossip.counters.get("gossip.graft.peer_not_subscribed") == 0
    assert not victim._bans.is_banned(sender.node_id, net.now)
    assert victim.counters.get("rate_limited.subscriptions_taken") == 1


SMALL_LIMITS = PeerLimits(messages_per_s=5, messages_burst=10)
"""Limits that a few messages spend, so a thousand peers can spend them quickly."""


class _Visitor:
    """An identity that connects to ``victim`` (from a host of its own, so the address throttle
    lets it in at once), may send, and leaves: a real link driven by hand."""

    def __init__(self, victim: Node, index: int, now: float) -> None:
        identity = Identity.from_seed(index.to_bytes(32, "big"))
        self.victim = victim
        self.peer = HostilePeer(identity, victim.node_id, ConnId(index), seed=index, now=now)
        host = f"10.{index // 250}.{index % 250}.1"
        victim.connection_opened(self.peer.conn_id, outbound=False, host=host, port=7, now=now)
        self._move(self.peer.link.data_to_send(), now)
        assert self.peer.node_id in victim._by_peer

    def _move(self, data: bytes, now: float) -> None:
        while data:
            self.victim.data_received(self.peer.conn_id, data, now)
            back = b"".join(
                a.data
                for a in self.victim.drain_actions()
                if isinstance(a, SendBytes) and a.conn_id == self.peer.conn_id
            )
            data = self.peer.receive(back, now)

    def send(self, count: int, now: float) -> int:
        """``count`` empty gossip RPCs; returns how many the victim dropped."""
        before = self.victim.counters.get("drops.rate_limited")
        for _ in range(count):
            self.peer.link.send_message(wrap(Channel.GOSSIP, encode_rpc(Rpc())), now)
        self._move(self.peer.link.data_to_send(), now)
        return self.victim.counters.get("drops.rate_limited") - before

    def leave(self, now: float) -> None:
        self.victim.connection_lost(self.peer.conn_id, now)
        self.victim.drain_actions()


def _victim() -> Node:
    return Node(
        identity=Identity.from_seed(b"\x01" * 32),
        config=NodeConfig(listen=HostPort("127.1.0.1", 7001), limits=SMALL_LIMITS),
        rng=SeededRng(1),
        now=0.0,
        wall_clock_offset_s=WALL_CLOCK_AT_ZERO_S,
    )


FLOODER = 2
"""The visitor index of the peer that floods, leaves, and hopes to come back forgiven."""


def test_fresh_identities_that_behave_cannot_push_out_a_flooder_s_limiter() -> None:
    """A peer that left with most of its drop allowance spent has more than the table holds in
    fresh identities connect, send a little, and leave: it comes back to the allowance it left
    with (refilled for the time away), not a new one, and the next burst over its rate is a
    flood. Forgetting the least recently departed, it came back with a clean allowance."""
    with standin_crypto():
        victim = _victim()
        flooder = _Visitor(victim, FLOODER, 0.0)
        assert flooder.send(SMALL_LIMITS.messages_burst + 150, 0.0) == 150
        flooder.leave(0.0)
        now = 0.0
        for i in range(DEPARTED_LIMITERS + 10):
            now += 0.001
            visitor = _Visitor(victim, 1000 + i, now)
            assert visitor.send(3, now) == 0
            visitor.leave(now)
        assert len(victim._departed_limiters) <= DEPARTED_LIMITERS
        _Visitor(victim, FLOODER, now).send(SMALL_LIMITS.messages_burst + 60, now)
    assert victim.counters.get("misbehaviour.flood") == 1
    assert victim._bans.is_banned(flooder.peer.node_id, now)


def test_a_limiter_full_again_is_not_kept() -> None:
    """A departed peer whose budgets have all refilled by the time it leaves is the same as a
    new peer: nothing is kept for it, so a stream of such peers takes no room."""
    with standin_crypto():
        victim = _victim()
        quiet = _Visitor(victim, 3, 0.0)
        quiet.leave(0.0)  # sent nothing
        spender = _Visitor(victim, 4, 0.0)
        spender.send(SMALL_LIMITS.messages_burst, 0.0)
        spender.leave(1.0)  # 5 of 10 messages back, and 200 of 200 drops: kept
        assert list(victim._departed_limiters) == [spender.peer.node_id]
        again = _Visitor(victim, 4, 1.5)
        again.send(1, 1.5)
        again.leave(3.0)  # all back (10 messages at 5/s take 2 s): not kept
        assert not victim._departed_limiters


def test_departed_limiters_stay_bounded_under_a_flood_of_spent_identities() -> None:
    """Fresh identities that each spend their whole burst before leaving fill the table but
    never grow it past its bound, and push out only limiters fuller than their own: the
    flooder's, emptier than any, stays."""
    with standin_crypto():
        victim = _victim()
        flooder = _Visitor(victim, FLOODER, 0.0)
        flooder.send(SMALL_LIMITS.messages_burst + 150, 0.0)
        flooder.leave(0.0)
        for i in range(DEPARTED_LIMITERS + 10):
            visitor = _Visitor(victim, 1000 + i, 0.0)
            assert visitor.send(SMALL_LIMITS.messages_burst + 1, 0.0) == 1
            visitor.leave(0.0)
            assert len(victim._departed_limiters) <= DEPARTED_LIMITERS
        assert len(victim._departed_limiters) == DEPARTED_LIMITERS
        assert flooder.peer.node_id in victim._departed_limiters
