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
    # Each transaction was fluffed into the mesh once after at least one stem hop: by a
    # fluff-role relay, or, where its stem looped (likely among six nodes), by the first
    # embargo to fire among the nodes holding it.
    assert sum(result["fluffs"].values()) == 30
    assert result["fluffs"]["role"] + result["fluffs"]["embargo"] == 30
    assert result["stem_hops"] >= 30
    assert result["fast_path_delivery_ratio"] == 1.0
    assert result["handshake_failures"] == 0
