"""Adversaries: spy nodes and link observers, and the log they leave for the estimators.

Theory of operation: an adversary never changes what the protocol does; it only watches.

* **Spy nodes** (a random fraction f of all nodes) run the protocol like everyone else; the
  engine shows the adversary every message delivered to a spy. It keeps the first sighting of
  each transaction per spy and per phase (``stem`` / ``fluff`` for the baselines), which is
  everything the estimators here use, with memory bounded by spies x transactions x phases.
* **A link observer** (an ISP, a state) sees ``(time, src, dst, size)`` of every message on the
  directed links it taps, but not the contents; :func:`links_of_nodes` taps every link of a set
  of nodes.
* **Both** at once: one :class:`Adversary` may hold spies and taps.
* **Relay spies** (the onion protocol, :mod:`murmur.sim.spy`): a spy that is a hop of someone's
  circuit also logs every cell it handles as a relay (:class:`CellRecord`): when, from which link
  peer, which leg of which of its circuits, whether this hop could read the cell (recognized)
  and what it was. Memory is bounded by the cells spies handle (a few per transaction). It
  also logs when its relay sent each cell on towards a circuit's next hop
  (:class:`ForwardRecord`): the relay's own output, so a spy knows how long it held the cell.

What a message means (which transaction, which phase) is the protocol kit's business: the
adversary is given an ``observe(message) -> (tx_id, phase) | None`` function, so a new protocol
plugs in without touching this module. ``on_first_sighting`` fires when the adversary first sees
a transaction anywhere (a run that measures nothing else may stop the transaction there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from murmur.sim.engine import Engine

Observe = Callable[[Any], "tuple[bytes, str] | None"]


class Sighting(NamedTuple):
    """A spy's first reception of a transaction in a phase (tuples: millions may be logged)."""

    time: float
    spy: int
    tx_id: bytes
    sender: int
    phase: str


class LinkRecord(NamedTuple):
    """One message on a tapped link: when it left ``src``, its size, when it reached ``dst``."""

    time: float
    src: int
    dst: int
    size_bytes: int
    arrival: float


class CellRecord(NamedTuple):
    """One circuit cell a spy received as a relay, as the spy itself sees it."""

    time: float
    spy: int
    peer: int
    """The link peer it came from (node index)."""
    circ_id: int
    """The circuit id on that link (cleartext in the cell header, inside the link encryption)."""
    circuit: int
    """The spy's own number for the circuit (both legs share it; -1: unknown circuit)."""
    leg: str
    """``prev`` (from the side that created the circuit here), ``next`` or ``unknown``."""
    command: str
    """Cell command: ``CREATE``, ``CREATED``, ``RELAY`` or ``DESTROY``."""
    recognized: bool
    """This hop removed its layer and could read the cell (an EXTEND for it, or exit DATA)."""
    relay_command: str | None
    """For recognized cells: ``EXTEND``, ``DATA``, ``COVER`` or ``?`` (could not tell)."""


class ForwardRecord(NamedTuple):
    """A RELAY cell a spy's relay sent on a circuit's ``next`` leg: one it forwarded, after
    whatever hold the level adds (a relay originates no forward cells). A relay sends a
    circuit's forward cells on in the order they came, so a circuit's n-th forward record is
    when the n-th cell it relayed from ``prev`` left the spy."""

    time: float
    spy: int
    circuit: int
    """The spy's own number for the circuit, as in :class:`CellRecord`."""


class InboundLink(NamedTuple):
    """A peer opened a connection to a spy (its SYN arrived): the start of any link."""

    time: float
    spy: int
    peer: int


