"""The gossip mesh (fast path), sans-I/O: see :mod:`murmur.overlay.gossip.router`."""

from murmur.overlay.gossip.actions import Deliver, GossipAction, PenalizePeer, SendRpc
from murmur.overlay.gossip.config import GossipConfig
from murmur.overlay.gossip.router import GossipRouter, Validation, Validator

__all__ = [
    "Deliver",
    "GossipAction",
    "GossipConfig",
    "GossipRouter",
    "PenalizePeer",
    "SendRpc",
    "Validation",
    "Validator",
]
