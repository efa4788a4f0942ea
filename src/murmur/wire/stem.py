"""The Dandelion++ stem message: one transaction relayed hop by hop on the stem.

Theory of operation: a stem message is the body of a link message on the ``STEM`` envelope
channel. It carries what the node that fluffs it will publish into the gossip mesh (a topic and
the data), nothing else: no origin, no hop count, no timestamp, so a relay cannot tell from the
bytes how far the transaction has come. Its id is the gossip :func:`message_id` of its topic and
data, computed on arrival, so a relay recognises the transaction when it later arrives by gossip.

Layout (all lengths checked; the full description and a vector are in
``docs/protocol/dandelion.md``)::

    u8  topic_length   1..64
    ..  topic          ASCII [a-z0-9_.-]
    u32 data_length    1..MAX_MESSAGE_DATA_BYTES (131,072)
    ..  data

:func:`decode_stem` raises only :class:`RemoteProtocolError` (``truncated``, ``bad_topic``,
``bad_length``, ``trailing_data``); :class:`StemMessage` checks itself, so
:func:`encode_stem` never writes bytes its peer would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.wire.codec import Reader, Writer
from murmur.wire.gossip import MAX_MESSAGE_DATA_BYTES, MAX_TOPIC_BYTES, is_valid_topic, message_id

MAX_STEM_BYTES = 1 + MAX_TOPIC_BYTES + 4 + MAX_MESSAGE_DATA_BYTES


@dataclass(frozen=True, slots=True)
class StemMessage:
    """A transaction on the stem: the topic and data its fluffing node publishes."""

    topic: str
    data: bytes = field(repr=False)
    message_id: bytes = field(init=False, repr=False, compare=False)
    """The gossip message id the transaction will have once fluffed."""

    def __post_init__(self) -> None:
        if not is_valid_topic(self.topic):
            raise LocalProtocolError(f"invalid stem topic {self.topic!r}")
        if not 0 < len(self.data) <= MAX_MESSAGE_DATA_BYTES:
            raise LocalProtocolError(f"stem data must be 1..{MAX_MESSAGE_DATA_BYTES} bytes")
        object.__setattr__(self, "message_id", message_id(self.topic, self.data))


def encode_stem(message: StemMessage) -> bytes:
    return (
        Writer()
        .push_vbytes(message.topic.encode("ascii"), width=1)
        .push_vbytes(message.data, width=4)
        .getvalue()
    )


def decode_stem(data: bytes) -> StemMessage:
    reader = Reader(data)
    raw_topic = reader.pull_vbytes(MAX_TOPIC_BYTES, width=1)
    topic = raw_topic.decode("ascii", errors="replace")
    if not is_valid_topic(topic):
        raise RemoteProtocolError("bad_topic", "stem topic")
    body = reader.pull_vbytes(MAX_MESSAGE_DATA_BYTES, width=4)
    reader.expect_end()
    if not body:
        raise RemoteProtocolError("bad_length", "empty stem data")
    return StemMessage(topic, body)
