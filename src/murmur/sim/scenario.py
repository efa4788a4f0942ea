"""One simulated run: draw a world, host a protocol on it, watch, and record what happened.

Theory of operation: :func:`draw_world` turns a :class:`Scenario` and a seed into everything
that does not depend on the protocol: the peer graph, the spies and tapped links, the link
latencies and the transaction arrivals. Each of these comes from its own fork of the seeded rng,
so the same seed gives the same world to a protocol and to the diffusion baseline it is compared
with. :func:`simulate` then boots one protocol object per node (through a
:class:`~murmur.sim.protocols.ProtocolKit`), connects the graph, submits the transactions at
their arrival times, and runs the engine until every transaction has reached every node (or,
with ``stop_at_first_spy``, until the adversary has seen it), or ``settle_s`` after the last
arrival.

``stop_at_first_spy`` is the fast path for privacy-only runs such as the paper validation: once
the adversary has seen a transaction, nothing that happens to it later can change the first-spy
observation, so its messages are dropped. Without bandwidth contention (unlimited uplinks, which
:func:`simulate` enforces) transactions do not interact, so the first-spy figures have the same
distribution as in a full run. They are not the same sample path when a run has several
transactions: a node that would have kept relaying a stopped transaction would have drawn rng
values that a later transaction now gets instead. Latency and delivery are not measured.

Nodes boot at uniformly random times in the ``BOOT_SPREAD_S`` before the run starts, so their
epochs are not synchronised. Under churn a returning node boots a fresh protocol object and
reconnects to its graph neighbours that are up.

A transaction whose origin is down at its arrival time is never sent, and the record leaves it
out: it scores only the transactions that were sent. The adversary never faced the others, so
counting them made every one a recall miss, put an origin that sent nothing into precision's
average over originators (a zero), and counted as undelivered what no one sent; Fanti et al.
score the transactions that honest nodes broadcast. Holding the transaction until its origin
returns (a wallet that retries) is the other model, but it moves the send to the moment of
rejoining, a burst the workload does not have, and an origin that is not back before the run
ends would still send nothing. Dropping the arrival thins each origin's Poisson stream by the
times it is up, so what is sent is still a Poisson workload, at the same rate per origin while
it is up. Who is down when depends on the seed alone, so a protocol and its baseline on the
same world send the same transactions and their latencies still pair.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from murmur.base.errors import ConfigError
from murmur.sim.adversary import Adversary, AdversaryLog, links_of_nodes
from murmur.sim.churn import Churn
from murmur.sim.engine import Engine, SimNode
from murmur.sim.graphs import PeerGraph, build_graph
from murmur.sim.network import LatencyModel, NetworkConfig, build_latency
from murmur.sim.protocols import ProtocolKit
from murmur.sim.rng import SeededRng
from murmur.sim.workload import TxArrival, one_per_honest, poisson_arrivals

REACH_FRACTIONS: tuple[float, ...] = (0.5, 0.9, 0.99)
MIN_NODES = 2
BOOT_SPREAD_S = 600.0

Progress = Callable[[int, int], None]
"""Called with (transactions finished, transactions in the run)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    nodes: int = 1000
    graph: str = "daemon"
    spy_fraction: float = 0.1
    tap_fraction: float = 0.0
    """Fraction of honest nodes whose every link a link observer taps."""
    tx_count: int | None = 200
    """``None``: one transaction per honest node (the paper's setup)."""
    tx_rate_per_s: float = 10.0
    tx_size_bytes: int = 250
    origin_count: int | None = None
    """Draw origins from this many honest nodes only (chosen at random): many transactions
    per origin, the workload of intersection attacks. ``None``: every honest node."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    stop_at_first_spy: bool = False
    settle_s: float = 900.0
    elide_duplicates: bool = True
    """Skip queueing relays the receiver would drop as duplicates (identical figures, fewer
    events; off with churn, where a receiver may restart before the copy arrives)."""

    def __post_init__(self) -> None:
        if self.nodes < MIN_NODES:
            raise ConfigError(f"a simulation needs at least {MIN_NODES} nodes")
        if not 0.0 <= self.spy_fraction < 1.0 or not 0.0 <= self.tap_fraction <= 1.0:
            raise ConfigError("spy fraction must be in [0, 1) and tap fraction in [0, 1]")
        if self.tx_count is not None and self.tx_count < 1:
            raise ConfigError("a run needs at least one transaction")
        if self.origin_count is not None and (self.origin_count < 1 or self.tx_count is None):
            raise ConfigError("origin_count needs a transaction count and at least one origin")
        if self.tx_size_bytes < 1 or self.settle_s <= 0.0:
            raise ConfigError("transaction size and settle time must be positive")
        if self.stop_at_first_spy and self.network.uplink_mbps is not None:
            raise ConfigError("stop_at_first_spy is exact only with unlimited uplinks")


@dataclass(frozen=True, slots=True)
class World:
    """Everything a run needs that does not depend on the protocol."""

    graph: PeerGraph
    spies: frozenset[int]
    tapped: frozenset[tuple[int, int]]
    arrivals: tuple[TxArrival, ...]
    latency: LatencyModel
    seed: int
    watched: frozenset[int] = frozenset()
    """Honest nodes whose every link the link observer taps (``tapped`` holds their graph
    links; a protocol that opens other links, such as circuits, taps those too)."""


@dataclass(frozen=True, slots=True)
class TxOutcome:
    tx_id: bytes
    origin: int
    injected_at: float
    reach_s: tuple[float | None, ...]
    """Seconds from submission until REACH_FRACTIONS of the nodes up at submission had it
    (None: never; see :class:`Reach`)."""
    delivered: bool
    """Reached a node besides its origin, and every node up at submission that stayed up until
    the last of them was reached (see :class:`Reach`)."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    protocol: str
    estimators: tuple[str, ...]
    nodes: int
    honest: int
    spies: frozenset[int]
    txs: tuple[TxOutcome, ...]
    """Every transaction sent, in arrival order (one whose origin was down is not: see the
    module docstring)."""
    log: AdversaryLog
    latency_measured: bool
    bytes_sent: int
    messages_sent: int
    relay_participants: int
    bytes_span_s: float
    """The span ``bytes_sent`` was counted over (a baseline run: all of it; an onion phase:
    from its first transaction to 5 s after its last)."""
    sim_end_s: float
    events: int
    wall_s: float
    baseline: RunRecord | None = None
    """A comparison run on the same world in the same simulation (the onion protocol's fast
    path), if the protocol has one."""
    extras: dict[str, float | int | str] = field(default_factory=dict)
    """Protocol-specific facts worth reporting (warm-up time, crypto stand-in, ...)."""
    elided: int = 0
    """Deliveries sent but not queued as events (see :class:`Scenario` ``elide_duplicates``)."""
    unsent: int = 0
    """Arrivals never sent, their origin being down (not in ``txs``: see the module
    docstring)."""

    @property
    def origins(self) -> dict[bytes, int]:
        return {tx.tx_id: tx.origin for tx in self.txs}


