"""Bounded reassembly of messages split across DATA or REPLY cells.

Theory of operation. A circuit delivers its cells in order, so a message's fragments arrive with
indexes ``0, 1, …, count-1``; anything else is a protocol error and discards that message. Memory
is bounded three ways: a message is at most ``max_bytes`` (checked fragment by fragment, never
after the fact), at most ``max_pending`` messages per circuit are in progress, and a message not
completed within ``timeout_s`` of its first fragment is dropped by :meth:`Reassembly.expire`.
A one-fragment message is returned at once and never buffered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from murmur.base.errors import RemoteProtocolError
from murmur.wire.cells import MAX_ENVELOPE_BYTES, Fragment


@dataclass(slots=True)
class _Partial:
    count: int
    deadline: float
    parts: list[bytes] = field(default_factory=list)
    size: int = 0


class Reassembly:
    __slots__ = ("_partials", "buffered_bytes", "max_bytes", "max_pending", "timeout_s")

    def __init__(
        self, *, max_pending: int, timeout_s: float, max_bytes: int = MAX_ENVELOPE_BYTES
    ) -> None:
        self.max_bytes = max_bytes
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.buffered_bytes = 0
        self._partials: dict[int, _Partial] = {}

    def __len__(self) -> int:
        return len(self._partials)

    def add(self, fragment: Fragment, now: float) -> bytes | None:
        """The whole message once its last fragment is in, else None."""
        partial = self._partials.get(fragment.message_id)
        if partial is None:
            if fragment.index != 0:
                raise RemoteProtocolError("bad_fragment", "message does not start at index 0")
            if fragment.count == 1:
                return self._checked(fragment.chunk)
            if len(self._partials) >= self.max_pending:
                raise RemoteProtocolError("too_many_reassemblies", f"{self.max_pending} pending")
            partial = _Partial(fragment.count, now + self.timeout_s)
            self._partials[fragment.message_id] = partial
        elif fragment.index != len(partial.parts) or fragment.count != partial.count:
            self._discard(fragment.message_id)
            raise RemoteProtocolError("bad_fragment", "out of order or inconsistent count")
        if partial.size + len(fragment.chunk) > self.max_bytes:
            self._discard(fragment.message_id)
            raise RemoteProtocolError("message_too_large", f"> {self.max_bytes} bytes")
        partial.parts.append(fragment.chunk)
        partial.size += len(fragment.chunk)
        self.buffered_bytes += len(fragment.chunk)
        if len(partial.parts) < partial.count:
            return None
        self._discard(fragment.message_id)
        return b"".join(partial.parts)

    def _checked(self, message: bytes) -> bytes:
        if len(message) > self.max_bytes:
            raise RemoteProtocolError("message_too_large", f"> {self.max_bytes} bytes")
        return message

    def _discard(self, message_id: int) -> None:
        partial = self._partials.pop(message_id)
        self.buffered_bytes -= partial.size

    def expire(self, now: float) -> int:
        """Drops messages past their deadline; returns how many."""
        stale = [mid for mid, p in self._partials.items() if p.deadline <= now]
        for message_id in stale:
            self._discard(message_id)
        return len(stale)

    def clear(self) -> None:
        self._partials.clear()
        self.buffered_bytes = 0

    def next_deadline(self) -> float | None:
        if not self._partials:  # the usual case, asked for every circuit after every event
            return None
        return min(p.deadline for p in self._partials.values())
