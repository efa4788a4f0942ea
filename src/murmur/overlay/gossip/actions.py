"""What the gossip router asks its driver to do (drained with ``drain_actions``)."""

from __future__ import annotations

from dataclasses import dataclass

from murmur.base.ids import NodeId


@dataclass(frozen=True, slots=True)
class SendRpc:
    """Send this encoded gossip RPC to ``peer``."""

    peer: NodeId
    data: bytes

    def __init__(self, peer: NodeId, data: bytes) -> None:
        # Written out: mypyc compiles this one, the dataclasses module's runs interpreted
        # (about 12 x slower), and one is built for every frame.
        object.__setattr__(self, "peer", peer)
        object.__setattr__(self, "data", data)


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand a validated message on a subscribed topic to the application."""

    topic: str
    message_id: bytes
    data: bytes
    received_from: NodeId | None
    """The peer it came from, or ``None`` for this node's own publish."""


@dataclass(frozen=True, slots=True)
class PenalizePeer:
    """The peer misbehaved past tolerance (graylisted, or a malformed RPC): disconnect or ban it.

    The router already ignores everything further the peer sends.
    """

    peer: NodeId
    reason: str


GossipAction = SendRpc | Deliver | PenalizePeer
