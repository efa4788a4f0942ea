"""Traffic shaping for the private path (seed onion-gossip phase 2): jitter, slot-based sending
with cover, and padding frames on idle links. Message padding itself is a wire format
(:func:`murmur.wire.cells.pad_to_bucket`); the per-cell relay delay lives in the relay
(``RelayConfig.forward_delay``). Levels that combine these are in ``murmur.node.levels``.
"""

from murmur.overlay.shaping.config import (
    MAX_DELAY_S,
    TYPICAL_TX_BUCKET_BYTES,
    CoverConfig,
    DelayRange,
    RateConfig,
    ResendConfig,
    ShapingPolicy,
    TimingLaw,
)
from murmur.overlay.shaping.delay_line import DelayLine
from murmur.overlay.shaping.link_padding import (
    CELL_FRAME_PADDING_BYTES,
    IdlePadder,
    LinkPaddingConfig,
)
from murmur.overlay.shaping.origin import CircuitPort, QueueFull, ShapedOrigin
from murmur.overlay.shaping.sender import RateSender

__all__ = [
    "CELL_FRAME_PADDING_BYTES",
    "MAX_DELAY_S",
    "TYPICAL_TX_BUCKET_BYTES",
    "CircuitPort",
    "CoverConfig",
    "DelayLine",
    "DelayRange",
    "IdlePadder",
    "LinkPaddingConfig",
    "QueueFull",
    "RateConfig",
    "RateSender",
    "ResendConfig",
    "ShapedOrigin",
    "ShapingPolicy",
    "TimingLaw",
]
