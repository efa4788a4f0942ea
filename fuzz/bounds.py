"""What a peer may not grow in a circuit relay, whatever it sends: each peer-fed structure stays
within the limit its config gives it (shared by the node and relay harnesses)."""

from __future__ import annotations

from murmur.overlay.circuits.relay import (
    DEPARTED_BUDGETS,
    TIMER_COMPACT_FACTOR,
    TIMER_COMPACT_MIN,
    CircuitRelay,
)


def check_relay(relay: CircuitRelay) -> None:
    config = relay.config
    assert 0 <= relay._reassembly_bytes <= config.max_reassembly_bytes, "reassembly bytes"
    assert len(relay._held) <= config.max_delayed_cells, "held cells"
    assert len(relay._creates) <= config.max_pending_creates, "pending creates"
    assert relay.circuit_count <= config.max_circuits, "circuits"
    assert len(relay._departed_budgets) <= DEPARTED_BUDGETS, "departed peers' budgets"
    for queue in relay._queues.values():
        assert len(queue) <= config.max_queued_cells_per_peer, "cell queue"
    timer_bound = TIMER_COMPACT_FACTOR * max(TIMER_COMPACT_MIN, relay.circuit_count) + 1
    assert len(relay._timers) <= timer_bound, "relay timers"