def draw_world(scenario: Scenario, seed: int) -> World:
    master = SeededRng(seed)
    graph_rng, role_rng, net_rng, work_rng = (master.fork(label) for label in range(1, 5))
    n = scenario.nodes
    graph = build_graph(scenario.graph, n, graph_rng)
    spies = frozenset(role_rng.sample(range(n), math.floor(scenario.spy_fraction * n)))
    honest = [v for v in range(n) if v not in spies]
    watched = role_rng.sample(honest, round(scenario.tap_fraction * len(honest)))
    tapped = frozenset(links_of_nodes(sorted(watched), graph.neighbours()))
    latency = build_latency(scenario.network, n, net_rng)
    if scenario.tx_count is None:
        arrivals = one_per_honest(
            honest=honest,
            rate_per_s=scenario.tx_rate_per_s,
            size_bytes=scenario.tx_size_bytes,
            rng=work_rng,
        )
    else:
        origins = honest
        if scenario.origin_count is not None:
            origins = work_rng.fork(1).sample(honest, min(scenario.origin_count, len(honest)))
        arrivals = poisson_arrivals(
            scenario.tx_count,
            honest=origins,
            rate_per_s=scenario.tx_rate_per_s,
            size_bytes=scenario.tx_size_bytes,
            rng=work_rng,
        )
    return World(graph, spies, tapped, tuple(arrivals), latency, seed, frozenset(watched))


