"""How many messages one gossip router relays per second, core only (no sockets, no crypto links).

One router subscribes to a topic, has a full mesh of 6 peers, and receives messages from a
seventh peer outside the mesh; each message is decoded, hashed into its id, checked against the
seen-cache, cached, delivered locally and queued for the 6 mesh peers, and the drain encodes the
outgoing RPCs. ``drain_every=1`` drains after every message (one RPC per message per peer, the
worst case); a larger value lets RPCs batch messages as a busy runtime would.

Run: ``PYTHONPATH=src python benchmarks/bench_gossip_core.py`` (prints JSON).
"""

from __future__ import annotations

import json
import platform
import time

from murmur.base.ids import NodeId
from murmur.overlay.gossip import GossipConfig, GossipRouter, SendRpc
from murmur.sim.rng import SeededRng
from murmur.wire.gossip import Message, Rpc, Subscription, encode_rpc

TOPIC = "block_header"
MESH_PEERS = 6


def _relay_setup(n_messages: int) -> tuple[GossipRouter, NodeId, float]:
    config = GossipConfig(seen_capacity=max(n_messages, 1), mcache_max_bytes=256 * 1024 * 1024)
    router = GossipRouter(config=config, rng=SeededRng(1), now=0.0)
    router.subscribe(TOPIC, 0.0)
    hello = encode_rpc(Rpc(subscriptions=(Subscription(TOPIC, True),)))
    for i in range(MESH_PEERS):
        peer = NodeId(bytes([i + 1]) * 32)
        router.add_peer(peer, 0.0)
        router.receive_rpc(peer, hello, 0.0)
    router.handle_timer(1.0)  # the heartbeat grafts all six
    source = NodeId(b"\xee" * 32)
    router.add_peer(source, 1.0)
    router.receive_rpc(source, hello, 1.0)
    router.drain_actions()
    mesh = router.status()["mesh"]
    assert isinstance(mesh, dict) and mesh[TOPIC] == MESH_PEERS, mesh
    return router, source, 1.0


def bench_relay(n_messages: int = 20000, size: int = 1024, *, drain_every: int = 1) -> float:
    """Messages per second relayed from one peer to a mesh of 6 (receive + drain)."""
    router, source, now = _relay_setup(n_messages)
    padding = b"\xab" * (size - 8)
    rpcs = [
        encode_rpc(Rpc(messages=(Message(TOPIC, i.to_bytes(8, "big") + padding),)))
        for i in range(n_messages)
    ]
    receive = router.receive_rpc
    drain = router.drain_actions
    sent = 0
    start = time.perf_counter()
    for i, rpc in enumerate(rpcs, 1):
        receive(source, rpc, now)
        if i % drain_every == 0:
            sent += sum(1 for action in drain() if isinstance(action, SendRpc))
    sent += sum(1 for action in drain() if isinstance(action, SendRpc))
    elapsed = time.perf_counter() - start
    assert router.counters.get("gossip.message.accepted") == n_messages
    assert sent >= MESH_PEERS, sent
    return n_messages / elapsed


def main() -> int:
    result = {
        "benchmark": "gossip_relay_core",
        "python": platform.python_version(),
        "message_bytes": 1024,
        "mesh_peers": MESH_PEERS,
        "relayed_msgs_per_s_drain_each": round(bench_relay()),
        "relayed_msgs_per_s_drain_every_64": round(bench_relay(drain_every=64)),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
