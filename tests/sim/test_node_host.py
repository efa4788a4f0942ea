"""Production nodes over the simulated link layer: dial, handshake, bytes, close."""

from __future__ import annotations

from murmur.crypto.identity import Identity
from murmur.node.actions import MessageDelivered
from murmur.node.config import BootstrapPeer, NodeConfig
from murmur.node.node import Node
from murmur.sim.engine import Engine
from murmur.sim.network import UniformLatency
from murmur.sim.node_host import WALL_CLOCK_AT_ZERO_S, NodeHost, node_address
from murmur.sim.rng import SeededRng
from murmur.wire.gossip import message_id


def two_nodes(latency_s: float) -> tuple[Engine, NodeHost, list[tuple[int, MessageDelivered]]]:
    engine = Engine(latency=UniformLatency(latency_s, latency_s, seed=1), rng=SeededRng(1))
    delivered: list[tuple[int, MessageDelivered]] = []
    host = NodeHost(engine, on_delivered=lambda i, action, now: delivered.append((i, action)))
    ids = [Identity.from_seed(bytes([i + 1]) * 32) for i in range(2)]
    for i in range(2):
        peers = (BootstrapPeer(node_address(0), ids[0].node_id),) if i == 1 else ()
        config = NodeConfig(listen=node_address(i), bootstrap=peers)
        node = Node(
            identity=ids[i],
            config=config,
            rng=SeededRng(i),
            now=0.0,
            wall_clock_offset_s=WALL_CLOCK_AT_ZERO_S,
        )
        host.add(node, node_address(i))
    for sim in engine.nodes:
        engine.pump(sim)
    return engine, host, delivered


def test_addresses_are_distinct_slash_16s() -> None:
    hosts = {node_address(i).host.rsplit(".", 2)[0] for i in range(1000)}
    assert len(hosts) == 1000


def test_a_dial_becomes_an_authenticated_link_and_carries_gossip() -> None:
    engine, host, delivered = two_nodes(0.05)
    engine.run(until=1.0)
    assert host.open_connections == 1
    for node in host.nodes:
        assert len(node.status(engine.now)["peers"]) == 1
    host.nodes[1].publish("block_header", b"header", engine.now)
    engine.pump(engine.nodes[1])
    sent_at = engine.now
    engine.run(until=2.0)
    at_zero = [a for i, a in delivered if i == 0 and a.topic == "block_header"]
    assert [a.message_id for a in at_zero] == [message_id("block_header", b"header")]
    assert host.nodes[0].deliveries[at_zero[0].message_id] - sent_at >= 0.05


def test_the_listener_sees_the_connection_open_one_latency_after_the_dial() -> None:
    engine, host, _ = two_nodes(0.05)
    opened: list[tuple[int, int, float]] = []
    host.on_inbound = lambda listener, dialler, now: opened.append((listener, dialler, now))
    engine.run(until=1.0)
    assert [(listener, dialler) for listener, dialler, _ in opened] == [(0, 1)]
    assert 0.05 <= opened[0][2] <= 0.06  # latency plus at most a tenth of it in jitter


def test_closing_tells_the_other_side_after_the_latency() -> None:
    engine, host, _ = two_nodes(0.05)
    engine.run(until=1.0)
    host.nodes[1].ban(host.nodes[0].node_id, engine.now, "test")
    engine.pump(engine.nodes[1])
    assert host.open_connections == 0
    engine.run(until=1.04)
    assert host.nodes[0].status(engine.now)["peers"]
    engine.run(until=1.2)
    assert host.nodes[0].status(engine.now)["peers"] == []
