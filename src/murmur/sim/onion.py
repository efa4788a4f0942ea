"""The onion protocol in the simulator: production nodes, real circuits, the fast path beside.

Theory of operation: :class:`OnionKit` runs one world (graph, spies, latencies, workload) on
:class:`murmur.node.node.Node` objects, the ones the daemon runs, hosted by
:class:`~murmur.sim.node_host.NodeHost`. Each node gets an identity seed, a forked seeded rng,
the graph's out-edges as bootstrap peers (node id pinned, as an operator would configure them),
an address on its own /16 and ``set_advertised_address``. With regional paths every node gets
one region map of the world (each node's /16 labelled with the region the latency model drew
for it), so the nodes place one another as a production node places relays from their
announced addresses. One simulation has four stages:

1. **Directories** (before the clock reaches 0). By default (``announce_flood`` off) every
   node boots at ``BOOT_AT_S`` and runs its own timers, alone, for ``OFFLINE_S``: it signs and
   publishes its announcement and its early re-announcements to nobody. Each node then takes
   every other node's latest announcement as a restarted node takes the records it kept
   (``Node.restore_announcements``): each is verified and judged fresh as gossip would judge
   it, and goes into the announcement book and the relay directory. That is the state of a
   network that has run for a while, where every node holds every relay's record but its
   gossip caches (seen ids, message cache, message store) hold only the last minutes' traffic;
   it costs none of the n² x mesh-degree copies of 9 kB a flood moves (about 10 million in a
   thousand-node network), nor the n² cache entries a flood leaves for minutes (about 1 kB a
   pair, measured: 9 GB at 3,000 nodes). The node then runs its timers alone for
   ``PRELOAD_HEARTBEATS`` seconds. With ``announce_flood``
   on, nodes boot at 0 and announcements travel by gossip, as on a fresh network (fine for a
   few hundred nodes; the early re-announcements flood again 10 and 40 s later).
2. **Warm-up.** Each node starts dialling (its bootstrap peers, and the first hops its circuit
   client picked) at a random time in ``[0, JOIN_SPREAD_S)``; links are authenticated, each
   new link carries the catch-up announcements the node hands a new peer, and each node builds
   its pool of circuits (telescoping, through real CREATE / EXTEND exchanges), until every node
   has a full pool (or ``warmup_max_s``). Uplinks are unlimited during the warm-up: the
   catch-up (up to 128 announcements, 1.2 MB, per new link) would otherwise queue for tens of
   seconds behind a 10 Mbit/s uplink and time out handshakes, a boot storm that says nothing
   about the workload. Nothing is measured here, but spies already log the cells they relay:
   how a circuit is built tells a hop where it sits.
3. **Onion phase.** The workload's transactions: each ``send_private("transaction", body)`` at
   its origin, at its arrival time after the warm-up; delivery is ``MessageDelivered`` on topic
   ``transaction`` at every node (the origin gets it back by gossip from the exit). The phase
   ends when every transaction reached every node, or ``settle_s`` after the last one.
4. **Fast-path phase** (``fast_path``): the same transactions, same origins and spacing, now
   ``publish("block_header", body)`` at the origin: plain gossip on the same nodes, links and
   mesh. It is the baseline for ``latency_overhead_ms`` and ``bandwidth_overhead``. It runs in
   a forked copy of the process (:mod:`murmur.sim.fork`) from the state the warm-up left, at the
   same virtual times as the onion phase, which this process runs meanwhile: both phases start
   from one network state (a paired comparison), and a run uses both cores. The child hands
   back the phase's record, its events and what it added to the health counters.
5. **Directory upkeep** (``upkeep_window_s`` > 0): what keeping every directory fresh costs,
   which the phases above leave out (they end long before the first periodic
   re-announcement). A quiet span of ``upkeep_window_s`` plus a propagation tail is measured,
   then one as long in which every node re-announces once, at a uniform time in the window
   (``PrivatePath.reannounce``: the node signs and publishes a new record, as it does on its
   own schedule). The difference in bytes, over n nodes and n announcements, is what one
   announcement costs each node; times n over the mean re-announce interval, the steady-state
   upkeep per node (``extras["upkeep_*"]``). The window compresses a real interval's
   announcements, so it is kept long enough not to congest uplinks.

Each phase's bytes are those the nodes sent while it ran (background traffic included:
heartbeats, IHAVE, keepalives), so the ratio compares like with like. Spies log every gossip
delivery on the phase's topic (:mod:`murmur.sim.spy`) and every cell they relay; a link
observer taps every link (circuit links included) of the world's watched nodes. With
``standin_crypto`` the run is wrapped in :func:`murmur.sim.crypto_standin.standin_crypto`
and the record says so (``extras["crypto"]``).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from itertools import pairwise
from typing import Any

from murmur.base.errors import ConfigError, MurmurError
from murmur.base.ids import NodeId
from murmur.crypto.identity import Identity
from murmur.node.actions import MessageDelivered, PrivateSendFailed
from murmur.node.config import BootstrapPeer, NodeConfig
from murmur.node.levels import DEFAULT_PRESET, PRESETS, PrivacySettings
from murmur.node.node import CIRCUIT_LINK_IDLE_S, Node
from murmur.node.private_path import REANNOUNCE_INTERVAL_S
from murmur.overlay.announce import PeerAnnouncement, keep_decoded
from murmur.overlay.circuits.guards import GuardRecord
from murmur.overlay.circuits.host import RelayRole
from murmur.overlay.circuits.regions import RegionMap
from murmur.overlay.gossip.config import GossipConfig
from murmur.overlay.gossip.shared import SHARED_MESSAGES, SharedMessages
from murmur.overlay.routing import MessageType
from murmur.overlay.shaping.config import DelayRange, TimingLaw
from murmur.sim.adversary import Adversary, CellRecord, ForwardRecord, InboundLink
from murmur.sim.crypto_standin import standin_crypto
from murmur.sim.denial import DENIAL_MODES, DenialMode, SelectiveDenial
from murmur.sim.engine import Engine, SimNode
from murmur.sim.estimators import PROTOCOL_ESTIMATORS
from murmur.sim.fork import in_fork
from murmur.sim.network import REGION_NAMES, RegionLatency
from murmur.sim.node_host import (
    WALL_CLOCK_AT_ZERO_S,
    NodeHost,
    address_region_map,
    node_address,
)
from murmur.sim.overload import Overload
from murmur.sim.rng import SeededRng
from murmur.sim.scenario import Progress, Reach, RunRecord, Scenario, World
from murmur.sim.spy import RelayTap
from murmur.sim.timing import hop_one_circuits
from murmur.sim.workload import TxArrival
from murmur.wire.cells import Envelope, MessageKind, cells_for, envelope_size, padded_size
from murmur.wire.gossip import message_id

TX_TOPIC = MessageType.TRANSACTION.value
FAST_TOPIC = MessageType.BLOCK_HEADER.value
BOOT_AT_S = -70.0
OFFLINE_S = 55.0
"""Nodes boot at ``BOOT_AT_S`` and run their timers alone this long before taking the
directory: long enough for every announcement a node makes on its own right after start (the
first and its early re-announcements), so none of them floods the network later."""
PRELOAD_HEARTBEATS = 6
"""Seconds a node runs its timers alone once it holds the directory, before it joins: its
circuit client picks its first hops and queues their dials, as after a restart."""
JOIN_SPREAD_S = 10.0
"""Nodes start dialling at uniform times in [0, this): links (and the catch-up each one
carries) come up over a few seconds instead of all at once."""
WARMUP_STEP_S = 1.0
MEASURE_TAIL_S = 5.0
"""Bytes are counted from a phase's start to its last arrival plus this."""
UPKEEP_TAIL_S = 30.0
"""Directory upkeep is counted this long past its window: lazily forwarded records move about
a heartbeat and a round trip per hop, and an unanswered IWANT is re-asked after 3 s."""
PHASE_GAP_S = 2.0
FAST_PATH_NAME = "fastpath"


