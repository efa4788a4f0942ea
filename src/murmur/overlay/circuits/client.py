"""The origin side of circuits: a pool of ready 3-hop circuits, private sends and requests.

Theory of operation. The client keeps ``pool_size`` ready circuits, built in the background by
telescoping extension. For each pool slot it races ``build_race`` candidates: the first to
finish is kept and the others are torn down, so the slot gets a low-latency path. Each
candidate draws a path (:func:`~murmur.overlay.circuits.selection.select_path`), dials hop 1 if
there is no link (``ConnectTo``), runs the hybrid handshake with hop 1 in CREATE/CREATED, then
with hop 2 inside an EXTEND/EXTENDED exchange through hop 1, then with hop 3 through hop 2
(CREATE and EXTEND each span several cells, sent back to back; the answers take one).
Each hop's keys become one onion layer. With regional paths (``config.regions``) every path
is drawn from the relays in our own region while enough are there
(:func:`~murmur.overlay.circuits.selection.hop_region`, decided anew for each pool slot). A
ready circuit is rotated after ``lifetime_s`` plus uniform jitter (after its outstanding
requests are answered or time out); any failure (DESTROY, TRUNCATED, a lost link, a bad cell,
a timeout) tears it down and the maintenance loop replaces it, backing off while a slot's every
candidate fails.

``send(topic, payload, now)`` picks a uniformly random ready circuit and sends the payload as
DATA cells that only the last hop can read, padded with random bytes to its size bucket first
(so the cell count tells only the bucket); the exit validates and publishes it. With no ready
circuit the send waits (bounded in count and in time) for one being built, raising
:class:`NoCircuitAvailable` at once when none can even be selected. ``send_request`` works the
same way; the exit's answer comes back padded on the same circuit, one layer per hop, and
surfaces as :class:`ReplyReceived` (or :class:`RequestFailed`). ``send_cover`` sends as many
COVER cells as a padded message of the given size would take, on a circuit chosen by the same
law; only the exit can tell them from DATA, and it drops them.
"""

from __future__ import annotations

import enum
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from murmur.base.bounded import remember
from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.crypto.kem import X25519_BYTES
from murmur.overlay.circuits.config import ClientConfig
from murmur.overlay.circuits.events import (
    CircuitAction,
    CircuitBuilt,
    CircuitFailed,
    ConnectTo,
    ReplyReceived,
    RequestFailed,
    SendCell,
    SendFailed,
)
from murmur.overlay.circuits.guards import EntryGuards, GuardRecord, OutcomeKind
from murmur.overlay.circuits.handshake import ClientPending, client_finish, client_onionskin
from murmur.overlay.circuits.ids import CircuitIds
from murmur.overlay.circuits.layers import OriginLayers
from murmur.overlay.circuits.path_bias import RelayedOutcomes
from murmur.overlay.circuits.reassembly import Reassembly
from murmur.overlay.circuits.selection import (
    HopRegion,
    NoCircuitAvailable,
    RelayDirectory,
    RelayInfo,
    hop_candidates,
    hop_region,
    select_path,
)
from murmur.wire.cells import (
    PADDING_BUCKETS_BYTES,
    CellCommand,
    Created,
    DestroyReason,
    Envelope,
    Extend,
    Fragment,
    MessageKind,
    Onionskin,
    RelayCommand,
    cells_for,
    create_bodies,
    decode_cell,
    decode_destroy,
    decode_extended,
    decode_truncated,
    encode_cell,
    encode_reason,
    extend_data,
    split_message,
    unpad_message,
)

_MESSAGE_ID_LIMIT = 2**32
MAX_WATCHED_MESSAGES = 4096
"""Sends whose carrying guard is remembered until the caller says whether they came back
(:meth:`CircuitClient.delivery`); the oldest is forgotten beyond this (as many as the origin's
resend watch tracks, ``ResendConfig.max_tracked``)."""


class _Phase(enum.Enum):
    AWAIT_LINK = "await_link"
    AWAIT_CREATED = "await_created"
    AWAIT_EXTENDED = "await_extended"
    READY = "ready"
    RETIRING = "retiring"
    """Past its lifetime: no new sends, closed once its requests are answered."""


_BUILDING = frozenset({_Phase.AWAIT_LINK, _Phase.AWAIT_CREATED, _Phase.AWAIT_EXTENDED})
_USABLE = frozenset({_Phase.READY, _Phase.RETIRING})
_BEFORE_HOP_ONE = frozenset({_Phase.AWAIT_LINK, _Phase.AWAIT_CREATED})
"""A circuit that fails here failed at hop 1 (see ``_blames_hop_one``)."""