class Reach:
    """Per-transaction delivery state: who has it, and when each reach fraction was crossed.

    A fraction is of the nodes up when the transaction was submitted, its origin among them
    (every node, without churn). Counting nodes that are down, which nothing can reach, put
    the 90 and 99 % marks out of reach once that many were down (at one departure an hour
    and 600 s down, about 14 % of nodes are), leaving latency NaN or over a lucky few. Bitcoin
    propagation measurements (Decker and Wattenhofer 2013, and the bitcoinstats.com series
    after it) likewise count the nodes their monitor was connected to as the transaction
    spread. The set is fixed at submission rather than taken anew at each moment, so a reach
    time is always when the transaction got to a node: with a moving set the departure of a
    node that lacked it could tip the share over a mark. A node up at submission that leaves
    before the transaction gets there counts as not reached (the spread takes seconds, a node
    stays up for an hour on average at that rate), and one that comes up later is not
    counted. Who is up when depends on the seed alone, so a protocol and its baseline on the
    same world measure each transaction against the same nodes.

    Delivered: it reached a node besides its origin, and every node up at submission that
    stayed up until the last of them got it. The rule before, every node that stayed up from
    submission to the end of the run, shrinks to no node at all in a long run with churn, so
    transactions that reached no one counted as delivered. A node that left before the last
    one was reached may have left before the transaction could get to it; one still up then
    had as long as the slowest node that got it, so lacking it is a miss (the spread stalled or
    was cut off). A transaction no one else got is held to every node up at its submission,
    and one that no node but its origin held is never delivered, even with no other node up.
    The one case held against a transaction unfairly is a node that would have been reached
    last leaving after all the others had it and before its copy arrived: with hundreds of
    nodes at realistic churn, a rare tail.
    """

    __slots__ = (
        "count",
        "done",
        "duplicates",
        "has",
        "injected_at",
        "last_at",
        "reach",
        "reached",
        "thresholds",
        "up",
    )

    def __init__(self, nodes: Sequence[SimNode], injected_at: float) -> None:
        self.has = bytearray(len(nodes))
        self.up = bytes(node.up for node in nodes)
        """Who was up at submission: the nodes the reach fractions are of."""
        self.count = 0
        self.reached = 0
        """How many of the nodes up at submission have had it."""
        self.duplicates = 0
        self.injected_at = injected_at
        self.last_at = injected_at
        """When the last of the nodes up at submission to get it so far got it."""
        self.thresholds = reach_thresholds(self.up.count(1))
        self.reach: list[float | None] = [None] * len(REACH_FRACTIONS)
        self.done = False

    def add(self, node: int, now: float) -> bool:
        """Records that ``node`` has it now; True when every node has it (first time only)."""
        if self.has[node]:
            self.duplicates += 1
            return False
        self.has[node] = 1
        self.count += 1
        if self.up[node]:
            self.reached += 1
            self.last_at = now
            reached = self.reached
            for i, threshold in enumerate(self.thresholds):
                if reached == threshold:
                    self.reach[i] = now - self.injected_at
        return self.count == len(self.has)

    def delivered(self, origin: int, nodes: Sequence[SimNode]) -> bool:
        """Reached a node besides ``origin`` and every node up at submission that stayed up
        until the last of them got it (see the class docstring)."""
        if self.count == self.has[origin]:
            return False
        if self.reached == self.up.count(1):
            return True
        since, until = self.injected_at, self.last_at
        for v, node in enumerate(nodes):
            if self.up[v] and not self.has[v]:
                left = node.left_at
                i = bisect_left(left, since)
                if i == len(left) or left[i] > until:
                    return False
        return True

    def outcome(self, arrival: TxArrival, engine: Engine) -> TxOutcome:
        return TxOutcome(
            tx_id=arrival.tx.tx_id,
            origin=arrival.origin,
            injected_at=self.injected_at,
            reach_s=tuple(self.reach),
            delivered=self.delivered(arrival.origin, engine.nodes),
        )


def reach_thresholds(up: int) -> tuple[int, ...]:
    """How many of the ``up`` nodes up at submission each reach fraction takes; none when the
    origin was the only one up (a transaction no other node could hold reaches no share)."""
    if up < MIN_NODES:
        return ()
    return tuple(math.ceil(f * up) for f in REACH_FRACTIONS)