@dataclass(frozen=True, slots=True)
class OnionKit:
    standin_crypto: bool = False
    """Replace ML-DSA-87 and ML-KEM-1024 by same-size keyed stand-ins (large runs only)."""
    announce_flood: bool = False
    """Let announcements flood from time 0 instead of taking them before the links start."""
    fast_path: bool = True
    """Run the fast-path baseline (``RunRecord.baseline``) beside the onion phase, forked."""
    warmup_max_s: float = 180.0
    settle_s: float = 120.0
    """How long a phase may run past its last transaction before it is cut off."""
    name: str = "onion"
    estimators: tuple[str, ...] = PROTOCOL_ESTIMATORS["onion"]
    preset: str = DEFAULT_PRESET
    level: str | None = None
    """Every node's privacy level (None: the preset's); transactions use it."""
    cover_rate_per_s: float | None = None
    """Overrides the level's background cover rate (0: none), for tuning sweeps."""
    cover_to_second_hop: bool | None = None
    """Overrides whether cover is addressed to hop 2 instead of the exit."""
    build_race: int | None = None
    """Overrides the preset's circuit build race, for tuning sweeps."""
    near_first_hops: int | None = None
    """Overrides how many near outbound links hop 1 is drawn from, for tuning sweeps."""
    race_through_exit: bool | None = None
    """Overrides whether a build race is decided on the whole path or before the exit."""
    entry_guards: int | None = None
    """Overrides the preset's number of entry guards (0: hop 1 from every relay)."""
    circuit_lifetime_s: float | None = None
    """Overrides the preset's circuit lifetime (with its jitter in proportion): short ones fit
    many rotations into a run, to measure exposure that grows with time."""
    path_bias: bool | None = None
    """Overrides whether nodes disable entry guards whose circuits fail past them."""
    path_bias_baseline: bool | None = None
    """Overrides whether path bias lowers its bar when the node's relay sees circuits fail."""
    regional_paths: bool | None = None
    """Overrides whether nodes draw every hop from their own region (the world's regions,
    :func:`world_region_map`; needs the ``regions`` latency model)."""
    overload: float = 0.0
    """Every honest relay refuses this share of the circuits other relays extend to it
    (:mod:`murmur.sim.overload`): a network in trouble, path bias's false alarms."""
    selective_denial: DenialMode | None = None
    """Spies serve circuits from honest relays only towards fellow spies, refusing to extend
    them (``extend``) or dropping what they carry (``carry``): :mod:`murmur.sim.denial`, an
    active adversary; path bias is the defence. None: spies follow the protocol."""
    origin_delay: DelayRange | None = None
    """Holds every private message back at its origin for a uniform delay (seed §2.3)."""
    relay_delay: DelayRange | None = None
    """Overrides the level's relay delay: every relay holds each cell it forwards for a
    uniform delay (a zero range: none)."""
    slot_law: TimingLaw | None = None
    """Overrides the slots' timing law (levels with slot-based sending)."""
    upkeep_window_s: float = 0.0
    """Measure directory upkeep after the phases, every node re-announcing once within a
    window this long (0: not measured)."""
    eager_announcements: bool = False
    """Push announcements in full to the mesh instead of lazily (the comparison upkeep
    figures are measured against)."""

    def __post_init__(self) -> None:
        # unknown names and bad tunables fail here, not mid-run (the region map is the world's)
        self.privacy().client_config(RegionMap.from_entries(()))
        if self.selective_denial not in (None, *DENIAL_MODES):
            raise ConfigError(f"unknown selective denial mode {self.selective_denial!r}")
        if self.upkeep_window_s < 0:
            raise ConfigError("upkeep_window_s must be >= 0")
        if not 0.0 <= self.overload <= 1.0:
            raise ConfigError("overload must lie in [0, 1]")

    def privacy(self) -> PrivacySettings:
        settings = PrivacySettings.from_names(self.preset, self.level)
        return settings.tuned(
            cover_rate_per_s=self.cover_rate_per_s,
            cover_to_second_hop=self.cover_to_second_hop,
            build_race=self.build_race,
            near_first_hops=self.near_first_hops,
            race_through_exit=self.race_through_exit,
            origin_delay=self.origin_delay,
            relay_delay=self.relay_delay,
            slot_law=self.slot_law,
            entry_guards=self.entry_guards,
            circuit_lifetime_s=self.circuit_lifetime_s,
            path_bias=self.path_bias,
            path_bias_baseline=self.path_bias_baseline,
            regional_paths=self.regional_paths,
        )

    def run(self, world: World, scenario: Scenario, progress: Progress | None = None) -> RunRecord:
        if scenario.network.churn_per_node_per_hour > 0.0:
            raise ConfigError("the onion protocol is not simulated under churn yet")
        if scenario.stop_at_first_spy:
            raise ConfigError("stop_at_first_spy does not apply to the onion protocol")
        with standin_crypto(self.standin_crypto):
            return _OnionRun(world, scenario, self, progress).run()


