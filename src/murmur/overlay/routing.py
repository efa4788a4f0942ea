"""Which path each message type travels: the seed's dual-path table, in one place.

Theory of operation: every application message belongs to one :class:`MessageType`, whose value
is also its gossip topic. Consensus traffic, blocks and peer announcements are public and
time-critical, so they take the *fast* path (the gossip mesh: low latency, visible origin).
Transactions and sync requests reveal who sent them (a wallet's coins, its addresses), so they
must take the *private* path (onion circuits, later the mixnet). :data:`PATH_BY_TYPE` is the only
place this decision is written down; everything else asks :func:`path_for_topic`.

Until this node offers a private path, :func:`require_fast_path` refuses private topics with
:class:`PrivatePathUnavailable` rather than letting them leak into the mesh in the clear. Topics
that are not a :class:`MessageType` (application extensions) are public by default.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from murmur.base.errors import LocalProtocolError


class MessageType(enum.Enum):
    """Application message types; the value is the gossip topic the type is published on."""

    SCP_STATEMENT = "scp_statement"
    SCP_NOMINATE = "scp_nominate"
    BLOCK_HEADER = "block_header"
    BLOCK_BODY = "block_body"
    PEER_ANNOUNCEMENT = "peer_announcement"
    TRANSACTION = "transaction"
    SYNC_REQUEST = "sync_request"


class MessagePath(enum.Enum):
    FAST = "fast"
    """The gossip mesh: low latency, the first relay sees the origin."""
    PRIVATE = "private"
    """Onion circuits / mixnet: higher latency, the origin stays hidden."""


PATH_BY_TYPE: Mapping[MessageType, MessagePath] = MappingProxyType(
    {
        # Consensus is time-critical and does not reveal who owns which coins.
        MessageType.SCP_STATEMENT: MessagePath.FAST,
        MessageType.SCP_NOMINATE: MessagePath.FAST,
        # Blocks are public information.
        MessageType.BLOCK_HEADER: MessagePath.FAST,
        MessageType.BLOCK_BODY: MessagePath.FAST,
        # Peer announcements are public by design.
        MessageType.PEER_ANNOUNCEMENT: MessagePath.FAST,
        # A transaction's first relay would learn its origin: private.
        MessageType.TRANSACTION: MessagePath.PRIVATE,
        # Sync requests can name wallet addresses: private.
        MessageType.SYNC_REQUEST: MessagePath.PRIVATE,
    }
)

_PATH_BY_TOPIC: Mapping[str, MessagePath] = MappingProxyType(
    {message_type.value: path for message_type, path in PATH_BY_TYPE.items()}
)


class PrivatePathUnavailable(LocalProtocolError):
    """A private message was about to be sent, and this node has no private path yet."""

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"topic {topic!r} must travel the private path (onion circuits), which this node "
            "does not offer yet; refusing to send it in the clear"
        )
        self.topic = topic


def path_for_topic(topic: str) -> MessagePath:
    """The path a topic's messages must travel; unknown application topics are FAST."""
    return _PATH_BY_TOPIC.get(topic, MessagePath.FAST)


def require_fast_path(topic: str) -> None:
    """Raise :class:`PrivatePathUnavailable` unless ``topic`` may travel the gossip mesh."""
    if path_for_topic(topic) is not MessagePath.FAST:
        raise PrivatePathUnavailable(topic)
