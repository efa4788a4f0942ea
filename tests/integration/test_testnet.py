"""The README's demo, smaller: real node processes on loopback deliver every message once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from murmur.interfaces.testnet import run_testnet

pytestmark = pytest.mark.integration


def test_ten_nodes_deliver_every_message() -> None:
    result = run_testnet(nodes=10, messages=100, size=256, rate=200.0, seed=3)
    assert result["delivery_ratio"] == 1.0
    assert result["handshake_failures"] == 0
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    assert result["wire_bytes_per_payload_byte"] > 1.0
    assert len(result["latencies_ms"]) == 100 * 9


def test_cli_json_and_report(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "murmur.interfaces.cli",
            "testnet",
            "--nodes",
            "4",
            "--messages",
            "10",
            "--json",
            "--report",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout)
    for key in ("nodes", "messages", "delivery_ratio", "latency_ms", "wire_bytes_per_payload_byte"):
        assert key in result
    assert set(result["latency_ms"]) >= {"p50", "p95", "p99"}
    assert result["delivery_ratio"] == 1.0
    assert (tmp_path / "report.md").exists() and (tmp_path / "latency_cdf.png").exists()