@contextmanager
def warmed_up(world: World, scenario: Scenario, kit: OnionKit) -> Iterator[list[Node]]:
    """The nodes of ``kit``'s run on ``world`` as its warm-up leaves them, before any phase:
    what a node holds there, for memory measurements (``scripts/pair_memory.py``)."""
    with standin_crypto(kit.standin_crypto):
        run = _OnionRun(world, scenario, kit, None)
        run.start()
        yield run.nodes


def world_regions(world: World) -> list[str]:
    """Each node's region in ``world``, as the latency model drew it (``REGION_NAMES``)."""
    latency = world.latency
    if not isinstance(latency, RegionLatency):
        raise ConfigError("regional paths need the regions latency model (a realistic network)")
    return [REGION_NAMES[r] for r in latency.regions]


def world_region_map(world: World) -> RegionMap:
    """The region map every node of ``world`` holds with regional paths: node ``i``'s /16
    labelled with its region (:func:`world_regions`)."""
    return address_region_map(world_regions(world))


class _Phase:
    """One workload pass (onion or fast path): delivery state and the spies' gossip log."""

    def __init__(self, name: str, topic: str, world: World, estimators: tuple[str, ...]) -> None:
        self.name = name
        self.topic = topic
        self.estimators = estimators
        self.adversary = Adversary(
            spies=world.spies,
            tapped=world.tapped,
            watched=world.watched,
            observe=lambda message: None,
        )
        self.reach: dict[bytes, Reach] = {}
        self.tx_of: dict[bytes, bytes] = {}
        """Gossip message id -> transaction id."""
        self.total = len(world.arrivals)
        self.finished = 0
        self.start = 0.0
        self.bytes_before = 0
        self.messages_before = 0
        self.private_bytes_before = 0
        self.stop_when_done = False
        self.relayed_before: list[int] = []
        self.relayed_after: list[int] = []
        self.bytes_sent = 0
        self.messages_sent = 0
        self.span_s = 0.0
        """How long bytes were counted."""


@dataclass(frozen=True, slots=True)
class _Baseline:
    """What the forked fast-path phase hands back: its record, its duplicate deliveries, and
    the engine's event count and the health tally (:meth:`_OnionRun._tally`) as they stood
    when it ended."""

    record: RunRecord
    duplicates: int
    events: int
    tally: dict[str, int]

    def since(self, events: int, tally: dict[str, int]) -> _Baseline:
        """What the child added to the counts it started from (those at the fork)."""
        added = {name: count - tally.get(name, 0) for name, count in self.tally.items()}
        return replace(self, events=self.events - events, tally=added)


