"""Thirty routers in one process: RPC bytes moved by a small event loop on a fake clock."""

from __future__ import annotations

import heapq
from collections import Counter

import pytest

from murmur.base.ids import NodeId
from murmur.overlay.gossip import Deliver, GossipConfig, GossipRouter, PenalizePeer, SendRpc
from murmur.overlay.gossip.shared import SharedMessages
from murmur.sim.rng import SeededRng
from murmur.wire.gossip import decode_rpc

from .helpers import TOPIC, peer

N_NODES = 30
N_SUBSCRIBED = 25
LINKS_PER_NODE = 4


class Network:
    """Routers joined by links with 5-50 ms latency, optionally losing whole RPCs."""

    def __init__(
        self,
        seed: int,
        loss: float = 0.0,
        shared: SharedMessages | None = None,
        config: GossipConfig | None = None,
    ) -> None:
        self.rng = SeededRng(seed)
        self.loss = loss
        self.now = 0.0
        self.nodes = [peer(i) for i in range(1, N_NODES + 1)]
        self.routers = {
            n: GossipRouter(config=config or GossipConfig(), rng=self.rng.fork(i), now=0.0)
            for i, n in enumerate(self.nodes)
        }
        if shared is not None:
            for router in self.routers.values():
                router.share_messages(shared)
        self.in_flight: list[tuple[float, int, NodeId, NodeId, bytes]] = []
        self.sent: list[bytes] = []
        self.seq = 0
        self.delivered: dict[NodeId, list[Deliver]] = {n: [] for n in self.nodes}
        subscribed = self.nodes[:N_SUBSCRIBED]
        links = {
            frozenset(pair)
            for pair in zip(subscribed, subscribed[1:] + subscribed[:1], strict=True)
        }
        for n in self.nodes:
            for other in self.rng.sample([m for m in subscribed if m != n], LINKS_PER_NODE):
                links.add(frozenset((n, other)))
        for a, b in sorted(tuple(sorted(link)) for link in links):  # not in hash order
            self.routers[a].add_peer(b, 0.0)
            self.routers[b].add_peer(a, 0.0)
        for n in subscribed:
            self.routers[n].subscribe(TOPIC, 0.0)
        for n in self.nodes:
            self._collect(n)

    def _collect(self, node: NodeId) -> None:
        for action in self.routers[node].drain_actions():
            if isinstance(action, SendRpc):
                if self.rng.random() < self.loss:
                    continue
                self.sent.append(action.data)
                self.seq += 1
                arrival = self.now + self.rng.uniform(0.005, 0.05)
                heapq.heappush(self.in_flight, (arrival, self.seq, action.peer, node, action.data))
            elif isinstance(action, Deliver):
                self.delivered[node].append(action)
            else:
                assert not isinstance(action, PenalizePeer), action

    def run_until(self, until: float) -> None:
        while True:
            deadline, timer_node = min(
                (r.next_deadline() or float("inf"), n) for n, r in self.routers.items()
            )
            arrival = self.in_flight[0][0] if self.in_flight else float("inf")
            if min(deadline, arrival) > until:
                break
            if arrival <= deadline:
                self.now, _, dst, src, data = heapq.heappop(self.in_flight)
                self.routers[dst].receive_rpc(src, data, self.now)
                self._collect(dst)
            else:
                self.now = deadline
                self.routers[timer_node].handle_timer(self.now)
                self._collect(timer_node)
        self.now = until

    def publish(self, node: NodeId, data: bytes) -> bytes:
        mid = self.routers[node].publish(TOPIC, data, self.now)
        self._collect(node)
        return mid


