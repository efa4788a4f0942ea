"""Private transactions through onion circuits between real node processes on loopback.

Each node listens on its own /16 (127.N.0.1), so the circuit rule "distinct /16 per circuit,
never the origin's own" is exercised for real.
"""

from __future__ import annotations

import pytest

from murmur.interfaces.testnet import run_testnet

pytestmark = pytest.mark.integration


def test_hundred_private_transactions_reach_all_twelve_nodes_exactly_once() -> None:
    result = run_testnet(
        nodes=12, messages=20, tx=100, path="private", size=300, rate=100.0, seed=5
    )
    assert result["delivery_ratio"] == 1.0
    assert len(result["latencies_ms"]) == 100 * 12
    assert result["duplicate_deliveries"] == 0
    assert result["exit_publications"] == 100
    assert result["fast_path_delivery_ratio"] == 1.0
    assert result["relay_participation"] > 0.5
    assert result["handshake_failures"] == 0
    # every node enters through one guard, kept in its directory for the next start
    assert result["entry_guards"] == 1 and result["nodes_with_guards_saved"] == 12
