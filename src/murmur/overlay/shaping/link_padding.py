"""Padding frames on idle links: a link that has been quiet for a random while sends one.

Theory of operation (Tor's connection padding, padding-spec §2, made sans-I/O). The owner polls
every link with the total bytes it has sent so far (:meth:`IdlePadder.observe`); any change is
activity and restarts the link's quiet timer with a threshold drawn uniformly from
``config.quiet`` (a fixed threshold would make padding recognisable by its exact spacing). When a
link has sent nothing for its threshold, ``observe`` answers True and the owner sends one
PADDING frame of ``frame_bytes`` (by default one cell's worth, so the record is as long as a
cell's), which the next ``observe`` sees as activity. The receiver drops padding frames, and it
keeps the link from ever going quiet, so idle and busy links look alike. The padder learns of a
send only when polled, so a link may stay quiet up to one polling interval longer than its
threshold; it never pads a link that sent within its threshold.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.overlay.shaping.config import DelayRange
from murmur.wire.cells import CELL_BYTES
from murmur.wire.envelope import CHANNEL_BYTES

K = TypeVar("K", bound=Hashable)

TOR_QUIET = DelayRange(1.5, 9.5)
"""Tor's connection-padding timeout range (padding-spec §2.2), seconds."""
CELL_FRAME_PADDING_BYTES = CHANNEL_BYTES + CELL_BYTES
"""Padding that makes a padding-only frame exactly as long as a frame carrying one cell
(a cell travels with a one-byte channel tag, :mod:`murmur.wire.envelope`)."""


@dataclass(frozen=True, slots=True)
class LinkPaddingConfig:
    quiet: DelayRange = TOR_QUIET
    """How long a link must have been quiet, drawn afresh for every quiet period."""
    frame_bytes: int = CELL_FRAME_PADDING_BYTES

    def __post_init__(self) -> None:
        if self.quiet.min_s <= 0:
            raise ValueError("a link must be quiet for some time before it is padded")
        if not 0 <= self.frame_bytes <= 65_536:
            raise ValueError("frame_bytes out of range")


@dataclass(slots=True)
class _Link:
    sent: int
    due_at: float
    """End of the current quiet threshold (compared as stored, so the deadline always fires)."""


class IdlePadder(Generic[K]):
    __slots__ = ("_links", "_rng", "config", "counters")

    def __init__(self, config: LinkPaddingConfig, rng: Rng) -> None:
        self.config = config
        self.counters = Counters()
        self._rng = rng
        self._links: dict[K, _Link] = {}

    def observe(self, link: K, bytes_sent: int, now: float) -> bool:
        """Records the link's sent total; True when it is due one padding frame now."""
        state = self._links.get(link)
        if state is None or state.sent != bytes_sent:
            self._links[link] = _Link(bytes_sent, now + self.config.quiet.draw(self._rng))
            return False
        if now < state.due_at:
            return False
        self.counters.inc("padding_frames")
        return True

    def retain(self, links: Iterable[K]) -> None:
        """Forgets every link not in ``links`` (closed ones)."""
        keep = set(links)
        for link in [k for k in self._links if k not in keep]:
            del self._links[link]

    def next_deadline(self) -> float | None:
        return min((s.due_at for s in self._links.values()), default=None)
