"""Bucket padding and cover messages through whole circuits (in-memory network, fake clock)."""

from __future__ import annotations

import pytest

from murmur.overlay.circuits import SendFailed
from murmur.overlay.shaping import RateConfig, ShapedOrigin, ShapingPolicy
from murmur.sim.rng import SeededRng
from murmur.wire.cells import (
    PADDING_BUCKETS_BYTES,
    CellCommand,
    Envelope,
    MessageKind,
    cells_for,
    decode_cell,
    padded_size,
)

from .harness import Network, Node


@pytest.fixture
def net() -> Network:
    network = Network(8, seed=13)
    network.run_until(1.0)
    return network


def _cells_from(net: Network, origin: Node, since: int) -> list[tuple[bytes, bytes]]:
    """(hop-1 relay, cell) for every RELAY cell the origin sent since wire index ``since``."""
    net.pump()
    return [
        (dst, cell)
        for src, dst, cell in net.wire[since:]
        if src == origin.node_id and decode_cell(cell).command is CellCommand.RELAY
    ]


@pytest.mark.parametrize(
    ("size", "bucket"),
    [(1, 512), (490, 512), (500, 2048), (2000, 2048), (2100, 8192), (40_000, 131_072)],
)
def test_a_message_takes_the_cells_of_its_bucket_and_arrives_intact(
    net: Network, size: int, bucket: int
) -> None:
    origin = net.node(0)
    payload = bytes(range(256)) * (size // 256) + b"p" * (size % 256)
    framed = Envelope(MessageKind.PUBLISH, "transaction", payload).framed_size
    assert padded_size(framed, PADDING_BUCKETS_BYTES) == bucket
    since = len(net.wire)
    origin.host.send("transaction", payload, net.now)
    cells = _cells_from(net, origin, since)
    assert len(cells) == cells_for(bucket)
    assert len({dst for dst, _ in cells}) == 1
    net.run_until(2.0)
    assert [p for n in net.nodes.values() for _, p in n.published] == [payload]


def test_without_padding_the_cell_count_follows_the_size(net: Network) -> None:
    origin = net.node(1)
    counts = []
    for size in (100, 3000, 7000):
        since = len(net.wire)
        origin.host.send("transaction", b"u" * size, net.now, buckets=())
        counts.append(len(_cells_from(net, origin, since)))
    assert counts == [1, 6, 14]  # 117, 3,017 and 7,017 bytes framed, 512 per cell


def test_a_cover_message_takes_its_buckets_cells_and_the_exit_drops_them_all(
    net: Network,
) -> None:
    origin = net.node(2)
    since = len(net.wire)
    assert origin.host.send_cover(net.now, padded_bytes=8192)
    cells = _cells_from(net, origin, since)
    assert len(cells) == cells_for(8192) == 16
    assert len({dst for dst, _ in cells}) == 1
    net.run_until(2.0)
    assert [p for n in net.nodes.values() for p in n.published] == []
    dropped = [n.host.relay.counters.get("exit_cover_dropped") for n in net.nodes.values()]
    assert sorted(d for d in dropped if d) == [16]
    assert origin.host.client.counters.get("cover_messages_sent") == 1


def test_cover_for_hop_2_leaves_as_exit_cover_does_and_hop_2_drops_it(net: Network) -> None:
    """Hop 1 forwards the same cells either way; hop 2 recognises them, drops them, and the
    exit sees nothing."""
    origin = net.node(2)
    net.run_until(2.0)

    def relay_counts(name: str) -> list[int]:
        return [n.host.relay.counters.get(name) for n in net.nodes.values()]

    relayed = relay_counts("cells_relayed")
    since = len(net.wire)
    assert origin.host.send_cover(net.now, padded_bytes=2048, second_hop=True)
    cells = _cells_from(net, origin, since)
    assert len(cells) == cells_for(2048) and len({dst for dst, _ in cells}) == 1
    net.run_until(3.0)
    assert sorted(relay_counts("middle_cover_dropped")) == [0] * (len(net.nodes) - 1) + [4]
    assert not any(relay_counts("exit_cover_dropped"))
    more = [
        after - before for before, after in zip(relayed, relay_counts("cells_relayed"), strict=True)
    ]
    assert sorted(more) == [0] * (len(net.nodes) - 1) + [4]  # hop 1 only
    assert [p for n in net.nodes.values() for p in n.published] == []


def test_cover_and_real_messages_choose_circuits_by_the_same_law(net: Network) -> None:
    origin = net.node(3)
    chosen: dict[str, list[tuple[bytes, int]]] = {"real": [], "cover": []}
    for i in range(600):
        since = len(net.wire)
        if i % 2:
            origin.host.send_cover(net.now, padded_bytes=2048)
        else:
            origin.host.send("transaction", b"t" * 600, net.now)
        dst, cell = _cells_from(net, origin, since)[0]
        chosen["cover" if i % 2 else "real"].append((dst, decode_cell(cell).circ_id))
    circuits = sorted(set(chosen["real"]))
    assert len(circuits) == 3 and circuits == sorted(set(chosen["cover"]))
    for kind, seen in chosen.items():
        shares = [seen.count(c) / len(seen) for c in circuits]
        assert all(share == pytest.approx(1 / 3, abs=0.08) for share in shares), kind


def test_a_shaped_origin_drives_the_client_with_cover_between_real_messages(
    net: Network,
) -> None:
    origin = net.node(4)
    shaper = ShapedOrigin(port=origin.host.client, rng=SeededRng(3))
    shaper.open_lane("max", ShapingPolicy(rate=RateConfig(rate_per_s=2.0)), net.now)
    ref = shaper.submit("max", "transaction", b"shaped tx", net.now)
    while (t := shaper.next_deadline()) is not None and t < 6.0:
        net.run_until(t)
        shaper.handle_timer(t)
        net.pump()
    assert [p for n in net.nodes.values() for _, p in n.published] == [b"shaped tx"]
    assert shaper.counters.get("real_sent") == 1 and shaper.counters.get("cover_sent") >= 8
    assert not any(isinstance(e, SendFailed) and e.send_id == ref for e in origin.events)


def test_a_shaped_message_that_finds_no_circuit_fails_with_the_id_it_was_given() -> None:
    net = Network(6, seed=3)
    net.refuse_links.update(net.nodes)
    net.run_until(1.0)
    origin = net.node(0)
    shaper = ShapedOrigin(port=origin.host.client, rng=SeededRng(4))
    policy = ShapingPolicy(rate=RateConfig(rate_per_s=2.0, max_wait_s=3.0))
    shaper.open_lane("max", policy, net.now)
    ref = shaper.submit("max", "transaction", b"never", net.now)
    while (t := shaper.next_deadline()) is not None and t < 5.0:
        net.run_until(t)
        shaper.handle_timer(t)
        net.pump()
    assert SendFailed(ref, "queue_timeout") in origin.events
    assert shaper.counters.get("cover_sent") == 0
