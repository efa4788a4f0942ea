"""A peer's rate limits in the node: one budget per node id, across its links and reconnects."""

from __future__ import annotations

import pytest

from murmur.node import node as node_module
from murmur.node.actions import Dial
from murmur.node.config import BootstrapPeer
from murmur.node.node import Node
from murmur.node.private_path import EARLY_REANNOUNCE_S
from murmur.overlay.gossip import GossipConfig
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
