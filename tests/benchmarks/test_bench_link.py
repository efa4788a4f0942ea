"""Smoke test of the link benchmarks: tiny budgets, JSON shape, every figure positive.

No timing assertion: the figures depend on the machine. What can fail here is the shape of the
report, a benchmark path that stops delivering, or a baseline that no longer does the
handshake's work (it must derive the very keys the real handshake derives).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from benchmarks import bench_link
from murmur.base.ids import NodeId
from murmur.crypto.identity import Identity
from murmur.crypto.kem import MlKemSecret, mlkem_encapsulate

SIZES = ("1024", "65536")
PER_SIZE_KEYS = (
    "framing_mb_s",
    "framing_channel_mb_s",
    "framing_vs_raw_aead",
    "framing_channel_vs_raw_aead",
    "raw_aead_mb_s",
)
SCALAR_KEYS = ("handshakes_per_s", "handshake_vs_primitives", "primitive_handshakes_per_s")


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@dataclass
class PinnedSigner:
    """An identity whose (randomized) ML-DSA signature is drawn once per message, then reused."""

    identity: Identity
    signatures: dict[tuple[bytes, bytes], bytes] = field(default_factory=dict)

    @property
    def public_key(self) -> bytes:
        return self.identity.public_key

    @property
    def node_id(self) -> NodeId:
        return self.identity.node_id

    def sign(self, message: bytes, context: bytes) -> bytes:
        key = (message, context)
        if key not in self.signatures:
            self.signatures[key] = self.identity.sign(message, context)
        return self.signatures[key]


def test_primitive_baseline_derives_the_handshake_keys() -> None:
    initiator = PinnedSigner(Identity.from_seed(b"i" * 32))
    responder = PinnedSigner(Identity.from_seed(b"r" * 32))
    seeds = bench_link.EphemeralSeeds(b"x" * 32, b"k" * 64, b"y" * 32)
    encapsulation = mlkem_encapsulate(MlKemSecret(seeds.initiator_mlkem).public)

    def encapsulate(_: bytes) -> tuple[bytes, bytes]:
        return encapsulation

    keys_i, keys_r = bench_link.murmur_handshake(seeds, initiator, responder, encapsulate)
    i2r, r2i, session_id = bench_link.primitive_handshake(
        seeds,
        initiator.public_key,
        initiator.sign,
        responder.public_key,
        responder.sign,
        encapsulate,
    )
    assert (keys_i.send_key, keys_i.recv_key, keys_i.session_id) == (i2r, r2i, session_id)
    assert (keys_r.send_key, keys_r.recv_key, keys_r.session_id) == (r2i, i2r, session_id)


def test_handshake_bench_reports_positive_figures() -> None:
    result = bench_link.bench_handshake(0.01)
    assert result.rounds >= bench_link.MIN_ROUNDS
    assert _positive(result.handshakes_per_s)
    assert _positive(result.primitives_per_s)
    assert _positive(result.handshake_vs_primitives)


@pytest.mark.parametrize("size", [1024, 65536])
def test_framing_bench_reports_positive_figures(size: int) -> None:
    result = bench_link.bench_framing(size, 0.01)
    assert result.size_bytes == size
    assert result.rounds >= bench_link.MIN_ROUNDS
    for figure in (
        result.connection_mb_s,
        result.channel_mb_s,
        result.raw_aead_mb_s,
        result.connection_vs_raw_aead,
        result.channel_vs_raw_aead,
    ):
        assert _positive(figure)


def test_main_prints_one_json_object(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_link, "QUICK_SECONDS", {"handshake": 0.01, "framing": 0.01})
    monkeypatch.setattr(bench_link, "FRAMING_ROUND_PAYLOAD_BYTES", 1 << 16)
    assert bench_link.main(["--quick"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in SCALAR_KEYS:
        assert _positive(report[key]), key
    for key in PER_SIZE_KEYS:
        assert set(report[key]) == set(SIZES), key
        assert all(_positive(report[key][size]) for size in SIZES), key
    assert report["meta"]["budget_s"] == {"handshake": 0.01, "framing_per_size": 0.01}


def test_circuit_benchmark_quick_run_reports_positive_figures() -> None:
    from benchmarks.bench_circuits import run as bench_circuits

    figures = bench_circuits(0.5)
    cells, builds = figures["cells"], figures["builds"]
    assert isinstance(cells, dict) and isinstance(builds, dict)
    for key in ("relay_forward_cells_per_s", "link_ceiling_cells_per_s", "exit_cells_per_s"):
        assert cells[key] > 0
    assert cells["relay_forward_vs_link_ceiling"] > 0
    assert builds["circuit_builds_per_s"] > 0 and builds["creates_per_s"] > 0
