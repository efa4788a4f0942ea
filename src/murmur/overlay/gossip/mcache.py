"""The message cache: recent messages, kept to answer IWANT and to advertise in IHAVE.

Theory of operation (gossipsub's ``mcache``): messages are stored as their encoded wire record,
ready to be queued for a peer unchanged. Ids are grouped in windows, one per heartbeat, newest
first; :meth:`shift` (each heartbeat) drops the oldest window, so a message stays
``history_length`` heartbeats, and :meth:`gossip_ids` lists the ids of the newest
``history_gossip`` windows for IHAVE. Two caps bound memory, a message count and a byte count;
when either is exceeded the oldest messages go first.
"""

from __future__ import annotations

from collections import deque


class MessageCache:
    __slots__ = ("_bytes", "_entries", "_history_gossip", "_max_bytes", "_max_messages", "_windows")

    def __init__(
        self, *, history_length: int, history_gossip: int, max_messages: int, max_bytes: int
    ) -> None:
        self._history_gossip = history_gossip
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._entries: dict[bytes, tuple[str, bytes]] = {}
        self._windows: deque[deque[bytes]] = deque(deque() for _ in range(history_length))
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Total size of the cached records."""
        return self._bytes

    def put(self, message_id: bytes, topic: str, record: bytes) -> None:
        if message_id in self._entries:
            return
        self._entries[message_id] = (topic, record)
        self._windows[0].append(message_id)
        self._bytes += len(record)
        while len(self._entries) > self._max_messages or self._bytes > self._max_bytes:
            self._evict_oldest()

    def get(self, message_id: bytes) -> bytes | None:
        """The cached wire record, or ``None`` if the message is unknown or gone."""
        entry = self._entries.get(message_id)
        return None if entry is None else entry[1]

    def gossip_ids(self) -> dict[str, list[bytes]]:
        """Ids of the newest ``history_gossip`` windows, grouped by topic."""
        by_topic: dict[str, list[bytes]] = {}
        for i in range(self._history_gossip):
            for message_id in self._windows[i]:
                by_topic.setdefault(self._entries[message_id][0], []).append(message_id)
        return by_topic

    def shift(self) -> None:
        """Start a new window and forget the oldest one."""
        for message_id in self._windows.pop():
            self._bytes -= len(self._entries.pop(message_id)[1])
        self._windows.appendleft(deque())

    def _evict_oldest(self) -> None:
        for window in reversed(self._windows):
            if window:
                self._bytes -= len(self._entries.pop(window.popleft())[1])
                return
