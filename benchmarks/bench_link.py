"""Link-layer benchmarks: handshake rate and framing throughput, each against raw pyca.

Theory of operation. Every figure is paired with a baseline that does the same cryptographic
work with pyca/cryptography directly, so the ratio shows what our Python costs on top of the
primitives, whatever the machine. The two sides are measured in alternating rounds (the order
inside a round rotates) and the reported ratio is the median of the per-round ratios, so a noisy
neighbour or a frequency change hits both sides of a pair alike.

- :func:`bench_handshake`: the four pure handshake steps, both sides in one process, fresh
  ephemeral seeds every time, against :func:`primitive_handshake`, the same protocol written as
  straight-line pyca calls (it derives the same session keys; the smoke test checks that).
- :func:`bench_framing`: one ``size``-byte message sealed and opened, through
  ``LinkConnection`` (what nodes use: ``send_message``, ``data_to_send``, ``receive_data``,
  ``drain_events``) and through the bare ``SendChannel``/``ReceiveChannel``, against one
  ChaCha20-Poly1305 encrypt + decrypt of the same payload with the same 4-byte associated data.

MB/s counts application payload bytes (10**6 bytes per MB) for seal + open together.
Run ``python -m benchmarks.bench_link [--quick]``; it prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import cryptography
from cryptography.hazmat.backends.openssl import backend as openssl_backend
from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from murmur.base.ids import NodeId
from murmur.crypto.aead import AeadAlgorithm
from murmur.crypto.identity import Identity
from murmur.crypto.kem import mlkem_encapsulate
from murmur.link import handshake as hs
from murmur.link.channel import ReceiveChannel, SendChannel
from murmur.link.connection import (
    HandshakeCompleted,
    LinkConnection,
    LinkEvent,
    MessageReceived,
)
from murmur.sim.rng import SeededRng
from murmur.wire.link import LINK_VERSION, RECORD_HEADER, RECORD_HEADER_BYTES, FrameType

FRAMING_SIZES_BYTES = (1024, 65536)
MIN_ROUNDS = 5
FRAMING_ROUND_PAYLOAD_BYTES = 1 << 20
"""Payload pushed through each path per framing round (at least 8 messages)."""
FULL_SECONDS = {"handshake": 10.0, "framing": 5.0}
QUICK_SECONDS = {"handshake": 1.0, "framing": 0.5}
MB = 1_000_000

Encapsulate = Callable[[bytes], tuple[bytes, bytes]]
Signer = Callable[[bytes, bytes], bytes]


# --- measurement helpers ---------------------------------------------------------------------


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _interleaved(
    variants: Sequence[Callable[[], int]], seconds: float, min_rounds: int = MIN_ROUNDS
) -> list[list[int]]:
    """Runs the variants in turn (rotating the order each round) for ``seconds`` of wall time.

    Each variant does its own setup outside the clock and returns the nanoseconds it timed;
    the result is one list of timings per variant, aligned by round.
    """
    timings: list[list[int]] = [[] for _ in variants]
    deadline = time.perf_counter() + seconds
    rounds = 0
    with _gc_paused():
        while rounds < min_rounds or time.perf_counter() < deadline:
            shift = rounds % len(variants)
            for index in [*range(shift, len(variants)), *range(shift)]:
                timings[index].append(variants[index]())
            rounds += 1
    return timings


def _median_ratio(numerators: Sequence[int], denominators: Sequence[int]) -> float:
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


# --- handshake -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    handshakes_per_s: float
    primitives_per_s: float
    handshake_vs_primitives: float
    rounds: int


@dataclass(frozen=True, slots=True)
class EphemeralSeeds:
    initiator_x25519: bytes
    initiator_mlkem: bytes
    responder_x25519: bytes

    @classmethod
    def fresh(cls) -> EphemeralSeeds:
        return cls(os.urandom(32), os.urandom(64), os.urandom(32))


def _sha3(*parts: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA3_256())
    for part in parts:
        digest.update(part)
    return digest.finalize()


def _hmac(key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA3_256())
    mac.update(data)
    return mac.finalize()


def _expand(prk: bytes, info: bytes) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA3_256(), length=32, info=info).derive(prk)


def _pyca_encapsulate(public: bytes) -> tuple[bytes, bytes]:
    shared, ciphertext = mlkem.MLKEM1024PublicKey.from_public_bytes(public).encapsulate()
    return ciphertext, shared


_ZERO_NONCE = bytes(12)


def primitive_handshake(
    seeds: EphemeralSeeds,
    initiator_public: bytes,
    initiator_sign: Signer,
    responder_public: bytes,
    responder_sign: Signer,
    encapsulate: Encapsulate = _pyca_encapsulate,
) -> tuple[bytes, bytes, bytes]:
    """The handshake's cryptography as straight-line pyca calls; returns (i2r, r2i, session id).

    Initiator X25519 and ML-KEM-1024 keys from seed, responder X25519 key, 2 X25519 exchanges,
    1 encapsulation and 1 decapsulation, 2 ML-DSA-87 signatures and 2 verifications, the
    transcript hashes, HKDF extract/expand, finished MACs and the two sealed ``Auth`` blobs.
    Wire checks the real code must make (lengths, low-order points) are left out on purpose.
    """
    # message 1 (initiator)
    xi = x25519.X25519PrivateKey.from_private_bytes(seeds.initiator_x25519)
    xi_pub = xi.public_key().public_bytes_raw()
    ki = mlkem.MLKEM1024PrivateKey.from_seed_bytes(seeds.initiator_mlkem)
    ki_pub = ki.public_key().public_bytes_raw()
    hello = bytes((LINK_VERSION, AeadAlgorithm.CHACHA20_POLY1305)) + xi_pub + ki_pub
    h1_i = _sha3(_sha3(hs.PROTOCOL_NAME), hello)

    # message 2 (responder)
    h1 = _sha3(_sha3(hs.PROTOCOL_NAME), hello)
    xr = x25519.X25519PrivateKey.from_private_bytes(seeds.responder_x25519)
    xr_pub = xr.public_key().public_bytes_raw()
    dh = xr.exchange(x25519.X25519PublicKey.from_public_bytes(hello[2:34]))
    ciphertext, kem = encapsulate(hello[34:])
    clear = xr_pub + ciphertext
    h2 = _sha3(h1, clear)
    prk = _hmac(h2, dh + kem)
    hs_r2i, hs_i2r = _expand(prk, b"murmur hs r2i"), _expand(prk, b"murmur hs i2r")
    fin_r, fin_i = _expand(prk, b"murmur fin r"), _expand(prk, b"murmur fin i")
    th_r = _sha3(h2, responder_public)
    sig_r = responder_sign(th_r, hs.RESPONDER_CONTEXT)
    th_r2 = _sha3(th_r, sig_r)
    finished_r = _hmac(fin_r, th_r2)
    sealed_r = ChaCha20Poly1305(hs_r2i).encrypt(
        _ZERO_NONCE, responder_public + sig_r + finished_r, h2
    )
    reply = clear + sealed_r

    # message 3 (initiator)
    dh_i = xi.exchange(x25519.X25519PublicKey.from_public_bytes(reply[:32]))
    kem_i = ki.decapsulate(reply[32:1600])
    h2_i = _sha3(h1_i, reply[:1600])
    prk_i = _hmac(h2_i, dh_i + kem_i)
    hs_r2i_i, hs_i2r_i = _expand(prk_i, b"murmur hs r2i"), _expand(prk_i, b"murmur hs i2r")
    fin_r_i, fin_i_i = _expand(prk_i, b"murmur fin r"), _expand(prk_i, b"murmur fin i")
    auth_r = ChaCha20Poly1305(hs_r2i_i).decrypt(_ZERO_NONCE, reply[1600:], h2_i)
    peer_r, sig_r_i, fin_r_got = auth_r[:2592], auth_r[2592:7219], auth_r[7219:]
    _sha3(peer_r)  # the responder's node id
    th_r_i = _sha3(h2_i, peer_r)
    mldsa.MLDSA87PublicKey.from_public_bytes(peer_r).verify(sig_r_i, th_r_i, hs.RESPONDER_CONTEXT)
    th_r2_i = _sha3(th_r_i, sig_r_i)
    if not constant_time.bytes_eq(_hmac(fin_r_i, th_r2_i), fin_r_got):
        raise AssertionError("responder finished")
    th_i = _sha3(th_r2_i, fin_r_got, initiator_public)
    sig_i = initiator_sign(th_i, hs.INITIATOR_CONTEXT)
    th_i2 = _sha3(th_i, sig_i)
    finished_i = _hmac(fin_i_i, th_i2)
    auth = ChaCha20Poly1305(hs_i2r_i).encrypt(
        _ZERO_NONCE, initiator_public + sig_i + finished_i, th_r2_i
    )
    th_final_i = _sha3(th_i2, finished_i)
    _expand(prk_i, b"murmur app i2r" + th_final_i)
    _expand(prk_i, b"murmur app r2i" + th_final_i)
    _expand(prk_i, b"murmur session id" + th_final_i)

    # responder finish
    auth_i = ChaCha20Poly1305(hs_i2r).decrypt(_ZERO_NONCE, auth, th_r2)
    peer_i, sig_i_r, fin_i_got = auth_i[:2592], auth_i[2592:7219], auth_i[7219:]
    th_i_r = _sha3(th_r2, finished_r, peer_i)
    mldsa.MLDSA87PublicKey.from_public_bytes(peer_i).verify(sig_i_r, th_i_r, hs.INITIATOR_CONTEXT)
    th_i2_r = _sha3(th_i_r, sig_i_r)
    if not constant_time.bytes_eq(_hmac(fin_i, th_i2_r), fin_i_got):
        raise AssertionError("initiator finished")
    th_final = _sha3(th_i2_r, fin_i_got)
    i2r = _expand(prk, b"murmur app i2r" + th_final)
    r2i = _expand(prk, b"murmur app r2i" + th_final)
    session_id = _expand(prk, b"murmur session id" + th_final)
    _sha3(peer_i)  # the initiator's node id
    return i2r, r2i, session_id


class Party(Protocol):
    """What a handshake side needs from its identity (:class:`Identity` is one)."""

    @property
    def public_key(self) -> bytes: ...

    @property
    def node_id(self) -> NodeId: ...

    def sign(self, message: bytes, context: bytes) -> bytes: ...


def murmur_handshake(
    seeds: EphemeralSeeds,
    initiator: Party,
    responder: Party,
    encapsulate: Encapsulate = mlkem_encapsulate,
) -> tuple[hs.HandshakeKeys, hs.HandshakeKeys]:
    """All four steps of :mod:`murmur.link.handshake`; returns (initiator keys, responder keys)."""
    m1, waiting_i = hs.initiator_hello(seeds.initiator_x25519, seeds.initiator_mlkem)
    m2, waiting_r = hs.responder_reply(
        m1,
        x25519_seed=seeds.responder_x25519,
        encapsulate=encapsulate,
        public_key=responder.public_key,
        sign=responder.sign,
    )
    m3, keys_i = hs.initiator_finish(
        m2,
        waiting_i,
        public_key=initiator.public_key,
        sign=initiator.sign,
        expected_peer=responder.node_id,
    )
    return keys_i, hs.responder_finish(m3, waiting_r)


def bench_handshake(seconds: float) -> HandshakeResult:
    initiator, responder = Identity.from_seed(b"I" * 32), Identity.from_seed(b"R" * 32)
    initiator_key = mldsa.MLDSA87PrivateKey.from_seed_bytes(b"I" * 32)
    responder_key = mldsa.MLDSA87PrivateKey.from_seed_bytes(b"R" * 32)

    def ours() -> int:
        seeds = EphemeralSeeds.fresh()
        start = time.perf_counter_ns()
        murmur_handshake(seeds, initiator, responder)
        return time.perf_counter_ns() - start

    def primitives() -> int:
        seeds = EphemeralSeeds.fresh()
        start = time.perf_counter_ns()
        primitive_handshake(
            seeds,
            initiator.public_key,
            initiator_key.sign,
            responder.public_key,
            responder_key.sign,
        )
        return time.perf_counter_ns() - start

    ours_ns, primitives_ns = _interleaved([ours, primitives], seconds)
    return HandshakeResult(
        handshakes_per_s=1e9 / statistics.median(ours_ns),
        primitives_per_s=1e9 / statistics.median(primitives_ns),
        handshake_vs_primitives=_median_ratio(ours_ns, primitives_ns),
        rounds=len(ours_ns),
    )


# --- framing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FramingResult:
    size_bytes: int
    connection_mb_s: float
    channel_mb_s: float
    raw_aead_mb_s: float
    connection_vs_raw_aead: float
    channel_vs_raw_aead: float
    rounds: int


def established_pair(seed: int = 1) -> tuple[LinkConnection, LinkConnection]:
    """Two connections wired together in memory until both report the handshake done."""
    rng = SeededRng(seed)
    initiator_id, responder_id = Identity.from_seed(b"I" * 32), Identity.from_seed(b"R" * 32)
    a = LinkConnection(
        initiator=True,
        identity=initiator_id,
        rng=rng,
        now=0.0,
        expected_peer=responder_id.node_id,
    )
    b = LinkConnection(initiator=False, identity=responder_id, rng=rng, now=0.0)
    for _ in range(3):
        b.receive_data(a.data_to_send(), 0.0)
        a.receive_data(b.data_to_send(), 0.0)
    for side in (a, b):
        if not any(isinstance(e, HandshakeCompleted) for e in side.drain_events()):
            raise RuntimeError("in-memory handshake did not complete")
    return a, b


def bench_framing(size: int, seconds: float) -> FramingResult:
    payload = os.urandom(size)
    count = max(8, FRAMING_ROUND_PAYLOAD_BYTES // size)
    sender, receiver = established_pair()
    key_s, key_r = os.urandom(32), os.urandom(32)
    seal_channel = SendChannel(AeadAlgorithm.CHACHA20_POLY1305, key_s)
    open_channel = ReceiveChannel(AeadAlgorithm.CHACHA20_POLY1305, key_s)
    raw = ChaCha20Poly1305(key_r)
    nonce = struct.Struct(">4xQ")
    raw_counter = 0
    header = RECORD_HEADER.pack(size + 5 + 16)

    def connection() -> int:
        events: list[LinkEvent] = []
        start = time.perf_counter_ns()
        for _ in range(count):
            sender.send_message(payload, 0.0)
            receiver.receive_data(sender.data_to_send(), 0.0)
            events = receiver.drain_events()
        elapsed = time.perf_counter_ns() - start
        if events != [MessageReceived(payload)]:
            raise RuntimeError("connection round trip lost the payload")
        return elapsed

    def channel() -> int:
        frame = None
        start = time.perf_counter_ns()
        for _ in range(count):
            record = seal_channel.seal(FrameType.DATA, payload)
            frame = open_channel.open(record[:RECORD_HEADER_BYTES], record[RECORD_HEADER_BYTES:])
        elapsed = time.perf_counter_ns() - start
        if frame is None or frame.payload != payload:
            raise RuntimeError("channel round trip lost the payload")
        return elapsed

    def raw_aead() -> int:
        nonlocal raw_counter
        plaintext = b""
        start = time.perf_counter_ns()
        for i in range(raw_counter, raw_counter + count):
            n = nonce.pack(i)
            plaintext = raw.decrypt(n, raw.encrypt(n, payload, header), header)
        elapsed = time.perf_counter_ns() - start
        raw_counter += count
        if plaintext != payload:
            raise RuntimeError("raw AEAD round trip lost the payload")
        return elapsed

    conn_ns, chan_ns, raw_ns = _interleaved([connection, channel, raw_aead], seconds)

    def mb_s(timings: list[int]) -> float:
        return size * count * 1e9 / statistics.median(timings) / MB

    return FramingResult(
        size_bytes=size,
        connection_mb_s=mb_s(conn_ns),
        channel_mb_s=mb_s(chan_ns),
        raw_aead_mb_s=mb_s(raw_ns),
        # a time ratio raw/ours is the throughput ratio ours/raw
        connection_vs_raw_aead=_median_ratio(raw_ns, conn_ns),
        channel_vs_raw_aead=_median_ratio(raw_ns, chan_ns),
        rounds=len(conn_ns),
    )


# --- report ----------------------------------------------------------------------------------


def run(handshake_seconds: float, framing_seconds: float) -> dict[str, object]:
    handshake = bench_handshake(handshake_seconds)
    framing = {size: bench_framing(size, framing_seconds) for size in FRAMING_SIZES_BYTES}
    return {
        "handshakes_per_s": round(handshake.handshakes_per_s, 1),
        "handshake_vs_primitives": round(handshake.handshake_vs_primitives, 3),
        "primitive_handshakes_per_s": round(handshake.primitives_per_s, 1),
        "framing_mb_s": {str(s): round(r.connection_mb_s, 1) for s, r in framing.items()},
        "framing_channel_mb_s": {str(s): round(r.channel_mb_s, 1) for s, r in framing.items()},
        "framing_vs_raw_aead": {
            str(s): round(r.connection_vs_raw_aead, 3) for s, r in framing.items()
        },
        "framing_channel_vs_raw_aead": {
            str(s): round(r.channel_vs_raw_aead, 3) for s, r in framing.items()
        },
        "raw_aead_mb_s": {str(s): round(r.raw_aead_mb_s, 1) for s, r in framing.items()},
        "meta": {
            "budget_s": {"handshake": handshake_seconds, "framing_per_size": framing_seconds},
            "handshake_rounds": handshake.rounds,
            "framing_rounds": {str(s): r.rounds for s, r in framing.items()},
            "python": platform.python_version(),
            "cryptography": cryptography.__version__,
            "openssl": openssl_backend.openssl_version_text(),
            "machine": platform.machine(),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_link", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (noisier figures)")
    args = parser.parse_args(argv)
    budget = QUICK_SECONDS if args.quick else FULL_SECONDS
    json.dump(run(budget["handshake"], budget["framing"]), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