def simulate(
    world: World, kit: ProtocolKit, scenario: Scenario, *, progress: Progress | None = None
) -> RunRecord:
    wall_start = time.perf_counter()
    n = world.graph.size
    master = SeededRng(world.seed)
    node_rng, boot_rng, churn_rng, engine_rng = (master.fork(label) for label in range(11, 15))
    network = scenario.network
    engine = Engine(
        latency=world.latency,
        rng=engine_rng,
        uplink_bps=network.uplink_bps,
        jitter_fraction=network.jitter_fraction,
    )
    neighbours = world.graph.neighbours()
    for v in range(n):
        protocol = kit.build(v, world.graph, node_rng.fork(v), -boot_rng.uniform(0, BOOT_SPREAD_S))
        engine.add_node(protocol, kit.receiver(protocol))
    for v in range(n):
        protocol = engine.nodes[v].protocol
        for w in neighbours[v]:
            kit.connect(protocol, w, outbound=world.graph.is_outbound(v, w), now=0.0)

    total = len(world.arrivals)
    reach: dict[bytes, Reach] = {}
    finished = 0

    def finish(state: Reach) -> None:
        nonlocal finished
        if state.done:
            return
        state.done = True
        finished += 1
        if progress is not None:
            progress(finished, total)
        if finished == total:
            engine.stop()

    def on_accept(node: int, tx_id: bytes, now: float) -> None:
        state = reach.get(tx_id)
        if state is not None and state.add(node, now):
            finish(state)

    elide = scenario.elide_duplicates and network.churn_per_node_per_hour == 0.0
    kit.install(engine, on_accept, elide_duplicates=elide)
    adversary = Adversary(spies=world.spies, tapped=world.tapped, observe=kit.observe)
    adversary.install(engine)
    if scenario.stop_at_first_spy:
        resolved: set[bytes] = set()
        tx_of = kit.tx_of

        def on_first_sighting(tx_id: bytes) -> None:
            resolved.add(tx_id)
            finish(reach[tx_id])

        adversary.on_first_sighting = on_first_sighting
        engine.drop_filter = lambda message: tx_of(message) in resolved

    def submit(arrival: TxArrival, now: float) -> None:
        node = engine.nodes[arrival.origin]
        state = Reach(engine.nodes, now)
        if not node.up:
            finish(state)  # never sent, so not recorded (see the module docstring)
            return
        reach[arrival.tx.tx_id] = state
        kit.submit(node.protocol, arrival.tx, now)
        engine.pump(node)

    for arrival in world.arrivals:
        engine.at(arrival.time, partial(submit, arrival))

    relayed_before_restart: set[int] = set()
    if network.churn_per_node_per_hour > 0.0:
        _start_churn(engine, kit, world, scenario, neighbours, churn_rng, relayed_before_restart)

    for node in engine.nodes:
        engine.pump(node)
    last_arrival = world.arrivals[-1].time if world.arrivals else 0.0
    engine.run(until=last_arrival + scenario.settle_s)

    honest = [v for v in range(n) if v not in world.spies]
    participants = sum(
        1
        for v in honest
        if v in relayed_before_restart or kit.relayed(engine.nodes[v].protocol) > 0
    )
    sent = [a for a in world.arrivals if a.tx.tx_id in reach]
    outcomes = [reach[a.tx.tx_id].outcome(a, engine) for a in sent]
    return RunRecord(
        protocol=kit.name,
        estimators=kit.estimators,
        nodes=n,
        honest=len(honest),
        spies=world.spies,
        txs=tuple(outcomes),
        log=adversary.log,
        latency_measured=not scenario.stop_at_first_spy,
        bytes_sent=sum(node.bytes_sent for node in engine.nodes),
        messages_sent=sum(node.messages_sent for node in engine.nodes),
        relay_participants=participants,
        bytes_span_s=engine.now,
        sim_end_s=engine.now,
        events=engine.events,
        elided=engine.elided,
        unsent=len(world.arrivals) - len(sent),
        wall_s=time.perf_counter() - wall_start,
    )


def _start_churn(
    engine: Engine,
    kit: ProtocolKit,
    world: World,
    scenario: Scenario,
    neighbours: list[list[int]],
    rng: SeededRng,
    relayed_before_restart: set[int],
) -> None:
    restart_rng = rng.fork(0)

    def leave(index: int, now: float) -> None:
        node = engine.nodes[index]
        if kit.relayed(node.protocol) > 0:
            relayed_before_restart.add(index)
        node.up = False
        node.left_at.append(now)
        for w in neighbours[index]:
            peer = engine.nodes[w]
            if peer.up:
                kit.disconnect(peer.protocol, index, now)
                engine.pump(peer)

    def join(index: int, now: float) -> None:
        node = engine.nodes[index]
        protocol: Any = kit.build(index, world.graph, restart_rng.fork(index), now)
        node.protocol, node.receive = protocol, kit.receiver(protocol)
        node.up, node.timer_at = True, None
        for w in neighbours[index]:
            peer = engine.nodes[w]
            if peer.up:
                kit.connect(protocol, w, outbound=world.graph.is_outbound(index, w), now=now)
                kit.connect(
                    peer.protocol, index, outbound=world.graph.is_outbound(w, index), now=now
                )
                engine.pump(peer)
        engine.pump(node)

    churn = Churn(
        engine,
        leave_rate_per_s=scenario.network.churn_per_node_per_hour / 3600.0,
        mean_downtime_s=scenario.network.mean_downtime_s,
        rng=rng,
        leave=leave,
        join=join,
    )
    churn.start(range(world.graph.size), 0.0)
