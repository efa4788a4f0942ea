"""The private path through whole nodes: announcements, circuits, exits, replies (fake clock)."""

from __future__ import annotations

from murmur.node.private_path import decode_sync_response, encode_sync_request
from murmur.wire.gossip import message_id
from tests.node.test_node import Net


def _ready_net(n: int = 8) -> Net:
    net = Net(n, peers_of=lambda i: [j for j in range(max(0, i - 3), i)])
    for i, node in enumerate(net.nodes):
        node.set_advertised_address(net.addr[i].host, net.addr[i].port, 0.0)
    net.tick(20.0)
    return net


def test_announcements_fill_every_directory() -> None:
    net = _ready_net()
    for node in net.nodes:
        assert node.status(net.now)["relays_known"] == len(net.nodes) - 1


def test_private_transactions_reach_every_node_once_from_an_exit() -> None:
    net = _ready_net()
    origin = net.nodes[0]
    assert origin.circuits.metrics()["client.circuits_built"] >= 3
    txs = [f"tx {k}".encode() * 20 for k in range(10)]
    for tx in txs:
        origin.send_private("transaction", tx, net.now)
        net.run()
    net.tick(net.now + 5.0)
    ids = {message_id("transaction", tx) for tx in txs}
    for i in range(len(net.nodes)):
        got = [d.message_id for d in net.delivered[i] if d.topic == "transaction"]
        assert sorted(got) == sorted(ids), f"node {i}"
    exits = sum(n.counters.get("exit_published") for n in net.nodes)
    assert exits == len(txs)
    assert origin.counters.get("exit_published") == 0


def test_sync_request_reply_comes_back_through_the_circuit() -> None:
    net = _ready_net()
    net.nodes[3].publish("block_header", b"header 42", net.now)
    net.tick(net.now + 2.0)
    wanted = message_id("block_header", b"header 42")
    origin = net.nodes[5]
    request_id = origin.request_private("sync_request", encode_sync_request([wanted]), net.now)
    net.tick(net.now + 10.0)
    [reply] = net.replies[5]
    assert reply.request_id == request_id
    assert decode_sync_response(reply.payload) == {wanted: b"header 42"}
