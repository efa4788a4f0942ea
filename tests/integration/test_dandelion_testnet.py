"""Dandelion++-routed transactions between real node processes on loopback."""

from __future__ import annotations

import pytest

from murmur.interfaces.testnet import run_testnet

pytestmark = pytest.mark.integration


def test_stemmed_transactions_reach_all_six_nodes_exactly_once() -> None:
    result = run_testnet(nodes=6, messages=10, tx=30, path="dandelion", size=300, rate=50.0, seed=4)
    assert result["delivery_ratio"] == 1.0
    assert len(result["latencies_ms"]) == 30 * 6
    assert result["duplicate_deliveries"] == 0
    # Each transaction was fluffed into the mesh once, by a relay, after at least one stem hop.
    assert sum(result["fluffs"].values()) == 30
    assert result["fluffs"]["no_stem_peer"] == 0
    assert result["stem_hops"] >= 30
    assert result["fast_path_delivery_ratio"] == 1.0
    assert result["handshake_failures"] == 0
