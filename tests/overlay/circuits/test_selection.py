"""Relay scores, prefixes and weighted, prefix-diverse path selection."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.overlay.circuits.onion_keys import OnionKeyPair
from murmur.overlay.circuits.regions import RegionMap
from murmur.overlay.circuits.selection import (
    RATIO_SCALE,
    HopRegion,
    NatType,
    NoCircuitAvailable,
    RelayCapacity,
    RelayDirectory,
    RelayInfo,
    hop_candidates,
    hop_region,
    relay_score,
    select_path,
)
from murmur.overlay.peers.netgroup import network_prefix
from murmur.sim.rng import SeededRng
from murmur.wire.cells import RelayAddress
from tests.damage import damaged, refused_or_canonical

KEYS = OnionKeyPair.generate(SeededRng(1)).public
GOOD = RelayCapacity(80_000, 1.0, NatType.OPEN, 0.0)
POOR = RelayCapacity(0, 0.0, NatType.SYMMETRIC, 1.0)


def _relay(i: int, host: str, capacity: RelayCapacity = GOOD) -> RelayInfo:
    return RelayInfo(NodeId(bytes([i]) * 32), RelayAddress(host, 7000), KEYS, capacity)


def test_score_follows_the_seed_formula() -> None:
    assert relay_score(GOOD) == pytest.approx(0.9)
    half = RelayCapacity(40_000, 0.5, NatType.FULL_CONE, 0.5)
    assert relay_score(half) == pytest.approx((0.2 + 0.15 + 0.15) * 0.75)
    assert relay_score(RelayCapacity(10**9, 1.0, NatType.RESTRICTED, 0.0)) == pytest.approx(0.8)


def test_score_floor_keeps_everyone_in() -> None:
    assert relay_score(POOR) == 0.1


@pytest.mark.parametrize(
    ("bad", "kwargs"),
    [("uptime", {"uptime_ratio": 1.5}), ("load", {"load": -0.1}), ("nan", {"load": float("nan")})],
)
def test_capacity_rejects_out_of_range_values(bad: str, kwargs: dict[str, float]) -> None:
    fields = {"bandwidth_kbps": 1, "uptime_ratio": 0.5, "nat_type": NatType.OPEN, "load": 0.5}
    with pytest.raises(ValueError):
        RelayCapacity(**(fields | kwargs))  # type: ignore[arg-type]


def test_capacity_round_trips_and_rejects_garbage() -> None:
    cap = RelayCapacity(12_345, 0.25, NatType.RESTRICTED, 0.75)
    assert RelayCapacity.decode(cap.encode()) == cap
    encoded = cap.encode()
    for bad in (encoded[:-1], encoded + b"\0", encoded[:6] + b"\x09" + encoded[7:]):
        with pytest.raises(RemoteProtocolError):
            RelayCapacity.decode(bad)
    over = encoded[:4] + (10_001).to_bytes(2, "big") + encoded[6:]
    with pytest.raises(RemoteProtocolError):
        RelayCapacity.decode(over)


_ratios = st.integers(0, RATIO_SCALE).map(lambda n: n / RATIO_SCALE)
capacities = st.builds(
    RelayCapacity, st.integers(0, 2**32 - 1), _ratios, st.sampled_from(NatType), _ratios
)


@settings(max_examples=200)
@given(capacities)
def test_any_capacity_on_the_wire_grid_reads_back(capacity: RelayCapacity) -> None:
    assert RelayCapacity.decode(capacity.encode()) == capacity


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=20), damaged(capacities.map(RelayCapacity.encode))))
def test_capacity_garbage_raises_only_remote_protocol_error(data: bytes) -> None:
    refused_or_canonical(RelayCapacity.decode, RelayCapacity.encode, data)


def test_path_has_distinct_prefixes_and_never_the_origin_prefix() -> None:
    relays = [_relay(i, f"10.{i % 5}.{i}.1") for i in range(1, 40)]
    own = frozenset({network_prefix("10.0.0.1")})
    rng = SeededRng(3)
    for _ in range(200):
        path = select_path(relays, rng, hops=3, origin=NodeId(b"o" * 32), origin_prefixes=own)
        prefixes = {r.prefix for r in path}
        assert len(prefixes) == 3 and not prefixes & own


def test_path_never_contains_the_origin() -> None:
    relays = [_relay(i, f"10.{i}.0.1") for i in range(1, 4)]
    with pytest.raises(NoCircuitAvailable):
        select_path(
            relays, SeededRng(1), hops=3, origin=relays[0].node_id, origin_prefixes=frozenset()
        )


def test_too_few_prefixes_is_no_circuit_available() -> None:
    relays = [_relay(i, f"10.1.{i}.1") for i in range(1, 20)] + [_relay(99, "10.2.0.1")]
    with pytest.raises(NoCircuitAvailable):
        select_path(
            relays, SeededRng(1), hops=3, origin=NodeId(b"o" * 32), origin_prefixes=frozenset()
        )


def test_selection_is_weighted_by_score() -> None:
    strong = _relay(1, "10.1.0.1", GOOD)
    weak = _relay(2, "10.2.0.1", POOR)
    rng = SeededRng(5)
    first = Counter(
        select_path(
            [strong, weak], rng, hops=1, origin=NodeId(b"o" * 32), origin_prefixes=frozenset()
        )[0].node_id
        for _ in range(2000)
    )
    share = first[strong.node_id] / 2000
    assert share == pytest.approx(0.9 / 1.0, abs=0.03)


def test_directory_is_bounded_and_updatable() -> None:
    d = RelayDirectory(max_relays=2)
    a, b, c = _relay(1, "10.1.0.1"), _relay(2, "10.2.0.1"), _relay(3, "10.3.0.1")
    assert d.upsert(a) and d.upsert(b) and not d.upsert(c)
    moved = _relay(1, "10.9.0.1")
    assert d.upsert(moved) and d.get(a.node_id) == moved
    d.remove(a.node_id)
    assert a.node_id not in d and len(d) == 1 and list(d) == [b]


def test_relays_below_the_minimum_score_are_never_chosen() -> None:
    strong = _relay(1, "10.1.0.1", GOOD)
    weak = _relay(2, "10.2.0.1", POOR)  # score 0.1, the floor
    chosen = {
        select_path(
            [strong, weak],
            SeededRng(seed),
            hops=1,
            origin=NodeId(b"o" * 32),
            origin_prefixes=frozenset(),
            min_score=0.3,
        )[0].node_id
        for seed in range(200)
    }
    assert chosen == {strong.node_id}
    with pytest.raises(NoCircuitAvailable):
        select_path(
            [weak],
            SeededRng(1),
            hops=1,
            origin=NodeId(b"o" * 32),
            origin_prefixes=frozenset(),
            min_score=0.2,
        )


def test_the_first_hop_is_drawn_from_the_given_relays_when_any_qualifies() -> None:
    relays = [_relay(i, f"10.{i}.0.1") for i in range(1, 30)]
    near = [relays[3].node_id, relays[7].node_id]
    rng = SeededRng(4)
    firsts = Counter(
        select_path(
            relays,
            rng,
            hops=3,
            origin=NodeId(b"o" * 32),
            origin_prefixes=frozenset(),
            first_hop=near,
        )[0].node_id
        for _ in range(400)
    )
    assert set(firsts) == set(near) and min(firsts.values()) > 150
    # a near relay on the origin's own prefix does not qualify: any relay is drawn instead
    own = frozenset({network_prefix("10.4.0.1")})
    path = select_path(
        relays,
        rng,
        hops=3,
        origin=NodeId(b"o" * 32),
        origin_prefixes=own,
        first_hop=[relays[3].node_id],
    )
    assert path[0].node_id != relays[3].node_id


# --- regional paths ------------------------------------------------------------------------

REGIONS = RegionMap.parse("10.0.0.0/9 eu\n10.128.0.0/9 na\n")
"""10.0-127.x.x in eu, 10.128-255.x.x in na."""
ORIGIN = NodeId(b"\xff" * 32)  # no _relay id


def _regional_relays() -> list[RelayInfo]:
    """10 relays in eu (10.1-10), 30 in na (10.129-158), one in no region (192.0.2.1)."""
    eu = [_relay(i, f"10.{i}.0.1") for i in range(1, 11)]
    na = [_relay(100 + i, f"10.{128 + i}.0.1") for i in range(1, 31)]
    return [*eu, *na, _relay(200, "192.0.2.1")]


def _region(own_host: str | None, min_relays: int) -> HopRegion | None:
    return hop_region(
        _regional_relays(),
        regions=REGIONS,
        own_host=own_host,
        min_relays=min_relays,
        origin=ORIGIN,
        origin_prefixes=frozenset({network_prefix(own_host or "10.99.0.1")}),
        min_score=0.1,
    )


def test_hop_region_is_ours_only_when_it_holds_enough_hop_candidates() -> None:
    # our own /16 (10.1) is no candidate: 9 eu relays are left
    assert _region("10.1.0.1", 9) == HopRegion(REGIONS, "eu")
    assert _region("10.1.0.1", 10) is None
    assert _region("10.200.0.1", 30) == HopRegion(REGIONS, "na")
    assert _region("10.200.0.1", 31) is None
    assert _region("192.0.2.9", 1) is None  # our address is in no region
    assert _region(None, 1) is None  # no address yet


def test_regional_paths_keep_every_hop_in_the_region() -> None:
    relays = _regional_relays()
    region = HopRegion(REGIONS, "eu")
    eu = {r.node_id for r in relays[:10]}
    own = frozenset({network_prefix("10.99.0.1")})
    rng = SeededRng(4)
    drawn: set[NodeId] = set()
    for _ in range(300):
        path = select_path(relays, rng, hops=3, origin=ORIGIN, origin_prefixes=own, region=region)
        assert {r.node_id for r in path} <= eu and len({r.prefix for r in path}) == 3
        drawn.update(r.node_id for r in path)
    assert drawn == eu
    candidates = hop_candidates(
        relays, origin=ORIGIN, origin_prefixes=own, min_score=0.1, region=region
    )
    assert {r.node_id for r, _, _ in candidates} == eu
    with pytest.raises(NoCircuitAvailable):  # a region too small for a path stays strict
        select_path(relays[:2], rng, hops=3, origin=ORIGIN, origin_prefixes=own, region=region)
