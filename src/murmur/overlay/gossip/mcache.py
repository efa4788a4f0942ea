"""The message cache: recent messages, kept to answer IWANT and to advertise in IHAVE.

Theory of operation (gossipsub's ``mcache``): messages are stored as their encoded wire record,
ready to be queued for a peer unchanged. Ids are grouped in windows, one per heartbeat, newest
first, and within a window by topic; :meth:`shift` (each heartbeat) drops the oldest window, so a
message stays ``history_length`` heartbeats. :meth:`gossip_ids` gives, for one topic, the ids of
the newest ``history_gossip`` windows for IHAVE, at most ``limit`` of them drawn at random. Two
caps bound memory, a message count and a byte count; when either is exceeded, messages of the
oldest window go first.

An IWANT answer is counted per message and peer (:meth:`serve`): one peer gets the same message
at most ``limit`` times while it is cached (gossipsub's ``gossip_retransmission``), so a 20-byte
id cannot have a large message sent to it again every heartbeat. The counts go with their message,
and there are at most ``max_served_counts`` of them: beyond that the counts of the message served
first are forgotten (its copies are then limited only by the per-heartbeat reply cap again).

Work is bounded per message, not by the cache's size: ``put`` and an eviction are O(1); each id
is dropped once (by ``shift`` or an eviction); :meth:`gossip_ids` copies one topic's ids at C
speed and draws at most ``limit`` of them.
"""

from __future__ import annotations

from collections import deque

from murmur.base.rng import Rng

MAX_SERVED_COUNTS = 65_536
"""(message, peer) retransmission counts kept at most: a few MB, where peers asking for every
cached message could otherwise make them grow to peers x cached messages."""

_Window = dict[str, deque[bytes]]
"""One heartbeat's ids by topic, oldest first; a topic's entry is dropped once empty."""


class MessageCache:
    __slots__ = (
        "_bytes",
        "_entries",
        "_history_gossip",
        "_max_bytes",
        "_max_messages",
        "_max_served_counts",
        "_served",
        "_served_counts",
        "_windows",
    )

    def __init__(
        self,
        *,
        history_length: int,
        history_gossip: int,
        max_messages: int,
        max_bytes: int,
        max_served_counts: int = MAX_SERVED_COUNTS,
    ) -> None:
        self._history_gossip = history_gossip
        self._max_served_counts = max_served_counts
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._entries: dict[bytes, tuple[str, bytes]] = {}
        self._windows: deque[_Window] = deque({} for _ in range(history_length))
        self._bytes = 0
        self._served: dict[bytes, dict[bytes, int]] = {}
        """Message id -> peer -> IWANT answers sent, for cached messages served at least once."""
        self._served_counts = 0
        """The (message, peer) counts held in ``_served``, kept at most ``max_served_counts``."""

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, message_id: bytes) -> bool:
        return message_id in self._entries

    @property
    def stored_bytes(self) -> int:
        """Total size of the cached records."""
        return self._bytes

    def put(self, message_id: bytes, topic: str, record: bytes) -> None:
        entries = self._entries
        if message_id in entries:
            return
        entries[message_id] = (topic, record)
        window = self._windows[0]
        ids = window.get(topic)
        if ids is None:
            ids = window[topic] = deque()
        ids.append(message_id)
        self._bytes += len(record)
        while len(entries) > self._max_messages or self._bytes > self._max_bytes:
            self._evict_oldest()

    def get(self, message_id: bytes) -> bytes | None:
        """The cached wire record, or ``None`` if the message is unknown or gone."""
        entry = self._entries.get(message_id)
        return None if entry is None else entry[1]

    def serve(self, message_id: bytes, peer: bytes, limit: int) -> bytes | None:
        """The cached record to answer ``peer``'s IWANT, counted; ``None`` if the message is
        unknown or gone, or ``peer`` has already been sent it ``limit`` times."""
        entry = self._entries.get(message_id)
        if entry is None:
            return None
        counts = self._served.get(message_id)
        if counts is None:
            counts = self._served[message_id] = {}
        served = counts.get(peer, 0)
        if served >= limit:
            return None
        counts[peer] = served + 1
        if not served:
            self._served_counts += 1
            while self._served_counts > self._max_served_counts:
                self._forget_served(next(iter(self._served)))
        return entry[1]

    def _forget_served(self, message_id: bytes) -> None:
        counts = self._served.pop(message_id, None)
        if counts is not None:
            self._served_counts -= len(counts)

    def gossip_topics(self) -> list[str]:
        """Topics with messages in the newest ``history_gossip`` windows."""
        topics: dict[str, None] = {}
        for i in range(self._history_gossip):
            topics.update(dict.fromkeys(self._windows[i]))
        return list(topics)

    def gossip_ids(self, topic: str, limit: int, rng: Rng) -> list[bytes]:
        """Ids on ``topic`` from the newest ``history_gossip`` windows, newest window first; if
        there are more than ``limit``, a random ``limit`` of them in random order."""
        ids: list[bytes] = []
        for i in range(self._history_gossip):
            window_ids = self._windows[i].get(topic)
            if window_ids is not None:
                ids.extend(window_ids)
        return rng.sample(ids, limit) if len(ids) > limit else ids

    def shift(self) -> None:
        """Start a new window and forget the oldest one."""
        entries = self._entries
        served = self._served
        for ids in self._windows.pop().values():
            for message_id in ids:
                self._bytes -= len(entries.pop(message_id)[1])
                if served:
                    self._forget_served(message_id)
        self._windows.appendleft({})

    def _evict_oldest(self) -> None:
        for window in reversed(self._windows):
            if window:
                topic, ids = next(iter(window.items()))
                message_id = ids.popleft()
                self._bytes -= len(self._entries.pop(message_id)[1])
                self._forget_served(message_id)
                if not ids:
                    del window[topic]
                return
