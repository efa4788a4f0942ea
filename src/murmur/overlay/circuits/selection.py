"""Which relays a circuit goes through: capacity scores, prefix diversity, the known-relay list.

Theory of operation (seed onion-gossip §1.3, §1.6). Every node advertises a
:class:`RelayCapacity`; :func:`relay_score` is the seed's formula (bandwidth up to 0.4, uptime up
to 0.3, NAT up to 0.2, scaled down by load) floored at 0.1 so every node relays something. A path
is drawn from every relay in the origin's :class:`RelayDirectory` (not only its direct peers), hop
by hop, each hop with probability proportional to its score among the candidates left; a
candidate is left only if its network prefix (/16 for IPv4, /32 for IPv6) differs from the
origin's own prefixes and from every hop already chosen, so one operator on one network cannot
hold two hops of a circuit cheaply.

Regional paths (``ClientConfig.regions``): every hop, entry guards included, is drawn only from
the relays in the origin's own region (:class:`HopRegion`, as a :class:`RegionMap` places the
address each relay signs), when :func:`hop_region` finds enough of them there; from every relay
otherwise. Three links within one region cost a fraction of three drawn from the world.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from murmur.base.errors import MurmurError, RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.base.rng import Rng
from murmur.overlay.circuits.onion_keys import OnionPublicKeys
from murmur.overlay.circuits.regions import RegionMap
from murmur.overlay.peers.netgroup import network_prefix
from murmur.wire.cells import RelayAddress
from murmur.wire.codec import Reader, Writer

MIN_RELAY_SCORE = 0.1
FULL_BANDWIDTH_KBPS = 80_000
"""10 MB/s in kilobits per second: the seed's bandwidth that earns the full 0.4."""
RATIO_SCALE = 10_000
"""Uptime and load travel as integers in 1/10000 units."""


class NoCircuitAvailable(MurmurError):
    """No ready circuit and none can be built (too few diverse relays, or every build failed)."""


class NatType(enum.IntEnum):
    OPEN = 1
    FULL_CONE = 2
    RESTRICTED = 3
    SYMMETRIC = 4


_NAT_BONUS = {
    NatType.OPEN: 0.2,
    NatType.FULL_CONE: 0.15,
    NatType.RESTRICTED: 0.1,
    NatType.SYMMETRIC: 0.0,
}


def _ratio(value: float, name: str) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class RelayCapacity:
    """Self-assessed relay capacity, as advertised in a peer announcement."""

    bandwidth_kbps: int
    """Bandwidth offered for relaying, kilobits per second."""
    uptime_ratio: float
    nat_type: NatType
    load: float

    def __post_init__(self) -> None:
        if not 0 <= self.bandwidth_kbps <= 0xFFFF_FFFF:
            raise ValueError("bandwidth_kbps out of range")
        _ratio(self.uptime_ratio, "uptime_ratio")
        _ratio(self.load, "load")

    def encode(self) -> bytes:
        return (
            Writer()
            .push_u32(self.bandwidth_kbps)
            .push_u16(round(self.uptime_ratio * RATIO_SCALE))
            .push_u8(self.nat_type)
            .push_u16(round(self.load * RATIO_SCALE))
            .getvalue()
        )

    @classmethod
    def decode(cls, data: bytes) -> RelayCapacity:
        r = Reader(data)
        bandwidth, uptime, nat, load = r.pull_u32(), r.pull_u16(), r.pull_u8(), r.pull_u16()
        r.expect_end()
        if uptime > RATIO_SCALE or load > RATIO_SCALE:
            raise RemoteProtocolError("bad_capacity", "ratio above 1")
        try:
            nat_type = NatType(nat)
        except ValueError:
            raise RemoteProtocolError("bad_capacity", f"nat type {nat}") from None
        return cls(bandwidth, uptime / RATIO_SCALE, nat_type, load / RATIO_SCALE)


def relay_score(capacity: RelayCapacity) -> float:
    """The seed's score (§1.6), with its 0.1 floor so that every node participates."""
    score = min(capacity.bandwidth_kbps / FULL_BANDWIDTH_KBPS, 1.0) * 0.4
    score += capacity.uptime_ratio * 0.3
    score += _NAT_BONUS[capacity.nat_type]
    score *= 1.0 - capacity.load * 0.5
    return max(score, MIN_RELAY_SCORE)


def on_local_network(host: str) -> bool:
    """True for a loopback, private or link-local address (a testnet, a LAN, a simulation on
    private ranges); False for a global address, and for 0.0.0.0 / ``::``: a node listening
    on every interface is there to be reached from the internet."""
    ip = ipaddress.ip_address(host)
    return not ip.is_global and not ip.is_unspecified


