"""What the gossip router asks its driver to do (drained with ``drain_actions``)."""

from __future__ import annotations

from dataclasses import dataclass

from murmur.base.ids import NodeId


@dataclass(frozen=True, slots=True)
class SendRpc:
    """Send this encoded gossip RPC to ``peer``."""

    peer: NodeId
    data: bytes


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