class _OnionRun:
    def __init__(
        self, world: World, scenario: Scenario, kit: OnionKit, progress: Progress | None
    ) -> None:
        self.wall_start = time.perf_counter()
        self.world = world
        self.scenario = scenario
        self.kit = kit
        self.progress = progress
        self.n = n = world.graph.size
        master = SeededRng(world.seed)
        node_rng, identity_rng, engine_rng = (master.fork(label) for label in (11, 15, 14))
        network = scenario.network
        self.engine = Engine(
            latency=world.latency,
            rng=engine_rng,
            uplink_bps=network.uplink_bps,
            jitter_fraction=network.jitter_fraction,
        )
        self.host = NodeHost(
            self.engine,
            on_delivered=self._delivered,
            on_failed=self._failed,
            on_inbound=self._inbound,
        )
        addresses = [node_address(v) for v in range(n)]
        identities = [Identity.from_seed(identity_rng.random_bytes(32)) for _ in range(n)]
        self.index_of: dict[NodeId, int] = {ident.node_id: v for v, ident in enumerate(identities)}
        boot = BOOT_AT_S if not kit.announce_flood else 0.0
        join_rng = master.fork(16)
        self.join_at = [
            0.0 if kit.announce_flood else join_rng.uniform(0.0, JOIN_SPREAD_S) for _ in range(n)
        ]
        self.nodes: list[Node] = []
        self.privacy = privacy = _with_workload_cover(kit.privacy(), world.arrivals)
        self.buckets = privacy.level.shaping.buckets
        """The level's padding buckets: public, so spies know a transaction's cell count."""
        # Every router takes its message bytes from one place: one copy per message, not n (a
        # network-wide re-announcement is 18 GB without; see murmur.overlay.gossip.shared).
        shared = SharedMessages(max(SHARED_MESSAGES, 2 * n))
        keep_decoded(2 * n)  # every node decodes every record: one shared copy each
        gossip_config = GossipConfig(lazy_topics=frozenset()) if kit.eager_announcements else None
        # Compressed time: links opened for circuits stay open unused for the same share of a
        # circuit's lifetime as at the preset's own (else they pile up, as every rotation opens
        # new ones long before the old ones would close).
        compression = privacy.preset.circuit_lifetime_s / PRESETS[kit.preset].circuit_lifetime_s
        link_idle = (CIRCUIT_LINK_IDLE_S[0] * compression, CIRCUIT_LINK_IDLE_S[1] * compression)
        regions = world_region_map(world) if privacy.preset.regional_paths else None
        for v in range(n):
            config = NodeConfig(
                listen=addresses[v],
                bootstrap=tuple(
                    BootstrapPeer(addresses[w], identities[w].node_id) for w in world.graph.out[v]
                ),
            )
            node = Node(
                identity=identities[v],
                config=config,
                rng=node_rng.fork(v),
                now=boot,
                wall_clock_offset_s=WALL_CLOCK_AT_ZERO_S,
                privacy=privacy,
                gossip_config=gossip_config,
                circuit_link_idle_s=link_idle,
                regions=regions,
            )
            node.gossip.share_messages(shared)
            node.set_advertised_address(addresses[v].host, addresses[v].port, boot)
            self.nodes.append(node)
            self.host.add(node, addresses[v])
        self.onion = _Phase(kit.name, TX_TOPIC, world, kit.estimators)
        self.fast = _Phase(FAST_PATH_NAME, FAST_TOPIC, world, ("first_spy",))
        log = self.onion.adversary.log
        log.hops = self.nodes[0].circuits.client.config.hops
        log.near_first_hops = privacy.preset.near_first_hops
        if privacy.preset.regional_paths:
            log.regions = dict(enumerate(world_regions(world)))
        log.outbound = world.graph.out
        log.typical_one_way_s = world.latency.typical_one_way_s
        delay = privacy.relay_config().forward_delay
        if delay is not None:
            log.relay_delay_s = (delay.min_s, delay.max_s)
        self.phases = {TX_TOPIC: self.onion, FAST_TOPIC: self.fast}
        self.current = self.onion
        self.sends: dict[tuple[int, int], bytes] = {}
        """(origin, send id) -> gossip message id of a private send in flight."""
        self.origin_of: dict[bytes, int] = {}
        """Gossip message id of a private send -> its origin (ground truth, never estimated)."""
        self.entry_spied: set[bytes] = set()
        """Private sends whose circuit had a spy at hop 1 (ground truth): the transactions a
        single-ended estimator can name."""
        self.both_ends: set[bytes] = set()
        """Private sends whose circuit had spies at hop 1 and at the exit (ground truth)."""
        self.entry_middle: set[bytes] = set()
        """Private sends whose circuit had spies at hop 1 and hop 2 (ground truth)."""
        self.failed_sends = 0
        self._held: dict[int, list[Any]] = {}
        """Actions nodes produced while taking the directory, routed when the clock starts."""
        self.taps: dict[int, RelayTap] = {}
        self.denials: dict[int, SelectiveDenial] = {}
        self.overloads: dict[int, Overload] = {}
        self._overload_rng = master.fork(18)
        self.relay_created: set[tuple[int, int, int]] = set()
        for v in range(n):
            self._tap(v)
        if world.watched:
            self.engine.tapped_nodes = set(world.watched)
            self.engine.tap_hook = self._on_tap

    # -- instrumentation ------------------------------------------------------------------

    def _tap(self, v: int) -> None:
        """Every relay gets a tap: spies log their cells; every tap notes which circuit legs
        its relay created by EXTEND, the ground truth of who is hop 1 (reported, never used
        by an estimator)."""
        node = self.nodes[v]
        created = self.relay_created
        relay: RelayRole = node.circuits.relay
        if self.kit.selective_denial and v in self.world.spies:
            spies, index_of = self.world.spies, self.index_of
            relay = self.denials[v] = SelectiveDenial(
                relay,
                is_spy=lambda peer: index_of.get(peer, -1) in spies,
                mode=self.kit.selective_denial,
            )
        elif self.kit.overload and v not in self.world.spies:
            index_of = self.index_of
            relay = self.overloads[v] = Overload(
                relay,
                share=self.kit.overload,
                rng=self._overload_rng.fork(v),
                is_extension=lambda peer, circ: (index_of.get(peer, -1), v, circ) in created,
            )
        spy = v in self.world.spies
        tap = RelayTap(
            relay,
            spy=v,
            index_of=self.index_of,
            record=self._log_cell if spy else None,
            record_forward=self._log_forward if spy else None,
            on_create_sent=lambda peer, circ: created.add((v, peer, circ)),
        )
        node.circuits.relay = tap
        self.taps[v] = tap

    def _log_cell(self, cell: CellRecord) -> None:
        self.onion.adversary.log.cells.append(cell)

    def _log_forward(self, forward: ForwardRecord) -> None:
        self.onion.adversary.log.forwards.append(forward)

    def _on_tap(self, now: float, arrival: float, src: int, dst: int, size: int) -> None:
        self.current.adversary.on_tap(now, arrival, src, dst, size)

    def _inbound(self, index: int, dialler: int, now: float) -> None:
        if index in self.world.spies:
            self.onion.adversary.log.inbound.append(InboundLink(now, index, dialler))

    def _delivered(self, index: int, action: MessageDelivered, now: float) -> None:
        phase = self.phases.get(action.topic)
        if phase is None:
            return
        mid = action.message_id
        state = phase.reach.get(mid)
        if state is None:
            return
        if state.add(index, now):
            self._finish(phase, state)
        if action.received_from is None:
            self._note_spies_on_path(mid, index)
        if index in self.world.spies:
            log = phase.adversary.log
            tx_id = phase.tx_of[mid]
            if tx_id not in log.tx_cells:
                framed = Envelope(MessageKind.PUBLISH, action.topic, action.data).framed_size
                log.tx_cells[tx_id] = cells_for(padded_size(framed, self.buckets))
            sender = action.received_from
            if sender is not None:
                phase.adversary.record_sighting(
                    now, index, tx_id, self.index_of.get(sender, -1), "gossip"
                )
            else:
                came_from = self.taps[index].exit_senders.get(mid, -1)
                phase.adversary.record_sighting(now, index, tx_id, came_from, "exit")

    def _failed(self, index: int, action: PrivateSendFailed, now: float) -> None:
        mid = self.sends.pop((index, action.send_id), None)
        if mid is not None:
            self.failed_sends += 1
            self._finish(self.onion, self.onion.reach[mid])

    def _finish(self, phase: _Phase, state: Reach) -> None:
        if state.done:
            return
        state.done = True
        phase.finished += 1
        if self.progress is not None:
            done = phase.finished + (self.onion.total if phase is self.fast else 0)
            self.progress(done, self.onion.total * (2 if self.kit.fast_path else 1))
        if phase.finished == phase.total and phase.stop_when_done:
            self.engine.stop()

    # -- stages ---------------------------------------------------------------------------

    def run(self) -> RunRecord:
        warmup_s, ready = self.start()
        if self.kit.fast_path:
            events_at_fork, tally_at_fork = self.engine.events, self._tally()
            with in_fork(self._fast_path_baseline) as forked:
                onion = self._run_phase(self.onion, self._send_private)
                baseline = forked.result()
            if self.progress is not None:
                self.progress(2 * self.onion.total, 2 * self.onion.total)
            baseline = baseline.since(events_at_fork, tally_at_fork)
        else:
            onion, baseline = self._run_phase(self.onion, self._send_private), None
        record = self._record(onion, baseline, warmup_s, ready)
        if self.kit.upkeep_window_s > 0:
            # The record's log is the onion phase's: what spies see during the upkeep stage
            # (cells of later circuits and cover, link records) must not reach its estimators.
            self._stop_logging()
            record.extras.update(self._measure_upkeep(onion, baseline))
        return record

    def start(self) -> tuple[float, float]:
        """Takes the directories, starts every node and warms up; returns the warm-up's length
        and the share of nodes that ended it with a full circuit pool."""
        engine = self.engine
        if not self.kit.announce_flood:
            self._preload_directories()
        for v, sim in enumerate(engine.nodes):
            held = self._held.pop(v, [])

            def join(now: float, sim: SimNode = sim, held: list[Any] = held) -> None:
                engine.dispatch(sim, held)

            engine.at(self.join_at[v], join)
            engine.pump(sim)
        return self._warm_up()

    def _stop_logging(self) -> None:
        """Points all the spies' logging (cells, gossip, link taps, inbound links: all of it
        goes to ``self.onion.adversary``) at a scratch adversary the record does not hold."""
        world = self.world
        self.onion.adversary = Adversary(
            spies=world.spies, tapped=world.tapped, watched=world.watched, observe=lambda m: None
        )

    def _fast_path_baseline(self) -> _Baseline:
        """The fast-path phase, run in the forked child (so from the state the warm-up left,
        at the same virtual times as the onion phase): its record and what it added to the
        run's counters."""
        self.progress = None  # the parent's progress display is not the child's to draw
        fast = self._run_phase(self.fast, self._publish)
        self._measure_spy_links(fast)
        record = self._phase_record(fast, events=0, wall_s=0.0)
        duplicates = sum(s.duplicates for s in fast.reach.values())
        return _Baseline(record, duplicates, self.engine.events, self._tally())

    def _preload_directories(self) -> None:
        announcements = []
        for node in self.nodes:
            for second in range(round(OFFLINE_S)):
                node.handle_timer(BOOT_AT_S + second)
            own = node.private.own_announcement
            if own is None:
                raise RuntimeError("a node with an advertised address did not announce itself")
            announcements.append(own)
        at = BOOT_AT_S + OFFLINE_S
        for v, node in enumerate(self.nodes):
            others = announcements[:v] + announcements[v + 1 :]
            if node.restore_announcements(others, at) != len(others):
                raise RuntimeError("a node refused a fellow node's announcement")
            for beat in range(1, PRELOAD_HEARTBEATS + 1):
                node.handle_timer(at + beat)
            self._held[v] = [a for a in node.drain_actions() if not isinstance(a, MessageDelivered)]

    def _warm_up(self) -> tuple[float, float]:
        engine, kit = self.engine, self.kit
        n = self.n
        pool = self.nodes[0].circuits.client.config.pool_size
        uplink, engine.uplink_bps = engine.uplink_bps, None
        t = 0.0
        while True:
            t += WARMUP_STEP_S
            engine.run(until=t)
            ready = sum(1 for node in self.nodes if node.circuits.client.ready_circuits() >= pool)
            known = all(len(node.private.directory) >= n - 1 for node in self.nodes)
            if (ready == n and known) or t >= kit.warmup_max_s:
                engine.uplink_bps = uplink
                return t, ready / n

    def _run_phase(self, phase: _Phase, submit: Callable[[TxArrival, float], None]) -> Any:
        engine = self.engine
        self.current = phase
        phase.start = start = math.ceil(engine.now) + PHASE_GAP_S
        engine.run(until=start)
        phase.bytes_before = self._bytes_sent()
        phase.messages_before = sum(sim.messages_sent for sim in engine.nodes)
        phase.private_bytes_before = self._private_bytes()
        phase.relayed_before = [self._relayed(v, phase) for v in range(self.n)]
        arrivals = self.world.arrivals
        for arrival in arrivals:
            engine.at(start + arrival.time, partial(submit, arrival))
        last = start + (arrivals[-1].time if arrivals else 0.0)
        # Bytes are counted over the same span in both phases (the workload plus a fixed tail),
        # since background traffic (cover, padding) grows with the time a phase runs.
        engine.run(until=last + MEASURE_TAIL_S)
        phase.span_s = last + MEASURE_TAIL_S - start
        phase.bytes_sent = self._bytes_sent() - phase.bytes_before
        phase.messages_sent = sum(sim.messages_sent for sim in engine.nodes) - phase.messages_before
        if phase is self.fast:
            phase.bytes_sent -= self._private_bytes() - phase.private_bytes_before
        phase.relayed_after = [self._relayed(v, phase) for v in range(self.n)]
        if phase.finished < phase.total:
            phase.stop_when_done = True
            engine.run(until=last + self.kit.settle_s)
        return phase

    def _measure_upkeep(self, onion: _Phase, baseline: _Baseline | None) -> dict[str, float | str]:
        engine, n = self.engine, self.n
        window = self.kit.upkeep_window_s
        span = window + UPKEEP_TAIL_S
        start = math.ceil(engine.now) + PHASE_GAP_S
        engine.run(until=start)
        before = self._bytes_sent()
        engine.run(until=start + span)
        middle = self._bytes_sent()
        when = SeededRng(self.world.seed).fork(17)
        for v in range(n):
            engine.at(engine.now + when.uniform(0.0, window), partial(self._reannounce, v))
        engine.run(until=start + 2 * span)
        after = self._bytes_sent()
        per_announcement = max(0, (after - middle) - (middle - before)) / (n * n)
        steady = per_announcement * n / REANNOUNCE_INTERVAL_S
        upkeep: dict[str, float | str] = {
            "upkeep_window_s": window,
            "upkeep_bytes_per_node_per_announcement": per_announcement,
            "upkeep_bytes_per_node_per_s": steady,
            "upkeep_reached": self._fresh_fraction(),
            "upkeep_announcements": "eager" if self.kit.eager_announcements else "lazy",
        }
        if baseline is not None and baseline.record.bytes_sent > 0:
            with_upkeep = onion.bytes_sent + steady * n * onion.span_s
            upkeep["bandwidth_overhead_with_upkeep"] = with_upkeep / baseline.record.bytes_sent
        return upkeep

    def _reannounce(self, v: int, now: float) -> None:
        self.nodes[v].private.reannounce(now)
        self.engine.pump(self.engine.nodes[v])

    def _fresh_fraction(self) -> float:
        """Of all (node, other node) pairs, the share where the node holds the other's latest
        announcement."""
        latest: dict[NodeId, int] = {}
        for node in self.nodes:
            own = node.private.own_announcement
            if own is not None:
                announcement = PeerAnnouncement.decode(own)
                latest[announcement.node_id] = announcement.sequence
        fresh = 0
        for node in self.nodes:
            for node_id, sequence in latest.items():
                held = node.private.book.get(node_id)
                fresh += held is not None and held.sequence == sequence
        return fresh / (self.n * (self.n - 1))

    def _bytes_sent(self) -> int:
        """Everything every node has sent so far."""
        return sum(sim.bytes_sent for sim in self.engine.nodes)

    def _private_bytes(self) -> int:
        """What the private path itself has sent (circuit cells, link padding), all nodes: the
        fast-path baseline is a network without it."""
        return sum(
            node.counters.get("bytes_out.circuit") + node.counters.get("bytes_out.padding")
            for node in self.nodes
        )

    def _send_private(self, arrival: TxArrival, now: float) -> None:
        phase = self.onion
        body = arrival.tx.body
        mid = message_id(TX_TOPIC, body)
        state = phase.reach[mid] = Reach(self.engine.nodes, now)
        phase.tx_of[mid] = arrival.tx.tx_id
        self.origin_of[mid] = arrival.origin
        node = self.nodes[arrival.origin]
        try:
            send_id = node.send_private(TX_TOPIC, body, now)
        except MurmurError:
            self.failed_sends += 1
            self._finish(phase, state)
        else:
            self.sends[(arrival.origin, send_id)] = mid
        self.engine.pump(self.engine.nodes[arrival.origin])

    def _publish(self, arrival: TxArrival, now: float) -> None:
        phase = self.fast
        body = arrival.tx.body
        mid = message_id(FAST_TOPIC, body)
        phase.reach[mid] = Reach(self.engine.nodes, now)
        phase.tx_of[mid] = arrival.tx.tx_id
        self.nodes[arrival.origin].publish(FAST_TOPIC, body, now)
        self.engine.pump(self.engine.nodes[arrival.origin])

    def _relayed(self, v: int, phase: _Phase) -> int:
        """What counts as relaying in ``phase``: cells passed on or published as an exit (onion),
        gossip messages accepted and forwarded (fast path)."""
        node = self.nodes[v]
        if phase is self.onion:
            counters = self.taps[v].counters
            return counters.get("cells_relayed") + counters.get("exit_publications")
        return node.gossip.counters.get("gossip.message.accepted")

    # -- results --------------------------------------------------------------------------

    def _record(
        self, onion: _Phase, baseline: _Baseline | None, warmup_s: float, ready: float
    ) -> RunRecord:
        self._measure_spy_links(onion)
        wall = time.perf_counter() - self.wall_start
        events = self.engine.events
        duplicates = sum(s.duplicates for s in onion.reach.values())
        tally = self._tally()
        if baseline is not None:
            events += baseline.events
            duplicates += baseline.duplicates
            for name, count in baseline.tally.items():
                tally[name] = tally.get(name, 0) + count
        record = self._phase_record(onion, events=events, wall_s=wall)
        shaping = self.privacy.level.shaping
        cover, held = shaping.cover, shaping.origin_delay
        relayed = self.privacy.level.relay_delay
        extras: dict[str, float | int | str] = {
            "crypto": "standin" if self.kit.standin_crypto else "real",
            "directory": "flood" if self.kit.announce_flood else "preloaded",
            "level": self.privacy.level.name,
            "cover_rate_per_s": cover.rate_per_s if cover is not None else 0.0,
            "cover_to_second_hop": int(shaping.cover_to_second_hop),
            "origin_delay_ms": "none" if held is None else held.label_ms(),
            "relay_delay_ms": "none" if relayed is None else relayed.label_ms(),
            "slot_law": "none" if shaping.rate is None else shaping.rate.law.value,
            "build_race": self.privacy.preset.build_race,
            "near_first_hops": self.privacy.preset.near_first_hops,
            "race_through_exit": int(self.privacy.preset.race_through_exit),
            "entry_guards": self.privacy.preset.entry_guards,
            "circuit_lifetime_s": self.privacy.preset.circuit_lifetime_s,
            "path_bias": int(self.privacy.preset.path_bias),
            "selective_denial": self.kit.selective_denial or "none",
            "circuits_denied": sum(d.denied for d in self.denials.values()),
            "path_bias_baseline": int(self.privacy.preset.path_bias_baseline),
            "regional_paths": int(self.privacy.preset.regional_paths),
            "paths_regional": tally.pop("paths_regional"),
            "paths_not_regional": tally.pop("paths_not_regional"),
            "overload": self.kit.overload,
            "circuits_refused_overload": sum(o.refused for o in self.overloads.values()),
            "cover_messages": tally.pop("cover_messages"),
            "warmup_s": warmup_s,
            "warmup_ready_fraction": ready,
            "failed_sends": self.failed_sends,
            "duplicate_deliveries": duplicates,
        }
        for name in ("circuits_built", "circuits_failed", "resent", "unconfirmed", "bans"):
            extras[name] = tally.pop(name)
        extras["gossip_invalid"] = tally.pop("gossip_invalid")
        extras["timer_spins"] = tally.pop("timer_spins")
        extras.update(sorted(tally.items()))  # the circuit_failed_* breakdown
        truth = self.spy_hop_one()
        inferred = set(hop_one_circuits(record.log))
        extras["spy_hop1_circuits"] = len(truth)
        extras["spy_hop1_inferred"] = len(inferred)
        extras["spy_hop1_inferred_correct"] = len(truth & inferred)
        extras["spy_hop1_tx"] = len(self.entry_spied)
        extras["spy_both_ends_tx"] = len(self.both_ends)
        extras["spy_entry_middle_tx"] = len(self.entry_middle)
        extras["spy_entry_and_later_tx"] = len(self.both_ends | self.entry_middle)
        in_use, exposed = self._spied_circuits()
        extras["circuits_in_use"] = in_use
        extras["spy_entry_and_later_circuits"] = exposed
        extras.update(self._guard_outcomes(onion))
        fast = None if baseline is None else baseline.record
        return replace(record, baseline=fast, extras=extras)

    def _tally(self) -> dict[str, int]:
        """The run's health counters summed over nodes (both processes add theirs)."""
        nodes = self.nodes
        tally = {
            "cover_messages": sum(n.private.origin.counters.get("cover_sent") for n in nodes),
            "circuits_built": sum(n.circuits.client.counters.get("circuits_built") for n in nodes),
            "circuits_failed": sum(
                n.circuits.client.counters.get("circuits_failed") for n in nodes
            ),
            "resent": sum(n.private.origin.counters.get("resent") for n in nodes),
            "unconfirmed": sum(n.private.origin.counters.get("unconfirmed") for n in nodes),
            "bans": sum(n.counters.get("bans") for n in nodes),
            "gossip_invalid": sum(n.gossip.counters.get("gossip.message.invalid") for n in nodes),
            "paths_regional": sum(n.circuits.client.counters.get("paths_regional") for n in nodes),
            "paths_not_regional": sum(
                n.circuits.client.counters.get("paths_not_regional") for n in nodes
            ),
            "timer_spins": self.engine.timer_spins,
        }
        for node in nodes:
            for name, count in node.circuits.client.counters.snapshot().items():
                if name.startswith("circuit_failed_"):
                    tally[name] = tally.get(name, 0) + count
        return tally

    def _measure_spy_links(self, phase: _Phase) -> None:
        """Gives the log the one-way latency of every link a spy used (what its pings show)
        and of every tapped link a cell left a watched node on (what the observer reads off
        the connection's handshake)."""
        log = phase.adversary.log
        pairs = {(c.spy, c.peer) for c in log.cells} | {(s.spy, s.sender) for s in log.sightings}
        pairs |= {(r.src, r.dst) for r in log.links if r.src in log.watched}
        latency = self.world.latency
        for a, b in pairs:
            if b >= 0:
                log.measured(a, b, latency.one_way_s(a, b))

    def spy_hop_one(self) -> set[tuple[int, int]]:
        """Ground truth: the (spy, circuit) pairs where the spy was hop 1 (its predecessor
        created the circuit as a client, not as a relay extending it)."""
        created = self.relay_created
        return {
            (cell.spy, cell.circuit)
            for cell in self.onion.adversary.log.cells
            if cell.command == "CREATE"
            and cell.leg == "prev"
            and (cell.peer, cell.spy, cell.circ_id) not in created
        }

    def _spied_circuits(self) -> tuple[int, int]:
        """Ground truth at the end of the run: the honest nodes' usable circuits, and how many
        of them have a spy at hop 1 and at a later hop (the circuits that give their origin
        away to colluding spies: the floor, counted over every circuit rather than only those
        the workload's transactions took)."""
        in_use = exposed = 0
        for v, node in enumerate(self.nodes):
            if v in self.world.spies:
                continue
            for path in node.circuits.client.circuit_paths():
                in_use += 1
                spied = self._spied(path)
                exposed += spied[0] and any(spied[1:])
        return in_use, exposed

    def _guard_outcomes(self, phase: _Phase) -> dict[str, float | int]:
        """Ground truth at the end of the run: honest nodes whose guard now is a spy, and the
        node-seconds they spent behind one over the workload's span (``phase``'s, the same
        whatever the dynamics), guards that path bias disabled (a spy's, or an honest one
        wrongly), the nodes that disabled any, and how often path bias held back (a third
        guard within a day; a guard failing as the network does, spared by the relay-side
        baseline)."""
        spies, index_of = self.world.spies, self.index_of
        span = (phase.start, phase.start + phase.span_s)

        def is_spy(node_id: NodeId) -> bool:
            return index_of.get(node_id, -1) in spies

        behind_spy = disabled_spies = disabled_honest = nodes_disabling = 0
        behind_spy_s = 0.0
        withheld = spared = 0
        for v, node in enumerate(self.nodes):
            if v in spies:
                continue
            guards = node.circuits.client.guards
            withheld, spared = withheld + guards.withheld, spared + guards.spared
            kept = guards.records()
            current = next((g for g in kept if g.disabled_at is None), None)
            behind_spy += current is not None and is_spy(current.node_id)
            behind_spy_s += _seconds_behind_spy(kept, span, is_spy)
            nodes_disabling += any(g.disabled_at is not None for g in kept)
            for guard in kept:
                if guard.disabled_at is not None:
                    if is_spy(guard.node_id):
                        disabled_spies += 1
                    else:
                        disabled_honest += 1
        return {
            "nodes_behind_spy_guard": behind_spy,
            "node_seconds_behind_spy_guard": round(behind_spy_s, 1),
            "spy_guards_disabled": disabled_spies,
            "honest_guards_disabled": disabled_honest,
            "nodes_that_disabled_a_guard": nodes_disabling,
            "guard_disables_withheld": withheld,
            "guard_outcomes_spared": spared,
        }

    def _spied(self, path: tuple[NodeId, ...]) -> list[bool]:
        """Which hops of a circuit's path (hop 1 first) are spies."""
        index_of, spies = self.index_of, self.world.spies
        return [index_of[hop] in spies for hop in path]

    def _note_spies_on_path(self, mid: bytes, exit_node: int) -> None:
        """Ground truth, when an exit publishes a private send: where spies sat on the circuit
        that carried it (the origin's own record of its paths, read while the circuit is in
        use, and the hop the exit got it from). Reported, never used by an estimator."""
        origin = self.origin_of.get(mid)
        if origin is None:
            return
        middle = self.taps[exit_node].exit_senders.get(mid, -1)
        index_of = self.index_of
        for path in self.nodes[origin].circuits.client.circuit_paths():
            if index_of[path[-2]] != middle or index_of[path[-1]] != exit_node:
                continue
            spied = self._spied(path)
            if spied[0]:
                self.entry_spied.add(mid)
            if spied[0] and spied[-1]:
                self.both_ends.add(mid)
            if spied[0] and spied[1]:
                self.entry_middle.add(mid)

    def _phase_record(self, phase: _Phase, *, events: int, wall_s: float) -> RunRecord:
        honest = [v for v in range(self.n) if v not in self.world.spies]
        participants = sum(1 for v in honest if phase.relayed_after[v] > phase.relayed_before[v])
        engine = self.engine
        txs = tuple(
            phase.reach[message_id(phase.topic, a.tx.body)].outcome(a, engine)
            for a in self.world.arrivals
        )
        return RunRecord(
            protocol=phase.name,
            estimators=phase.estimators,
            nodes=self.n,
            honest=len(honest),
            spies=self.world.spies,
            txs=txs,
            log=phase.adversary.log,
            latency_measured=True,
            bytes_sent=phase.bytes_sent,
            messages_sent=phase.messages_sent,
            relay_participants=participants,
            bytes_span_s=phase.span_s,
            sim_end_s=engine.now,
            events=events,
            wall_s=wall_s,
        )


