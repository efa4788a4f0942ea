"""Fake peers for router tests: RPCs built with the wire module, actions decoded back."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from murmur.base.ids import NodeId
from murmur.overlay.gossip import (
    Deliver,
    GossipAction,
    GossipConfig,
    GossipRouter,
    PenalizePeer,
    SendRpc,
)
from murmur.sim.rng import SeededRng
from murmur.wire.gossip import Rpc, Subscription, decode_rpc, encode_rpc

TOPIC = "block_header"


def peer(i: int) -> NodeId:
    return NodeId(i.to_bytes(32, "big"))


def make_router(*, seed: int = 1, now: float = 0.0, **config: Any) -> GossipRouter:
    return GossipRouter(config=GossipConfig(**config), rng=SeededRng(seed), now=now)


def rpc(**sections: Any) -> bytes:
    return encode_rpc(Rpc(**{name: tuple(items) for name, items in sections.items()}))


def subscribe_rpc(*topics: str) -> bytes:
    return rpc(subscriptions=[Subscription(t, True) for t in topics or (TOPIC,)])


def connect(
    router: GossipRouter,
    peers: list[NodeId],
    *topics: str,
    now: float = 0.0,
    outbound: bool = False,
) -> None:
    """Add ``peers`` (dialled by the router's node if ``outbound``), each announcing a
    subscription to ``topics`` (default: TOPIC)."""
    for p in peers:
        router.add_peer(p, now, outbound=outbound)
        router.receive_rpc(p, subscribe_rpc(*topics), now)


def sent(actions: list[GossipAction]) -> dict[NodeId, list[Rpc]]:
    out: dict[NodeId, list[Rpc]] = defaultdict(list)
    for action in actions:
        if isinstance(action, SendRpc):
            out[action.peer].append(decode_rpc(action.data))
    return dict(out)


def sent_messages(actions: list[GossipAction]) -> dict[NodeId, list[bytes]]:
    """The message data each peer was sent."""
    return {
        p: [m.data for r in rpcs for m in r.messages]
        for p, rpcs in sent(actions).items()
        if any(r.messages for r in rpcs)
    }


def delivered(actions: list[GossipAction]) -> list[Deliver]:
    return [a for a in actions if isinstance(a, Deliver)]


def penalized(actions: list[GossipAction]) -> list[PenalizePeer]:
    return [a for a in actions if isinstance(a, PenalizePeer)]


def mesh_of(router: GossipRouter, topic: str = TOPIC) -> int:
    mesh = router.status()["mesh"]
    assert isinstance(mesh, dict)
    return int(mesh.get(topic, 0))


def heartbeat(router: GossipRouter, now: float) -> list[GossipAction]:
    router.handle_timer(now)
    return router.drain_actions()
