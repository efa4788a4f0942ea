"""Circuit benchmarks: cells one relay moves per second, and circuit builds per second.

Theory of operation. Each figure runs the production objects on one core with no I/O:

- ``relay_forward``: a middle relay takes a RELAY cell from its predecessor, removes its layer,
  finds it is not the target, and emits it for its successor (``receive_cell`` then
  ``drain_actions``): the per-cell work of every middle hop.
- ``relay_backward``: the same relay adds its layer to a cell coming back from its successor.
- ``exit``: a last hop recognizes a one-cell DATA message (digest check, reassembly, envelope,
  validation callback) and emits ``PublishFromExit``.
- Baselines on the same 541-byte body: ``raw_chacha20`` (one pyca ChaCha20 ``update``, the only
  cryptography a middle hop needs) and ``link_ceiling`` (sealing and opening one 546-byte cell
  as a link frame with the link's own ``SendChannel``/``ReceiveChannel``: what every cell also
  costs on its way in and out of a node).
- ``circuit_builds``: a fresh client builds one 3-hop circuit through three relays; everything
  the four parties compute is on the clock (origin and relays share the core), so a single relay
  sustains more than this. ``creates``: one relay answering CREATE cells (the hybrid handshake,
  relay side, each onionskin in its four CREATE cells) with the client's onionskins made off
  the clock.

The variants run in alternating rounds (rotating order) and each figure is the median round;
ratios are medians of per-round ratios. Cells for the relay are encrypted before the clock
starts. Run ``python -m benchmarks.bench_circuits [--quick]``; it prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import cryptography
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from murmur.base.ids import NodeId
from murmur.crypto.aead import AeadAlgorithm
from murmur.link.channel import ReceiveChannel, SendChannel
from murmur.overlay.circuits import (
    CircuitBuilt,
    CircuitClient,
    CircuitRelay,
    ClientConfig,
    ConnectTo,
    OnionKeyPair,
    OnionKeyRing,
    PublishFromExit,
    RelayCapacity,
    RelayConfig,
    RelayDirectory,
    RelayInfo,
    SendCell,
)
from murmur.overlay.circuits.handshake import HopKeys, client_finish, client_onionskin
from murmur.overlay.circuits.ids import CircuitIds
from murmur.overlay.circuits.layers import OriginLayers
from murmur.overlay.circuits.selection import NatType
from murmur.sim.rng import SeededRng
from murmur.wire.cells import (
    CELL_BODY_BYTES,
    CELL_BYTES,
    CellCommand,
    Created,
    Envelope,
    Extend,
    MessageKind,
    RelayAddress,
    RelayCommand,
    create_bodies,
    decode_cell,
    encode_cell,
    extend_data,
    split_message,
)
from murmur.wire.link import RECORD_HEADER_BYTES, FrameType

CELLS_PER_ROUND = 2000
BUILDS_PER_ROUND = 20
CREATES_PER_ROUND = 50
MIN_ROUNDS = 5
FULL_SECONDS = 12.0
QUICK_SECONDS = 1.0
UNLIMITED = RelayConfig(
    cell_rate_per_s=1e12,
    cell_burst=1e12,
    create_rate_per_s=1e12,
    create_burst=1e12,
    max_circuits=10**9,
    max_circuits_per_peer=10**9,
)
CAPACITY = RelayCapacity(80_000, 1.0, NatType.OPEN, 0.0)

PREV = NodeId(b"\x11" * 32)
NEXT = NodeId(b"\x99" * 32)


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


def _interleaved(variants: Sequence[Callable[[], int]], seconds: float) -> list[list[int]]:
    """Each variant returns the nanoseconds it timed; one list of timings per variant."""
    timings: list[list[int]] = [[] for _ in variants]
    deadline = time.perf_counter() + seconds
    rounds = 0
    with _gc_paused():
        while rounds < MIN_ROUNDS or time.perf_counter() < deadline:
            shift = rounds % len(variants)
            for index in [*range(shift, len(variants)), *range(shift)]:
                timings[index].append(variants[index]())
            rounds += 1
    return timings


def _rate(count: int, timings: list[int]) -> float:
    return count * 1e9 / statistics.median(timings)


def _median_ratio(numerators: Sequence[int], denominators: Sequence[int]) -> float:
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


# --- one relay's cell path ---------------------------------------------------------------------


def _relay(node_id: NodeId, pair: OnionKeyPair) -> CircuitRelay:
    return CircuitRelay(
        node_id=node_id,
        onion_keys=OnionKeyRing(pair, now=0.0),
        rng=SeededRng(1),
        validate=lambda topic, payload: True,
        answer=lambda topic, payload: None,
        config=UNLIMITED,
    )


def _one_hop(relay: CircuitRelay, pair: OnionKeyPair) -> tuple[int, OriginLayers]:
    """A circuit from PREV to ``relay``, built with the pure handshake steps."""
    rng = SeededRng(2)
    circ_id = CircuitIds(PREV).allocate(relay.node_id, rng)
    skin, pending = client_onionskin(relay.node_id, pair.public, x25519_seed=rng.random_bytes(32))
    for body in create_bodies(skin):
        relay.receive_cell(PREV, encode_cell(circ_id, CellCommand.CREATE, body), 0.0)
    (created,) = relay.drain_actions()
    assert isinstance(created, SendCell)
    layers = OriginLayers()
    body = decode_cell(created.cell).body
    layers.add_hop(client_finish(Created.decode_body(body), pending).keys)
    return circ_id, layers


def _middle_relay() -> tuple[CircuitRelay, int, int, OriginLayers]:
    """A relay whose circuit goes PREV → relay → NEXT; returns the ids on both links."""
    pair = OnionKeyPair.generate(SeededRng(3))
    relay = _relay(NodeId(b"\x55" * 32), pair)
    circ_id, layers = _one_hop(relay, pair)
    skin, _ = client_onionskin(NEXT, pair.public, x25519_seed=b"\x01" * 32)
    extend = Extend(NEXT, RelayAddress("10.9.0.1", 7000), skin)
    relay.link_ready(NEXT, 0.0)
    for data in extend_data(extend):
        body = layers.wrap_forward(0, RelayCommand.EXTEND, data)
        relay.receive_cell(PREV, encode_cell(circ_id, CellCommand.RELAY, body), 0.0)
    create, *_ = relay.drain_actions()
    assert isinstance(create, SendCell)
    next_id = decode_cell(create.cell).circ_id
    relay.receive_cell(NEXT, encode_cell(next_id, CellCommand.CREATED, b"y" * 64), 0.0)
    relay.drain_actions()
    layers.add_hop(HopKeys(*(bytes([i]) * 32 for i in range(4))))
    return relay, circ_id, next_id, layers


def bench_cells(seconds: float) -> dict[str, float]:
    relay, prev_id, next_id, layers = _middle_relay()
    exit_pair = OnionKeyPair.generate(SeededRng(4))
    exit_relay = _relay(NodeId(b"\x66" * 32), exit_pair)
    exit_id, exit_layers = _one_hop(exit_relay, exit_pair)
    envelope = Envelope(MessageKind.PUBLISH, "transaction", os.urandom(400)).encode()
    (fragment,) = split_message(1, envelope)
    back_body = os.urandom(CELL_BODY_BYTES)
    raw = Cipher(algorithms.ChaCha20(os.urandom(32), bytes(16)), mode=None).encryptor()
    sender = SendChannel(AeadAlgorithm.CHACHA20_POLY1305, b"k" * 32)
    receiver = ReceiveChannel(AeadAlgorithm.CHACHA20_POLY1305, b"k" * 32)
    cell = encode_cell(prev_id, CellCommand.RELAY, back_body)
    assert len(cell) == CELL_BYTES

    def forward() -> int:
        cells = [
            encode_cell(prev_id, CellCommand.RELAY, layers.wrap_forward(1, RelayCommand.DATA, b""))
            for _ in range(CELLS_PER_ROUND)
        ]
        start = time.perf_counter_ns()
        for data in cells:
            relay.receive_cell(PREV, data, 0.0)
        out = relay.drain_actions()
        elapsed = time.perf_counter_ns() - start
        if len(out) != CELLS_PER_ROUND or out[-1].peer != NEXT:  # type: ignore[union-attr]
            raise RuntimeError("forward path lost cells")
        return elapsed

    def backward() -> int:
        data = encode_cell(next_id, CellCommand.RELAY, back_body)
        start = time.perf_counter_ns()
        for _ in range(CELLS_PER_ROUND):
            relay.receive_cell(NEXT, data, 0.0)
        out = relay.drain_actions()
        elapsed = time.perf_counter_ns() - start
        if len(out) != CELLS_PER_ROUND or out[-1].peer != PREV:  # type: ignore[union-attr]
            raise RuntimeError("backward path lost cells")
        return elapsed

    def exit_path() -> int:
        cells = [
            encode_cell(
                exit_id,
                CellCommand.RELAY,
                exit_layers.wrap_forward(0, RelayCommand.DATA, fragment.encode()),
            )
            for _ in range(CELLS_PER_ROUND)
        ]
        start = time.perf_counter_ns()
        for data in cells:
            exit_relay.receive_cell(PREV, data, 0.0)
        out = exit_relay.drain_actions()
        elapsed = time.perf_counter_ns() - start
        if len(out) != CELLS_PER_ROUND or not isinstance(out[-1], PublishFromExit):
            raise RuntimeError("exit lost messages")
        return elapsed

    def raw_chacha20() -> int:
        start = time.perf_counter_ns()
        for _ in range(CELLS_PER_ROUND):
            raw.update(back_body)
        return time.perf_counter_ns() - start

    def link_ceiling() -> int:
        start = time.perf_counter_ns()
        for _ in range(CELLS_PER_ROUND):
            record = sender.seal(FrameType.DATA, cell)
            receiver.open(record[:RECORD_HEADER_BYTES], record[RECORD_HEADER_BYTES:])
        return time.perf_counter_ns() - start

    fwd, back, ext, raw_ns, link_ns = _interleaved(
        [forward, backward, exit_path, raw_chacha20, link_ceiling], seconds
    )
    return {
        "relay_forward_cells_per_s": _rate(CELLS_PER_ROUND, fwd),
        "relay_backward_cells_per_s": _rate(CELLS_PER_ROUND, back),
        "exit_cells_per_s": _rate(CELLS_PER_ROUND, ext),
        "raw_chacha20_cells_per_s": _rate(CELLS_PER_ROUND, raw_ns),
        "link_ceiling_cells_per_s": _rate(CELLS_PER_ROUND, link_ns),
        "relay_forward_vs_raw_chacha20": _median_ratio(raw_ns, fwd),
        "relay_forward_vs_link_ceiling": _median_ratio(link_ns, fwd),
        "relay_forward_mb_s": _rate(CELLS_PER_ROUND * CELL_BYTES, fwd) / 1e6,
        "rounds": len(fwd),
    }


# --- circuit builds ----------------------------------------------------------------------------


def _build_world() -> tuple[RelayDirectory, dict[NodeId, CircuitRelay]]:
    directory = RelayDirectory()
    relays: dict[NodeId, CircuitRelay] = {}
    rng = SeededRng(5)
    for i in range(3):
        node_id = NodeId(rng.random_bytes(32))
        pair = OnionKeyPair.generate(rng)
        relays[node_id] = _relay(node_id, pair)
        address = RelayAddress(f"10.{i + 1}.0.1", 7000)
        directory.upsert(RelayInfo(node_id, address, pair.public, CAPACITY))
    for relay in relays.values():
        for other in relays:
            if other != relay.node_id:
                relay.link_ready(other, 0.0)
    return directory, relays


def _build_one(
    directory: RelayDirectory, relays: dict[NodeId, CircuitRelay], rng: SeededRng
) -> bool:
    origin = NodeId(rng.random_bytes(32))
    client = CircuitClient(
        node_id=origin,
        directory=directory,
        rng=rng,
        now=0.0,
        config=ClientConfig(pool_size=1, max_parallel_builds=1),
    )
    client.handle_timer(0.0)
    queue: list[tuple[NodeId, NodeId, bytes]] = []
    while True:
        actions = client.drain_actions()
        for action in actions:
            if isinstance(action, CircuitBuilt):
                return True
            if isinstance(action, ConnectTo):
                client.link_ready(action.peer, 0.0)
                relays[action.peer].link_ready(origin, 0.0)
            elif isinstance(action, SendCell):
                queue.append((origin, action.peer, action.cell))
        for node_id, relay in relays.items():
            for action in relay.drain_actions():
                if isinstance(action, SendCell):
                    queue.append((node_id, action.peer, action.cell))
        if not queue and not actions:
            return False
        for src, dst, cell in queue:
            if dst == origin:
                client.receive_cell(src, cell, 0.0)
            else:
                relays[dst].receive_cell(src, cell, 0.0)
        queue.clear()


def bench_builds(seconds: float) -> dict[str, float]:
    directory, relays = _build_world()
    rng = SeededRng(6)
    pair = OnionKeyPair.generate(SeededRng(7))
    creator = _relay(NodeId(b"\x77" * 32), pair)
    ids = CircuitIds(PREV)

    def builds() -> int:
        start = time.perf_counter_ns()
        ok = all(_build_one(directory, relays, rng) for _ in range(BUILDS_PER_ROUND))
        elapsed = time.perf_counter_ns() - start
        if not ok:
            raise RuntimeError("a circuit build failed")
        return elapsed

    def creates() -> int:
        cells = []
        for _ in range(CREATES_PER_ROUND):
            skin, _ = client_onionskin(creator.node_id, pair.public, x25519_seed=os.urandom(32))
            circ_id = ids.allocate(creator.node_id, rng)
            cells += [encode_cell(circ_id, CellCommand.CREATE, b) for b in create_bodies(skin)]
        start = time.perf_counter_ns()
        for data in cells:
            creator.receive_cell(PREV, data, 0.0)
        out = creator.drain_actions()
        elapsed = time.perf_counter_ns() - start
        if len(out) != CREATES_PER_ROUND:
            raise RuntimeError("creates lost")
        return elapsed

    build_ns, create_ns = _interleaved([builds, creates], seconds)
    return {
        "circuit_builds_per_s": _rate(BUILDS_PER_ROUND, build_ns),
        "creates_per_s": _rate(CREATES_PER_ROUND, create_ns),
        "rounds": len(build_ns),
    }


def run(seconds: float) -> dict[str, object]:
    return {
        "benchmark": "circuits",
        "cell_bytes": CELL_BYTES,
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "machine": platform.machine(),
        "cells": bench_cells(seconds / 2),
        "builds": bench_builds(seconds / 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_circuits", description=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="about a second instead of ~12 s")
    args = parser.parse_args(argv)
    json.dump(run(QUICK_SECONDS if args.quick else FULL_SECONDS), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
