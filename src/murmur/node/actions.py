"""What the node core asks its runtime to do, and what it reports to the application."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NewType

from murmur.base.ids import NodeId
from murmur.node.config import BootstrapPeer

ConnId = NewType("ConnId", int)
"""Chosen by the runtime for each transport connection."""


@dataclass(frozen=True, slots=True)
class SendBytes:
    conn_id: ConnId
    data: bytes = field(repr=False)

    def __init__(self, conn_id: ConnId, data: bytes) -> None:
        # Written out: mypyc compiles this one, the dataclasses module's runs interpreted
        # (about 12 x slower), and one is built for every frame.
        object.__setattr__(self, "conn_id", conn_id)
        object.__setattr__(self, "data", data)


@dataclass(frozen=True, slots=True)
class CloseConnection:
    conn_id: ConnId
    reason: str


@dataclass(frozen=True, slots=True)
class Dial:
    """Open a transport connection to ``target``; answer with ``connection_opened`` or
    ``dial_failed`` naming the same target."""

    target: BootstrapPeer


@dataclass(frozen=True, slots=True)
class MessageDelivered:
    """A gossip message on a subscribed topic reached this node (own publishes included)."""

    topic: str
    message_id: bytes
    data: bytes = field(repr=False)
    received_from: NodeId | None


@dataclass(frozen=True, slots=True)
class PrivateReplyArrived:
    """The reply to a private request (``request_private``) came back through its circuit."""

    request_id: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class PrivateSendFailed:
    """A private send or request could not be carried (no circuit in time, circuit lost...)."""

    send_id: int
    reason: str


NodeAction = (
    SendBytes | CloseConnection | Dial | MessageDelivered | PrivateReplyArrived | PrivateSendFailed
)