def _blames_hop_one(reason: str) -> bool:
    """Failures before hop 1 answered that are hop 1's doing: no link could be opened, no
    CREATED came in time, or it refused the circuit."""
    return reason in ("connect_failed", "build_timeout") or reason.startswith("destroyed_")


@dataclass(slots=True, eq=False)
class _Circuit:
    handle: int
    path: list[RelayInfo]
    circ_id: int
    deadline: float
    """Build deadline while building; rotation time once ready; close time while retiring."""
    reassembly: Reassembly
    race: int
    """The pool slot's race this circuit was built in (its rivals share the number)."""
    phase: _Phase = _Phase.AWAIT_LINK
    layers: OriginLayers = field(default_factory=OriginLayers)
    pending: ClientPending | None = None
    next_message_id: int = 1
    requests: dict[int, int] = field(default_factory=dict)
    """message id on this circuit → request id given to the caller."""

    @property
    def first(self) -> NodeId:
        return self.path[0].node_id


@dataclass(frozen=True, slots=True)
class _Waiting:
    ref: int
    envelope: Envelope
    deadline: float
    buckets: tuple[int, ...]


class CircuitClient:
    def __init__(
        self,
        *,
        node_id: NodeId,
        directory: RelayDirectory,
        rng: Rng,
        now: float,
        own_prefixes: frozenset[bytes] = frozenset(),
        own_host: str | None = None,
        config: ClientConfig | None = None,
        ids: CircuitIds | None = None,
        guards: Iterable[GuardRecord] = (),
        wall_clock_offset_s: float = 0.0,
        relayed: RelayedOutcomes | None = None,
    ) -> None:
        """``own_prefixes``: :func:`network_prefix` of every address this node is known by.
        ``own_host``: the address this node advertises, which places it in a region (regional
        paths, ``config.regions``; None: in none yet).
        ``guards``: the entry guards kept from an earlier run (with ``config.guards.count``).
        ``wall_clock_offset_s``: wall-clock time minus ``now``, which guard lifetimes are
        measured on (kept up to date by whoever corrects the node's clock). ``relayed``: how
        the node's own relay's extensions fare, which path bias judges guards against (None:
        a fixed bar)."""
        self.config = config or ClientConfig()
        self.guards = EntryGuards(self.config.guards, rng, guards, now=now)
        self.relayed = relayed
        self.wall_clock_offset_s = wall_clock_offset_s
        self.node_id = node_id
        self.directory = directory
        self.own_prefixes = own_prefixes
        self.own_host = own_host
        self.counters = Counters()
        self._rng = rng
        self._ids = ids or CircuitIds(node_id)
        self._circuits: dict[int, _Circuit] = {}
        self._by_leg: dict[tuple[NodeId, int], _Circuit] = {}
        self._links: set[NodeId] = set()
        self._first_hop_rtt: dict[NodeId, float] = {}
        """Round-trip time of each outbound link: where near first hops are drawn from."""
        self._dialing: set[NodeId] = set()
        self._waiting: deque[_Waiting] = deque()
        self._request_deadlines: dict[int, float] = {}
        self._request_circuit: dict[int, _Circuit] = {}
        self._next_ref = 1
        self._next_handle = 1
        self._races: dict[int, set[int]] = {}
        """Race number → handles of its candidates still building."""
        self._next_race = 1
        self._backoff_s = self.config.retry_backoff_min_s
        self._next_build_at = now
        self._actions: list[CircuitAction] = []
        self._carried_by: OrderedDict[int, NodeId] = OrderedDict()
        """Send id → hop 1 of the circuit that carried it last (for :meth:`delivery`)."""
        self._disabled_guards: set[NodeId] = set()
        """Guards path bias just disabled, whose circuits are closed at the next maintenance."""

    # --- commands --------------------------------------------------------------------------

    def send(
        self,
        topic: str,
        payload: bytes,
        now: float,
        *,
        buckets: tuple[int, ...] = PADDING_BUCKETS_BYTES,
        ref: int | None = None,
    ) -> int:
        """Publishes ``payload`` on ``topic`` from a circuit's exit; returns a send id.

        ``buckets``: the sizes the message is padded to (``()``: none). ``ref``: a send id taken
        earlier from :meth:`allocate_ref` (a shaper that held the message back), else a new one.
        """
        envelope = self._envelope(MessageKind.PUBLISH, topic, payload)
        return self._submit(envelope, now, buckets, ref)

    def send_request(
        self,
        topic: str,
        payload: bytes,
        now: float,
        *,
        buckets: tuple[int, ...] = PADDING_BUCKETS_BYTES,
    ) -> int:
        """Asks the exit privately; the reply arrives as ``ReplyReceived(request_id, …)``."""
        if len(self._request_deadlines) >= self.config.max_pending_requests:
            raise LocalProtocolError("too many private requests in flight")
        ref = self._submit(self._envelope(MessageKind.REQUEST, topic, payload), now, buckets)
        self._request_deadlines[ref] = now + self.config.request_timeout_s
        return ref

    def send_cover(self, now: float, *, padded_bytes: int = 0, second_hop: bool = False) -> bool:
        """A cover message: the COVER cells a padded message of ``padded_bytes`` takes, on a
        uniformly random ready circuit, addressed to its exit or (``second_hop``) to its hop 2
        (only the hop addressed can tell); False if none is ready."""
        ready = self._ready()
        if not ready:
            return False
        circuit = self._rng.choice(ready)
        cells = cells_for(padded_bytes)
        target = 1 if second_hop and len(circuit.layers) > 2 else None
        for _ in range(cells):
            self._relay(circuit, RelayCommand.COVER, b"", target)
        self.counters.inc("cover_messages_sent")
        self.counters.inc("cover_cells_sent", cells)
        return True

    def check_available(self, now: float) -> None:
        """Raises :class:`NoCircuitAvailable` now if a send could neither find a ready circuit
        nor have one built (too few diverse relays known), as :meth:`send` itself would."""
        if self._ready() or self._building():
            return
        region = self._hop_region()
        self._draw_path(self._slot_first_hop(now, region), region)

    def build_soon(self, now: float) -> None:
        """A send waits for a circuit (held by the caller): start building one now unless one
        is ready or building, as :meth:`send` does for a send it holds itself (the pool's retry
        back-off does not make a waiting send wait longer)."""
        if self._ready() or self._building():
            return
        try:
            self._start_build(now)
        except NoCircuitAvailable:
            self.counters.inc("build_no_path")

    def delivery(self, ref: int, *, confirmed: bool, now: float) -> None:
        """The caller watched gossip for the message sent as ``ref``: it came back
        (``confirmed``: the exit published it) or not in time. Counted for the guard of the
        circuit that carried it (path bias, messages); a no-op for a send not carried yet,
        or forgotten."""
        first = self._carried_by.pop(ref, None)
        if first is None:
            return
        self._judge_guard(first, ok=confirmed, now=now, kind="message")
        self._maintain(now)

    def allocate_ref(self) -> int:
        """A fresh send id, for a caller that will pass it to :meth:`send` later."""
        ref, self._next_ref = self._next_ref, self._next_ref + 1
        return ref

    def fail_send(self, ref: int, reason: str) -> None:
        """Reports a send the caller gave up on before it reached a circuit (``SendFailed``)."""
        self.counters.inc("sends_failed")
        self._actions.append(SendFailed(ref, reason))

    def fail_pending(self, reason: str) -> None:
        """Fails every send waiting for a circuit and every request not yet answered, with
        ``reason`` (the node is stopping: no timer will bring their deadlines, and their
        callers would wait out their own timeouts)."""
        while self._waiting:
            self._give_up(self._waiting.popleft(), reason)
        for ref in list(self._request_deadlines):
            self._request_failed(ref, reason)

    def ready_circuits(self) -> int:
        return len(self._ready())

    def peers_in_use(self) -> set[NodeId]:
        """The first hops of our circuits (built, building or awaiting their link)."""
        return {circuit.first for circuit in self._circuits.values()} | self._dialing

    def circuit_paths(self) -> list[tuple[NodeId, ...]]:
        """The relays of each usable circuit, hop 1 first: what only this node knows (for a
        status page, and the simulator's ground truth of which circuits spies sit on)."""
        return [
            tuple(hop.node_id for hop in circuit.path)
            for circuit in self._circuits.values()
            if circuit.phase in _USABLE
        ]

    # --- inputs ----------------------------------------------------------------------------

    def owns(self, peer: NodeId, circ_id: int) -> bool:
        """Whether a cell from ``peer`` with this id belongs to one of our circuits."""
        return (peer, circ_id) in self._by_leg

    def receive_cell(self, peer: NodeId, data: bytes, now: float) -> None:
        try:
            cell = decode_cell(data)
        except RemoteProtocolError as exc:
            self.counters.inc(f"drop_{exc.reason}")
            return
        circuit = self._by_leg.get((peer, cell.circ_id))
        if circuit is None:
            self.counters.inc("drop_unknown_circuit")
            return
        try:
            if cell.command is CellCommand.DESTROY:
                reason = decode_destroy(cell.body)
                self._fail(circuit, f"destroyed_{reason.name.lower()}", now, destroy=None)
            elif cell.command is CellCommand.CREATED and circuit.phase is _Phase.AWAIT_CREATED:
                self._hop_done(circuit, Created.decode_body(cell.body), now)
            elif cell.command is CellCommand.RELAY:
                self._on_relay(circuit, cell.body, now)
            else:
                raise RemoteProtocolError("unexpected_cell", cell.command.name)
        except RemoteProtocolError as exc:
            self.counters.inc(f"drop_{exc.reason}")
            if circuit.handle in self._circuits:
                self._fail(circuit, exc.reason, now, destroy=DestroyReason.PROTOCOL)
        self._maintain(now)

    def link_ready(self, peer: NodeId, now: float) -> None:
        self._links.add(peer)
        self._dialing.discard(peer)
        for circuit in list(self._circuits.values()):
            if circuit.phase is _Phase.AWAIT_LINK and circuit.first == peer:
                self._create(circuit, now)
        self._maintain(now)

    def link_latency(self, peer: NodeId, rtt_s: float | None) -> None:
        """The measured round trip of our outbound link to ``peer`` (a candidate first hop);
        ``None``: the link to ``peer`` is no longer one we chose. The pool builds on the next
        ``link_ready`` or timer."""
        if rtt_s is None:
            self._first_hop_rtt.pop(peer, None)
        else:
            self._first_hop_rtt[peer] = rtt_s

    def link_failed(self, peer: NodeId, now: float, *, refused_locally: bool = False) -> None:
        """A dial to ``peer`` failed, or (``refused_locally``) was never made because this
        node is out of links for circuits: not the peer's fault, so not held against a guard."""
        self._dialing.discard(peer)
        reason = "connect_refused_locally" if refused_locally else "connect_failed"
        for circuit in list(self._circuits.values()):
            if circuit.phase is _Phase.AWAIT_LINK and circuit.first == peer:
                self._fail(circuit, reason, now, destroy=None)
        self._maintain(now)

    def peer_disconnected(self, peer: NodeId, now: float) -> None:
        self._links.discard(peer)
        self._first_hop_rtt.pop(peer, None)
        self._dialing.discard(peer)
        for circuit in list(self._circuits.values()):
            if circuit.first == peer:
                self._fail(circuit, "hop_gone", now, destroy=None)
        self._maintain(now)

    def handle_timer(self, now: float) -> None:
        for circuit in list(self._circuits.values()):
            if circuit.reassembly.expire(now):
                self.counters.inc("reply_reassembly_expired")
            if circuit.deadline > now:
                continue
            if circuit.phase in _BUILDING:
                self._fail(circuit, "build_timeout", now, destroy=DestroyReason.TIMEOUT)
            elif circuit.phase is _Phase.READY and circuit.requests:
                circuit.phase = _Phase.RETIRING
                circuit.deadline = now + self.config.request_timeout_s
            else:
                self.counters.inc("circuits_rotated")
                self._close(circuit, DestroyReason.REQUESTED)
        for ref, deadline in list(self._request_deadlines.items()):
            if deadline <= now:
                self._request_failed(ref, "timeout")
        while self._waiting and self._waiting[0].deadline <= now:
            self._give_up(self._waiting.popleft(), "no_circuit")
        self._maintain(now)

    def next_deadline(self) -> float | None:
        soonest = math.inf  # one pass, plain comparisons: the host asks after every event
        for circuit in self._circuits.values():
            if circuit.deadline < soonest:
                soonest = circuit.deadline
            reassembly = circuit.reassembly.next_deadline()
            if reassembly is not None and reassembly < soonest:
                soonest = reassembly
        if self._request_deadlines:
            soonest = min(soonest, *self._request_deadlines.values())
        if self._waiting and self._waiting[0].deadline < soonest:
            soonest = self._waiting[0].deadline
        if self._next_build_at < soonest and self._wants_builds():
            soonest = self._next_build_at
        return None if soonest == math.inf else soonest

    def drain_actions(self) -> list[CircuitAction]:
        actions, self._actions = self._actions, []
        return actions

    # --- pool maintenance ------------------------------------------------------------------

    def _ready(self) -> list[_Circuit]:
        return [c for c in self._circuits.values() if c.phase is _Phase.READY]

    def _building(self) -> int:
        """Pool slots being filled (a race counts once, however many candidates it has)."""
        return len(self._races)

    def _wants_builds(self) -> bool:
        """Whether the pool should build now (backoff aside). With near first hops it waits
        for a measured outbound link: a pool drawn before could not use it. A send that finds
        no circuit meanwhile builds one from any relay (``_submit``)."""
        if self.config.near_first_hops and not self._first_hop_rtt:
            return False
        building = self._building()
        race = self.config.build_race
        return (
            len(self._ready()) + building < self.config.pool_size
            and building < self.config.max_parallel_builds
            and (building + 1) * race <= max(race, self.config.max_parallel_candidates)
        )

    def _maintain(self, now: float) -> None:
        self._leave_disabled_guards()
        while self._wants_builds() and now >= self._next_build_at:
            try:
                self._start_build(now)
            except NoCircuitAvailable:
                self.counters.inc("build_no_path")
                self._next_build_at = now + self.config.maintain_interval_s
                return

    def _start_build(self, now: float) -> None:
        """Starts one pool slot's race: ``build_race`` candidates over independent paths, but
        for hop 1 when the slot has one (near first hops) or the race is decided before the
        exit. Such a race chooses hop 2 for a given hop 1, the link a spy at hop 1 measures
        anyway, and the node dials one hop 1 per slot, as without a race (a race over fresh
        first hops dials one per candidate, and relays' inbound limits refused them:
        docs/evaluation.md §6, session 8)."""
        region = self._hop_region()
        first_hop = self._slot_first_hop(now, region)
        race, self._next_race = self._next_race, self._next_race + 1
        handles: set[int] = set()
        for _ in range(self.config.build_race):
            try:
                circuit = self._start_candidate(race, now, first_hop, region)
            except NoCircuitAvailable:
                if not handles:
                    raise
                break
            handles.add(circuit.handle)
            if not first_hop and not self.config.race_through_exit:
                first_hop = [circuit.path[0].node_id]
        if self.config.build_race > 1:
            self.counters.inc("races_started")
        # A candidate can fail before the race is registered (hop 1 already linked, its
        # onion key unusable): only live ones are in flight, and none left loses the race.
        handles = {handle for handle in handles if handle in self._circuits}
        if handles:
            self._races[race] = handles
        else:
            self._race_lost(now)

    def _hop_region(self) -> HopRegion | None:
        """The region hops are drawn from now (regional paths); None: every relay."""
        regions = self.config.regions
        if regions is None:
            return None
        return hop_region(
            self.directory,
            regions=regions,
            own_host=self.own_host,
            min_relays=self.config.min_regional_relays,
            origin=self.node_id,
            origin_prefixes=self.own_prefixes,
            min_score=self.config.min_relay_score,
        )

    def _draw_path(self, first_hop: list[NodeId], region: HopRegion | None) -> list[RelayInfo]:
        return select_path(
            self.directory,
            self._rng,
            hops=self.config.hops,
            origin=self.node_id,
            origin_prefixes=self.own_prefixes,
            min_score=self.config.min_relay_score,
            first_hop=first_hop,
            strict_first_hop=bool(self.config.guards.count),
            region=region,
        )

    def _start_candidate(
        self, race: int, now: float, first_hop: list[NodeId], region: HopRegion | None
    ) -> _Circuit:
        path = self._draw_path(first_hop, region)
        if self.config.regions is not None:
            self.counters.inc("paths_regional" if region is not None else "paths_not_regional")
        handle, self._next_handle = self._next_handle, self._next_handle + 1
        first = path[0].node_id
        circuit = _Circuit(
            handle,
            path,
            self._ids.allocate(first, self._rng),
            now + self.config.build_timeout_s,
            Reassembly(
                max_pending=self.config.max_reply_reassemblies,
                timeout_s=self.config.reply_reassembly_timeout_s,
            ),
            race,
        )
        self._circuits[handle] = circuit
        self._by_leg[(first, circuit.circ_id)] = circuit
        self.counters.inc("circuits_started")
        if first in self._links:
            self._create(circuit, now)
        elif first not in self._dialing:
            self._dialing.add(first)
            self._actions.append(ConnectTo(first, path[0].address, own_circuit=True))
        return circuit

    def _slot_first_hop(self, now: float, region: HopRegion | None) -> list[NodeId]:
        """Where a new pool slot's candidates draw hop 1 from: with entry guards, the primary
        guard fewest circuits use (raising :class:`NoCircuitAvailable` when none is usable:
        hop 1 never falls back to another relay); with near first hops, the
        nearest of the ``near_first_hops`` outbound links no other slot (ready, retiring or
        racing) has as its hop 1, the least used one when every one is taken. One hop 1 per
        slot keeps the pool's circuits on distinct first hops: a race over the near set would
        put nearly every slot on the single nearest link (its round trip weighs most in the
        build time), and a spy there would see everything the node sends (measured: 10 heavy
        origins, `timing_intersection` recall 0.125 / precision 0.19). Empty: any relay."""
        used = Counter(circuit.first for circuit in self._circuits.values())
        if self.config.guards.count:
            primary = self.guards.primary(
                self.directory,
                origin=self.node_id,
                origin_prefixes=self.own_prefixes,
                min_score=self.config.min_relay_score,
                now=now,
                wall_now=now + self.wall_clock_offset_s,
                region=region,
            )
            if not primary:
                self._check_enough_relays(region)
                raise NoCircuitAvailable(
                    "no usable entry guard (none drawn while the directory settles, the guard "
                    "is waited for, or every guard on the list is unreachable)"
                )
            return [min((g.node_id for g in primary), key=used.__getitem__)]
        wanted = self.config.near_first_hops
        if not wanted:
            return []
        near = sorted(self._first_hop_rtt, key=self._first_hop_rtt.__getitem__)[:wanted]
        if not near:
            return []
        return [min(near, key=used.__getitem__)]  # ties: the nearest, as ``near`` is sorted

    def _check_enough_relays(self, region: HopRegion | None) -> None:
        """Raises what a path draw would when too few relays are known for any path (the
        more useful error while guards wait), without drawing anything."""
        candidates = hop_candidates(
            self.directory,
            origin=self.node_id,
            origin_prefixes=self.own_prefixes,
            min_score=self.config.min_relay_score,
            region=region,
        )
        prefixes = {prefix for _, _, prefix in candidates}
        if len(prefixes) < self.config.hops:
            raise NoCircuitAvailable(
                f"need {self.config.hops} relays on distinct network prefixes, "
                f"found {len(prefixes)}"
            )

    def _onionskin(self, circuit: _Circuit, hop: RelayInfo) -> Onionskin:
        skin, circuit.pending = client_onionskin(
            hop.node_id, hop.onion_keys, x25519_seed=self._rng.random_bytes(X25519_BYTES)
        )
        return skin

    def _create(self, circuit: _Circuit, now: float) -> None:
        try:
            skin = self._onionskin(circuit, circuit.path[0])
        except RemoteProtocolError:
            self._fail(circuit, "bad_onion_key", now, destroy=None)
            return
        circuit.phase = _Phase.AWAIT_CREATED
        for body in create_bodies(skin):
            self._send(circuit, CellCommand.CREATE, body)

    def _hop_done(self, circuit: _Circuit, created: Created, now: float) -> None:
        assert circuit.pending is not None
        circuit.layers.add_hop(client_finish(created, circuit.pending).keys)
        circuit.pending = None
        index = len(circuit.layers)
        if index == 1:
            self.guards.succeeded(circuit.first)
        if index == len(circuit.path) - 1 and not self.config.race_through_exit:
            self._win_race(circuit, built=False)
        if index < len(circuit.path):
            hop = circuit.path[index]
            try:
                skin = self._onionskin(circuit, hop)
            except RemoteProtocolError:
                self._fail(circuit, "bad_onion_key", now, destroy=DestroyReason.REQUESTED)
                return
            extend = Extend(hop.node_id, hop.address, skin)
            circuit.phase = _Phase.AWAIT_EXTENDED
            for data in extend_data(extend):
                self._relay(circuit, RelayCommand.EXTEND, data, target=index - 1)
            return
        self._win_race(circuit, built=True)
        circuit.phase = _Phase.READY
        circuit.deadline = (
            now + self.config.lifetime_s + self._rng.uniform(0.0, self.config.lifetime_jitter_s)
        )
        self._backoff_s = self.config.retry_backoff_min_s
        self.counters.inc("circuits_built")
        if self._judge_guard(circuit.first, ok=True, now=now, kind="circuit"):
            # its guard, condemned on this very outcome, let it through: not one cell on it
            self._leave_disabled_guards()
            return
        self._actions.append(CircuitBuilt(circuit.handle, tuple(h.node_id for h in circuit.path)))
        while self._waiting:
            item = self._waiting.popleft()
            if item.envelope.kind is MessageKind.PUBLISH or item.ref in self._request_deadlines:
                self._transmit(self._rng.choice(self._ready()), item)

    def _win_race(self, winner: _Circuit, *, built: bool) -> None:
        """The first candidate of its race to finish (or to reach the exit's extension) takes
        the slot; its rivals are torn down. Until it is ``built`` the slot stays building, with
        the winner as its one candidate."""
        rivals = self._races.pop(winner.race, set())
        if not built:
            self._races[winner.race] = {winner.handle}
        for handle in rivals:
            rival = self._circuits.get(handle)
            if rival is None or rival is winner:
                continue
            self.counters.inc("race_losers")
            linked = rival.phase is not _Phase.AWAIT_LINK
            self._close(rival, DestroyReason.REQUESTED if linked else None)

    def _on_relay(self, circuit: _Circuit, body: bytes, now: float) -> None:
        if circuit.phase not in (_Phase.AWAIT_EXTENDED, _Phase.READY, _Phase.RETIRING):
            raise RemoteProtocolError("unexpected_relay", circuit.phase.value)
        hop, message = circuit.layers.unwrap_backward(body)
        last = len(circuit.layers) - 1
        if message.command is RelayCommand.TRUNCATED:
            reason = decode_truncated(message.data)
            self._fail(circuit, f"truncated_{reason.name.lower()}", now, DestroyReason.REQUESTED)
        elif message.command is RelayCommand.EXTENDED and circuit.phase is _Phase.AWAIT_EXTENDED:
            if hop != last:
                raise RemoteProtocolError("unexpected_extended", f"from hop {hop}")
            self._hop_done(circuit, decode_extended(message.data), now)
        elif message.command is RelayCommand.REPLY and circuit.phase in _USABLE and hop == last:
            self._on_reply(circuit, Fragment.decode(message.data), now)
        else:
            raise RemoteProtocolError("bad_relay_command", f"{message.command.name} from {hop}")

    def _on_reply(self, circuit: _Circuit, fragment: Fragment, now: float) -> None:
        if fragment.message_id not in circuit.requests:
            self.counters.inc("late_reply_dropped")
            return
        padded = circuit.reassembly.add(fragment, now)
        if padded is None:
            return
        ref = circuit.requests[fragment.message_id]
        try:
            payload = unpad_message(padded)
        except RemoteProtocolError as exc:
            self.counters.inc(f"drop_{exc.reason}")
            self._request_failed(ref, "bad_reply")
            return
        del circuit.requests[fragment.message_id]
        del self._request_deadlines[ref], self._request_circuit[ref]
        self.counters.inc("replies_received")
        self._actions.append(ReplyReceived(ref, payload))
        if circuit.phase is _Phase.RETIRING and not circuit.requests:
            self.counters.inc("circuits_rotated")
            self._close(circuit, DestroyReason.REQUESTED)

    # --- sending ---------------------------------------------------------------------------

    def _envelope(self, kind: MessageKind, topic: str, payload: bytes) -> Envelope:
        try:
            return Envelope(kind, topic, payload)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None

    def _submit(
        self,
        envelope: Envelope,
        now: float,
        buckets: tuple[int, ...],
        ref: int | None = None,
    ) -> int:
        if ref is None:
            ref = self.allocate_ref()
        ready = self._ready()
        if ready:
            self._transmit(self._rng.choice(ready), _Waiting(ref, envelope, now, buckets))
            return ref
        if len(self._waiting) >= self.config.max_waiting_sends:
            raise NoCircuitAvailable("too many sends waiting for a circuit")
        if self._building() == 0:
            self._start_build(now)
        self._waiting.append(_Waiting(ref, envelope, now + self.config.send_wait_s, buckets))
        self.counters.inc("sends_waiting")
        return ref

    def _transmit(self, circuit: _Circuit, item: _Waiting) -> None:
        message_id = circuit.next_message_id
        circuit.next_message_id = message_id % (_MESSAGE_ID_LIMIT - 1) + 1
        message = item.envelope.encode_padded(item.buckets, self._rng)
        for fragment in split_message(message_id, message):
            self._relay(circuit, RelayCommand.DATA, fragment.encode())
        if item.envelope.kind is MessageKind.REQUEST:
            circuit.requests[message_id] = item.ref
            self._request_circuit[item.ref] = circuit
            self.counters.inc("requests_sent")
        else:
            self.counters.inc("sends")
            remember(self._carried_by, item.ref, circuit.first, MAX_WATCHED_MESSAGES)

    def _relay(
        self, circuit: _Circuit, command: RelayCommand, data: bytes, target: int | None = None
    ) -> None:
        hop = len(circuit.layers) - 1 if target is None else target
        self._send(circuit, CellCommand.RELAY, circuit.layers.wrap_forward(hop, command, data))
        self.counters.inc("cells_sent")

    def _send(self, circuit: _Circuit, command: CellCommand, body: bytes) -> None:
        self._actions.append(SendCell(circuit.first, encode_cell(circuit.circ_id, command, body)))

    # --- failure ---------------------------------------------------------------------------

    def _close(self, circuit: _Circuit, destroy: DestroyReason | None) -> None:
        del self._circuits[circuit.handle]
        rivals = self._races.get(circuit.race)
        if rivals is not None:
            rivals.discard(circuit.handle)
        del self._by_leg[(circuit.first, circuit.circ_id)]
        self._ids.release(circuit.first, circuit.circ_id)
        if destroy is not None:
            self._send(circuit, CellCommand.DESTROY, encode_reason(destroy))
        for ref in list(circuit.requests.values()):
            self._request_failed(ref, "circuit_closed")

    def _fail(
        self, circuit: _Circuit, reason: str, now: float, destroy: DestroyReason | None
    ) -> None:
        was_ready = circuit.phase not in _BUILDING
        if circuit.phase in _BEFORE_HOP_ONE and _blames_hop_one(reason) and self._links:
            # Hop 1 did not answer while other links work (so our own network is up): skip
            # its guard for a while (a no-op for a hop 1 that is no guard). A lost link does
            # not count (a restart or an eviction at the guard, a blip of ours): the next dial
            # or CREATE decides.
            self.guards.failed(circuit.first, now)
        elif circuit.phase not in _BEFORE_HOP_ONE and self._counts_against_path(reason):
            # built and counted ok, it collapsed; or it failed on the way
            kind: OutcomeKind = "collapse" if was_ready else "circuit"
            self._judge_guard(circuit.first, ok=False, now=now, kind=kind)
        if circuit.phase is _Phase.AWAIT_LINK:
            destroy = None
        self._close(circuit, destroy)
        self.counters.inc("circuits_failed")
        self.counters.inc(f"circuit_failed_{reason}")
        self._actions.append(CircuitFailed(circuit.handle, reason, was_ready))
        if not was_ready and self._races.get(circuit.race) == set():
            del self._races[circuit.race]
            self._race_lost(now)

    def _race_lost(self, now: float) -> None:
        """The slot's last candidate failed: back off before the next build."""
        self._next_build_at = now + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self.config.retry_backoff_max_s)

    def _counts_against_path(self, reason: str) -> bool:
        """Whether a failure after hop 1 answered counts against its guard (path bias): not
        when the fault is the directory's (an unusable onion key), nor a lost link to hop 1.
        A link is lost when our own network goes down as much as when the guard's does, and
        losing it takes down every circuit through the guard, those it would keep too, so
        it is no way to choose which of them survive."""
        return reason not in ("bad_onion_key", "hop_gone")

    def _judge_guard(self, first: NodeId, *, ok: bool, now: float, kind: OutcomeKind) -> bool:
        """Path bias: one outcome for the guard ``first`` (a no-op without guards or for a hop
        1 that is no guard); circuits are judged against what our relay sees of the network.
        True when this disabled the guard."""
        guards, wall_now = self.guards, now + self.wall_clock_offset_s
        withheld, spared = guards.withheld, guards.spared
        if kind == "message":
            disabled = guards.message_ended(first, ok=ok, wall_now=wall_now)
        else:
            relayed, extensions = self.relayed, self.config.hops - 1
            expected = 1.0 if relayed is None else relayed.expected_circuit_success(extensions)
            if kind == "collapse":
                disabled = guards.circuit_collapsed(first, wall_now=wall_now, expected=expected)
            else:
                disabled = guards.circuit_ended(first, ok=ok, wall_now=wall_now, expected=expected)
        if disabled:
            self.counters.inc("guard_disabled_path_bias")
            self._disabled_guards.add(first)
        elif guards.withheld != withheld:
            self.counters.inc("guard_disable_withheld")
        elif guards.spared != spared:
            self.counters.inc("guard_spared_network_failing")
        return disabled

    def _leave_disabled_guards(self) -> None:
        """Closes every circuit through a guard path bias disabled: they are the ones it let
        through, so the likeliest to have a spy at hop 2 too. The pool rebuilds through the
        next guard."""
        while self._disabled_guards:
            guard = self._disabled_guards.pop()
            for circuit in [c for c in self._circuits.values() if c.first == guard]:
                self.counters.inc("circuits_closed_guard_disabled")
                linked = circuit.phase is not _Phase.AWAIT_LINK
                self._close(circuit, DestroyReason.REQUESTED if linked else None)
                if self._races.get(circuit.race) == set():
                    del self._races[circuit.race]  # the slot's race is over: build anew

    def _request_failed(self, ref: int, reason: str) -> None:
        circuit = self._request_circuit.pop(ref, None)
        if circuit is not None:
            circuit.requests = {m: r for m, r in circuit.requests.items() if r != ref}
        if self._request_deadlines.pop(ref, None) is None:
            return
        self.counters.inc("requests_failed")
        self._actions.append(RequestFailed(ref, reason))

    def _give_up(self, item: _Waiting, reason: str) -> None:
        self.counters.inc("sends_failed")
        if item.envelope.kind is MessageKind.REQUEST:
            self._request_failed(item.ref, reason)
        else:
            self._actions.append(SendFailed(item.ref, reason))