@dataclass(frozen=True, slots=True)
class RelayInfo:
    """What the origin knows about one relay (from its verified, signed announcement)."""

    node_id: NodeId
    address: RelayAddress
    onion_keys: OnionPublicKeys
    capacity: RelayCapacity

    @property
    def prefix(self) -> bytes:
        return network_prefix(self.address.host)


class RelayDirectory:
    """Every reachable relay the origin knows, bounded; the node keeps it up to date."""

    __slots__ = ("_relays", "max_relays")

    def __init__(self, max_relays: int = 10_000) -> None:
        self.max_relays = max_relays
        self._relays: dict[NodeId, RelayInfo] = {}

    def __len__(self) -> int:
        return len(self._relays)

    def __iter__(self) -> Iterator[RelayInfo]:
        return iter(self._relays.values())

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._relays

    def get(self, node_id: NodeId) -> RelayInfo | None:
        return self._relays.get(node_id)

    def upsert(self, info: RelayInfo) -> bool:
        """Adds or refreshes a relay; False when the directory is full and it is new."""
        if info.node_id not in self._relays and len(self._relays) >= self.max_relays:
            return False
        self._relays[info.node_id] = info
        return True

    def remove(self, node_id: NodeId) -> None:
        self._relays.pop(node_id, None)


@dataclass(frozen=True, slots=True)
class HopRegion:
    """The region every hop is drawn from (regional paths): the relays whose announced
    address ``regions`` places in ``label``."""

    regions: RegionMap
    label: str

    def holds(self, relay: RelayInfo) -> bool:
        return self.regions.region_of(relay.address.host) == self.label


def hop_candidates(
    relays: Iterable[RelayInfo],
    *,
    origin: NodeId,
    origin_prefixes: frozenset[bytes],
    min_score: float,
    region: HopRegion | None = None,
) -> list[tuple[RelayInfo, float, bytes]]:
    """The relays that may be a hop of ``origin``'s circuits, with their score and network
    prefix: not the origin, not on one of its prefixes, scoring at least ``min_score``, and in
    ``region`` when one is given. The one rule path draws, entry guards and the client's own
    checks share."""
    return [
        (r, score, r.prefix)
        for r in relays
        if r.node_id != origin
        and r.prefix not in origin_prefixes
        and (score := relay_score(r.capacity)) >= min_score
        and (region is None or region.holds(r))
    ]


def hop_region(
    relays: Iterable[RelayInfo],
    *,
    regions: RegionMap,
    own_host: str | None,
    min_relays: int,
    origin: NodeId,
    origin_prefixes: frozenset[bytes],
    min_score: float,
) -> HopRegion | None:
    """Where regional paths draw hops from now: our own region (``own_host``'s, as ``regions``
    places it) when at least ``min_relays`` of ``relays`` there may be a hop; None (every relay)
    when our region is unknown or thinner. Decided over the whole directory, not per draw's
    leftovers, so path draws and entry guards apply one region."""
    label = None if own_host is None else regions.region_of(own_host)
    if label is None:
        return None
    region = HopRegion(regions, label)
    found = hop_candidates(
        relays,
        origin=origin,
        origin_prefixes=origin_prefixes,
        min_score=min_score,
        region=region,
    )
    return region if len(found) >= min_relays else None


def select_path(
    relays: Iterable[RelayInfo],
    rng: Rng,
    *,
    hops: int,
    origin: NodeId,
    origin_prefixes: frozenset[bytes],
    min_score: float = MIN_RELAY_SCORE,
    first_hop: Collection[NodeId] = (),
    strict_first_hop: bool = False,
    region: HopRegion | None = None,
) -> list[RelayInfo]:
    """``hops`` relays, score-weighted, on pairwise distinct prefixes none of which is ours,
    each scoring at least ``min_score`` (and in ``region``, when given); the first drawn from
    ``first_hop`` when any of those qualifies (from all relays otherwise, unless
    ``strict_first_hop``: entry guards never give way to another relay)."""
    candidates = hop_candidates(
        relays,
        origin=origin,
        origin_prefixes=origin_prefixes,
        min_score=min_score,
        region=region,
    )
    path: list[RelayInfo] = []
    used = set(origin_prefixes)
    for index in range(hops):
        candidates = [c for c in candidates if c[2] not in used]
        if not candidates:
            raise NoCircuitAvailable(
                f"need {hops} relays on distinct network prefixes, found {len(path)}"
            )
        pool = candidates
        if index == 0 and (first_hop or strict_first_hop):
            pool = [c for c in candidates if c[0].node_id in first_hop]
            if not pool and strict_first_hop:
                raise NoCircuitAvailable("no entry guard qualifies for hop 1")
            pool = pool or candidates
        point = rng.random() * sum(w for _, w, _ in pool)
        chosen, _, prefix = pool[-1]
        for relay, weight, relay_prefix in pool:
            point -= weight
            if point < 0:
                chosen, prefix = relay, relay_prefix
                break
        path.append(chosen)
        used.add(prefix)
    return path
