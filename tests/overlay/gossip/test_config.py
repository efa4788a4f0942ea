"""GossipConfig: the issue's defaults, and inconsistent settings refused."""

from __future__ import annotations

import pytest

from murmur.base.errors import ConfigError
from murmur.overlay.gossip import GossipConfig


def test_defaults_are_gossipsub_v11() -> None:
    c = GossipConfig()
    assert (c.d, c.d_lo, c.d_hi, c.d_lazy) == (6, 4, 12, 6)
    assert c.heartbeat_interval_s == 1.0
    assert (c.history_length, c.history_gossip) == (5, 3)
    assert (c.seen_ttl_s, c.fanout_ttl_s, c.prune_backoff_s) == (120.0, 60.0, 60)


@pytest.mark.parametrize(
    "changes",
    [
        {"d_lo": 0},
        {"d_lo": 7},
        {"d_hi": 5},
        {"d_lazy": -1},
        {"d_out": -1},
        {"d_out": 4},  # not below d_lo
        {"d": 5, "d_out": 3},  # above d / 2
        {"history_gossip": 6},
        {"history_gossip": 0},
        {"heartbeat_interval_s": 0.0},
        {"seen_ttl_s": -1.0},
        {"prune_backoff_s": 0},
        {"prune_backoff_s": 70_000},
        {"seen_capacity": 0},
        {"max_ihave_length": 5001},
        {"max_outbox_bytes": 1000},
        {"score_decay": 1.0},
        {"graylist_threshold": -5.0},
        {"gossip_threshold": 1.0},
        {"invalid_message_penalty": -1.0},
    ],
)
def test_inconsistent_configs_are_refused(changes: dict) -> None:
    with pytest.raises(ConfigError):
        GossipConfig(**changes)