@pytest.mark.parametrize("loss", [0.0, 0.05])
def test_every_subscriber_delivers_every_message_exactly_once(loss: float) -> None:
    net = Network(seed=7, loss=loss)
    net.run_until(3.0)  # three heartbeats: meshes form
    for n in net.nodes[:N_SUBSCRIBED]:
        mesh = net.routers[n].mesh_peers(TOPIC)
        assert 1 <= len(mesh) <= 12
    published: dict[bytes, NodeId] = {}
    for i in range(100):
        origin = net.rng.choice(net.nodes)  # some publishers are not subscribed: fanout
        published[net.publish(origin, b"block %03d " % i + bytes(200))] = origin
        net.run_until(net.now + 0.05)
    net.run_until(net.now + 10.0)  # lazy gossip repairs losses within a few heartbeats
    assert len(published) == 100
    for n in net.nodes[:N_SUBSCRIBED]:
        counts = Counter(d.message_id for d in net.delivered[n])
        assert set(counts) == set(published), n.hex()
        assert max(counts.values()) == 1
        for d in net.delivered[n]:
            assert (d.received_from is None) == (published[d.message_id] == n)
    for n in net.nodes[N_SUBSCRIBED:]:
        assert net.delivered[n] == []
    if loss:  # the losses were repaired by IHAVE/IWANT, not by luck
        assert sum(r.counters.get("gossip.iwant.served") for r in net.routers.values()) > 0


def message_copies(net: Network) -> int:
    """Full messages carried by every RPC sent (each copy a receiver took in)."""
    return sum(len(decode_rpc(data).messages) for data in net.sent)


@pytest.mark.parametrize("loss", [0.0, 0.05])
def test_a_lazy_topic_reaches_everyone_once_with_about_one_copy_per_node(loss: float) -> None:
    def run(lazy: bool) -> Network:
        config = GossipConfig(lazy_topics=frozenset({TOPIC}) if lazy else frozenset())
        net = Network(seed=5, loss=loss, config=config)
        net.run_until(3.0)
        for i in range(60):
            net.publish(net.rng.choice(net.nodes[:N_SUBSCRIBED]), b"record %03d " % i + bytes(900))
            net.run_until(net.now + 0.2)
        # A lost IWANT or answer is re-asked of the next offerer after iwant_followup_s, up to
        # d times, so a lazy message can take 1 + d * iwant_followup_s (19 s): wait for the
        # cache to forget it, after which no repair could come.
        net.run_until(net.now + config.lazy_history_length * config.heartbeat_interval_s)
        return net

    eager, lazy = run(False), run(True)
    for net in (eager, lazy):
        for n in net.nodes[:N_SUBSCRIBED]:
            counts = Counter(d.message_id for d in net.delivered[n])
            assert len(counts) == 60 and max(counts.values()) == 1
    receptions = 60 * (N_SUBSCRIBED - 1)
    # Eager push: a copy from most mesh peers. Lazy: the publisher's push to its mesh, then
    # one pull per node (a few more where an IWANT or its answer was lost and was re-asked).
    assert message_copies(eager) / receptions > 3.0
    assert message_copies(lazy) / receptions < 1.35
    retried = sum(r.counters.get("gossip.iwant.retried") for r in lazy.routers.values())
    assert (retried > 0) == (loss > 0)


def test_routers_sharing_messages_send_and_deliver_exactly_the_same() -> None:
    def run(shared: SharedMessages | None) -> Network:
        net = Network(seed=11, loss=0.05, shared=shared)
        net.run_until(3.0)
        for i in range(40):
            net.publish(net.rng.choice(net.nodes), b"tx %03d " % i + bytes(300))
            net.run_until(net.now + 0.05)
        net.run_until(net.now + 10.0)
        return net

    shared = SharedMessages(capacity=16)  # smaller than the run: evictions recompute
    alone, together = run(None), run(shared)
    assert together.sent == alone.sent
    assert together.delivered == alone.delivered
    assert shared.hits > 0 and len(shared) == 16
    # One copy per message: every subscriber's delivery of a message is the same object.
    recent = together.delivered[together.nodes[0]][-5:]
    for d in recent:
        copies = {
            id(x.data)
            for n in together.nodes[:N_SUBSCRIBED]
            for x in together.delivered[n]
            if x.message_id == d.message_id
        }
        assert len(copies) == 1