def _seconds_behind_spy(
    guards: Sequence[GuardRecord], span: tuple[float, float], is_spy: Callable[[NodeId], bool]
) -> float:
    """How long within ``span`` (simulated seconds) a node's guard was a spy, read off its
    guard list: at each moment its guard is the first one sampled by then and not yet
    disabled (as ``nodes_behind_spy_guard`` reads it at the end)."""
    start, end = span
    times = [t for g in guards for t in (g.added_at, g.disabled_at) if t is not None]
    cuts = sorted({start, end, *(t - WALL_CLOCK_AT_ZERO_S for t in times)})
    behind = 0.0
    for a, b in pairwise(cuts):
        if start <= a < b <= end:
            wall = a + WALL_CLOCK_AT_ZERO_S
            current = next(
                (
                    g
                    for g in guards
                    if g.added_at <= wall and (g.disabled_at is None or g.disabled_at > wall)
                ),
                None,
            )
            if current is not None and is_spy(current.node_id):
                behind += b - a
    return behind


def _with_workload_cover(
    privacy: PrivacySettings, arrivals: Sequence[TxArrival]
) -> PrivacySettings:
    """``privacy`` with every node's cover starting from the sizes the workload's transactions
    pad to, each weighted by its share.

    A node learns its cover sizes from the transactions gossip brings it (``ShapedOrigin``) and
    starts from the level's prior until then. A simulated network boots with no transactions
    at all, so without this its cover would keep the prior (a 2,048-byte message, four cells)
    until the onion phase had taught it the real sizes, and for the whole fast-path phase,
    whose stand-in transactions travel on a topic no circuit carries: about four times the
    onion phase's cover cells there, events that change nothing measured (the private path's
    bytes are not counted in that phase) but a quarter of that phase's run time. Starting
    from the workload's mix is the state of a network that has long carried such
    transactions, the one the phases stand for."""
    if not arrivals:
        return privacy
    buckets = privacy.level.shaping.buckets
    counts = Counter(
        padded_size(envelope_size(TX_TOPIC, len(arrival.tx.body)), buckets) for arrival in arrivals
    )
    return privacy.tuned(cover_sizes=tuple((size, float(n)) for size, n in sorted(counts.items())))