@dataclass(slots=True)
class AdversaryLog:
    spies: frozenset[int]
    tapped: frozenset[tuple[int, int]]
    watched: frozenset[int] = frozenset()
    """Nodes all of whose links the observer taps, whatever links they open later."""
    sightings: list[Sighting] = field(default_factory=list)
    """First sighting per (spy, transaction, phase), in time order."""
    first: dict[bytes, Sighting] = field(default_factory=dict)
    """The adversary's first sighting of each transaction, over all spies and phases."""
    first_by_phase: dict[str, dict[bytes, Sighting]] = field(default_factory=dict)
    links: list[LinkRecord] = field(default_factory=list)
    cells: list[CellRecord] = field(default_factory=list)
    """Cells spies handled as relays (the onion protocol), in time order."""
    forwards: list[ForwardRecord] = field(default_factory=list)
    """Cells spies' relays sent on towards a circuit's next hop, in time order."""
    inbound: list[InboundLink] = field(default_factory=list)
    """Connections peers opened to spies (the onion protocol), in time order."""
    hops: int = 0
    """Circuit length the protocol uses (known to every node; 0 when there are no circuits)."""
    tx_cells: dict[bytes, int] = field(default_factory=dict)
    """Cells each transaction's padded message takes on a circuit: anyone who saw it can work
    this out (its payload and topic are public, the padding buckets are the level's), so a
    departure of another size cannot have carried it."""
    relay_delay_s: tuple[float, float] = (0.0, 0.0)
    """Least and most a relay holds a cell before forwarding it (the level's ``relay_delay``,
    public like every setting of the protocol)."""
    link_latency_s: dict[tuple[int, int], float] = field(default_factory=dict)
    """One-way latency of links a spy sits on, keyed (lower index, higher index): what the spy
    measures with pings (half the round trip), for the estimators that use it; and of the
    tapped links cells left watched nodes on, which the observer times from each connection's
    handshake."""
    outbound: tuple[tuple[int, ...], ...] = ()
    """Who dialled whom (``outbound[v]``: the peers node ``v`` dialled), as topology inference
    recovers it in a Bitcoin-like network; empty when the adversary is not given it."""
    typical_one_way_s: Callable[[int, int], float] | None = field(default=None, compare=False)
    """The adversary's estimate of any link's latency from where its ends are (geolocation),
    without measuring it (:meth:`murmur.sim.network.LatencyModel.typical_one_way_s`; a method
    of the world's model, so two logs of one world compare equal without it)."""
    near_first_hops: int = 0
    """How many of its nearest outbound links a node draws hop 1 from (0: any relay; public,
    like every setting of the protocol)."""
    regions: dict[int, str] = field(default_factory=dict)
    """Each node's region as the public region map places it, when circuits are regional
    (every hop in the origin's region; empty otherwise)."""

    def one_way_s(self, a: int, b: int) -> float | None:
        return self.link_latency_s.get(_link_key(a, b))

    def measured(self, a: int, b: int, one_way_s: float) -> None:
        self.link_latency_s[_link_key(a, b)] = one_way_s


class Adversary:
    def __init__(
        self,
        *,
        spies: Iterable[int] = (),
        tapped: Iterable[tuple[int, int]] = (),
        watched: Iterable[int] = (),
        observe: Observe,
    ) -> None:
        self.log = AdversaryLog(
            spies=frozenset(spies), tapped=frozenset(tapped), watched=frozenset(watched)
        )
        self.on_first_sighting: Callable[[bytes], None] | None = None
        self._observe = observe
        self._seen: set[tuple[int, bytes, str]] = set()

    def install(self, engine: Engine) -> None:
        for spy in self.log.spies:
            engine.nodes[spy].spy = True
        if self.log.spies:
            engine.spy_hook = self.on_spy_receive
        if self.log.tapped:
            engine.tapped = set(self.log.tapped)
            engine.tap_hook = self.on_tap

    def on_spy_receive(self, now: float, spy: int, sender: int, message: Any) -> None:
        seen = self._observe(message)
        if seen is not None:
            self.record_sighting(now, spy, seen[0], sender, seen[1])

    def record_sighting(self, now: float, spy: int, tx_id: bytes, sender: int, phase: str) -> None:
        """Keeps the first sighting of ``tx_id`` per spy and phase (any protocol may call it)."""
        key = (spy, tx_id, phase)
        if key in self._seen:
            return
        self._seen.add(key)
        sighting = Sighting(now, spy, tx_id, sender, phase)
        log = self.log
        log.sightings.append(sighting)
        log.first_by_phase.setdefault(phase, {}).setdefault(tx_id, sighting)
        if tx_id not in log.first:
            log.first[tx_id] = sighting
            if self.on_first_sighting is not None:
                self.on_first_sighting(tx_id)

    def on_tap(self, now: float, arrival: float, src: int, dst: int, size_bytes: int) -> None:
        self.log.links.append(LinkRecord(now, src, dst, size_bytes, arrival))


def links_of_nodes(
    nodes: Iterable[int], neighbours: Sequence[Sequence[int]]
) -> set[tuple[int, int]]:
    """Every directed link touching one of ``nodes`` (what their ISP sees)."""
    links: set[tuple[int, int]] = set()
    for v in nodes:
        for w in neighbours[v]:
            links.add((v, w))
            links.add((w, v))
    return links


def _link_key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a <= b else (b, a)
