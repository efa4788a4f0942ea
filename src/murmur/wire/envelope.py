"""The first byte of every link message names the protocol it belongs to.

One link carries every overlay protocol; the node dispatches on this byte, and an unknown value
is a protocol violation (the peer is closed and, being authenticated, banned).
"""

from __future__ import annotations

import enum

from murmur.base.errors import RemoteProtocolError


class Channel(enum.IntEnum):
    GOSSIP = 1
    CIRCUIT = 2
    STEM = 3
    """Dandelion++ stem messages (:mod:`murmur.wire.stem`)."""


_BY_CODE = {int(c): c for c in Channel}
CHANNEL_BYTES = 1
"""The channel byte :func:`wrap` puts before a link message."""


def wrap(channel: Channel, body: bytes) -> bytes:
    return channel.to_bytes(CHANNEL_BYTES, "big") + body


def unwrap(message: bytes) -> tuple[Channel, bytes]:
    if not message:
        raise RemoteProtocolError("truncated", "empty link message")
    channel = _BY_CODE.get(message[0])
    if channel is None:
        raise RemoteProtocolError("bad_channel", str(message[0]))
    return channel, message[1:]
