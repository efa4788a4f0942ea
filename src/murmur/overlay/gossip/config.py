"""Gossip mesh parameters, with gossipsub v1.1's defaults and Murmur's memory caps.

Theory of operation: the router keeps, per subscribed topic, a mesh of about ``d`` peers (kept
between ``d_lo`` and ``d_hi`` by the heartbeat) that receive every message in full, and
advertises recent message ids lazily (IHAVE) to ``d_lazy`` other topic peers. Topics in
``lazy_topics`` are forwarded lazily to the mesh too: an IHAVE, the message only on IWANT. Every
cache and queue the router owns has a cap here, so a hostile peer can cost this node a bounded
amount of memory and work; the scores below decide when a peer is cut off. An inconsistent
configuration raises :class:`ConfigError` when built.
"""

from __future__ import annotations

from dataclasses import dataclass

from murmur.base.errors import ConfigError
from murmur.overlay.routing import MessageType
from murmur.wire.gossip import (
    MAX_IDS_PER_CONTROL,
    MAX_PRUNE_BACKOFF_S,
    MAX_RPC_BYTES,
    is_valid_topic,
)


@dataclass(frozen=True, slots=True)
class GossipConfig:
    # Mesh degree.
    d: int = 6
    d_lo: int = 4
    d_hi: int = 12
    d_lazy: int = 6
    d_out: int = 2
    """Mesh peers per topic that must be peers this node chose to dial (``outbound`` in
    ``GossipRouter.add_peer``), gossipsub v1.1's ``D_out``: pruning an oversized mesh keeps them,
    the heartbeat grafts them when the mesh has fewer, and their GRAFT is taken even at
    ``d_hi``. Peers that dial in, however many, then cannot hold every mesh slot."""
    # Timing.
    heartbeat_interval_s: float = 1.0
    history_length: int = 5
    """Heartbeats a message stays in the message cache (and can be served to IWANT)."""
    history_gossip: int = 3
    """Heartbeats of message ids advertised in IHAVE."""
    seen_ttl_s: float = 120.0
    fanout_ttl_s: float = 60.0
    prune_backoff_s: int = 60
    iwant_followup_s: float = 3.0
    """How long an IWANT waits for its message before the id is asked of another peer that
    offered it (gossipsub v1.1's ``iwant_followup_time``); until then, offers of the same id
    from other peers ask for nothing, so one message costs one copy, not one per offer."""
    # Lazy forwarding.
    lazy_topics: frozenset[str] = frozenset({MessageType.PEER_ANNOUNCEMENT.value})
    """Topics whose messages a relay forwards to its mesh as ids (IHAVE at the next heartbeat),
    sending the message only to peers that ask (IWANT). For large records that may arrive a few
    seconds late: a node then takes about one copy of each instead of one from most mesh peers
    (a 9 kB peer announcement reached each node 5.1 times when pushed in full with d = 6).
    A node's own messages are still pushed in full to its mesh."""
    lazy_history_length: int = 30
    """Heartbeats a lazy-topic message stays in the message cache: it is offered up to a
    heartbeat after it arrived, and an id may be asked of up to ``d`` offerers, each after
    ``iwant_followup_s``, so it must outlive ``1 + d * iwant_followup_s`` seconds."""
    # Caps (memory and work per peer and in total).
    max_peers: int = 1024
    max_topics: int = 64
    """Topics this node subscribes to."""
    max_peer_topics: int = 64
    """Topics one peer may subscribe to (more are ignored)."""
    max_fanout_topics: int = 64
    seen_capacity: int = 262_144
    mcache_max_messages: int = 65_536
    mcache_max_bytes: int = 64 * 1024 * 1024
    max_ihave_messages: int = 10
    """IHAVE entries accepted from one peer per heartbeat."""
    max_ihave_length: int = 5000
    """Message ids asked for (IWANT) from one peer per heartbeat, and advertised per IHAVE."""
    max_iwant_replies: int = 5000
    """Messages served to one peer's IWANTs per heartbeat."""
    gossip_retransmission: int = 3
    """Times one peer is sent the same cached message in answer to IWANT while it is cached
    (gossipsub's default); further asks for it are ignored, so a peer cannot have the whole
    message cache sent to it again every heartbeat for a few bytes of ids."""
    max_pending_iwants: int = 16_384
    """Ids asked for and awaited (each with up to ``d`` other peers that offered it); beyond
    this, an offered id is asked for without being remembered."""
    max_outbox_bytes: int = 4 * 1024 * 1024
    """Bytes queued for one peer between two drains; beyond this, records are dropped."""
    # Peer score: penalties subtract, the score decays towards 0 each heartbeat.
    invalid_message_penalty: float = 10.0
    backoff_violation_penalty: float = 5.0
    malformed_rpc_penalty: float = 100.0
    broken_promise_threshold: float = 10.0
    """Unanswered IWANTs a peer may leave (decaying by ``score_decay`` each heartbeat, so
    about one a heartbeat, sustained) before each further one is penalised; counted by node
    id, across reconnects, like the score."""
    broken_promise_penalty: float = 1.0
    score_decay: float = 0.9
    gossip_threshold: float = -10.0
    """Below this score a peer is neither sent IHAVE nor answered."""
    graylist_threshold: float = -50.0
    """Below this score a peer is ignored and reported for disconnection."""
    max_retained_scores: int = 1024
    """Disconnected peers whose negative score or unanswered IWANTs are remembered (until they
    decay; beyond this, those that will decay soonest are forgotten, see
    ``murmur.overlay.gossip.score``), and, apart, those whose allowances spent this heartbeat
    are (beyond this, the least recently departed forgotten), so reconnecting resets none of
    them."""

    def __post_init__(self) -> None:
        if not 0 < self.d_lo <= self.d <= self.d_hi:
            raise ConfigError("gossip degrees need 0 < d_lo <= d <= d_hi")
        if self.d_lazy < 0:
            raise ConfigError("gossip d_lazy must be >= 0")
        if not 0 <= self.d_out < self.d_lo or self.d_out > self.d // 2:
            raise ConfigError("gossip needs 0 <= d_out < d_lo and d_out <= d / 2")
        if not 0 < self.history_gossip <= min(self.history_length, self.lazy_history_length):
            raise ConfigError("gossip needs 0 < history_gossip <= both history lengths")
        for name in ("heartbeat_interval_s", "seen_ttl_s", "fanout_ttl_s", "iwant_followup_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"gossip {name} must be > 0")
        if not 0 < self.prune_backoff_s <= MAX_PRUNE_BACKOFF_S:
            raise ConfigError(f"gossip prune_backoff_s must be in 1..{MAX_PRUNE_BACKOFF_S}")
        for name in (
            "max_peers",
            "max_topics",
            "max_peer_topics",
            "max_fanout_topics",
            "seen_capacity",
            "mcache_max_messages",
            "max_ihave_messages",
            "max_iwant_replies",
            "gossip_retransmission",
            "max_pending_iwants",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"gossip {name} must be >= 1")
        if not 1 <= self.max_ihave_length <= MAX_IDS_PER_CONTROL:
            raise ConfigError(f"gossip max_ihave_length must be in 1..{MAX_IDS_PER_CONTROL}")
        if not all(is_valid_topic(t) for t in self.lazy_topics):
            raise ConfigError("gossip lazy_topics must be valid topic names")
        if self.mcache_max_bytes < MAX_RPC_BYTES or self.max_outbox_bytes < MAX_RPC_BYTES:
            raise ConfigError(f"gossip byte caps must be >= {MAX_RPC_BYTES}")
        if not 0 < self.score_decay < 1:
            raise ConfigError("gossip score_decay must be in (0, 1)")
        if not self.graylist_threshold < self.gossip_threshold <= 0:
            raise ConfigError("gossip needs graylist_threshold < gossip_threshold <= 0")
        for name in (
            "invalid_message_penalty",
            "backoff_violation_penalty",
            "malformed_rpc_penalty",
            "broken_promise_threshold",
            "broken_promise_penalty",
            "max_retained_scores",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"gossip {name} must be >= 0")
