"""One copy of each gossip message for every router in a process that hosts many nodes.

Why: a router keeps what it accepts (the data in its message store, the encoded record in its
message cache), and each node decodes its own copy from the bytes its link delivered. One node
per process, that is the right cost. A simulator hosting a thousand nodes pays it a thousand
times: when every node re-announces (a 9 kB signed record, every hour) the copies come to
18 GB. :class:`SharedMessages` hands every router the same ``(data, id, record)`` for the same
``(topic, data)``, exactly what the router would have computed itself (the id is a hash of
topic and data, the record its encoding), so sharing changes no byte and no decision, only how
many copies sit in memory (and how often the id's hash is computed).

Bounded: the newest ``capacity`` messages are kept; an older one is simply computed again.
"""

from __future__ import annotations

from collections import OrderedDict

from murmur.base.bounded import remember
from murmur.wire.gossip import Message, encode_message, message_id

SHARED_MESSAGES = 8192
"""Messages remembered: far above what a thousand-node network has in flight at once."""


class SharedMessages:
    __slots__ = ("_capacity", "_entries", "hits", "misses")

    def __init__(self, capacity: int = SHARED_MESSAGES) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, bytes], tuple[bytes, bytes, bytes]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def share(self, topic: str, data: bytes) -> tuple[bytes, bytes, bytes]:
        """The process's copy of ``data``, its message id and its encoded record."""
        key = (topic, data)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            return entry
        self.misses += 1
        entry = (data, message_id(topic, data), encode_message(Message(topic, data)))
        # Only a miss is remembered: the newest messages stay, and a hit moves none.
        remember(self._entries, key, entry, self._capacity)
        return entry
