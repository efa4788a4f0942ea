"""The node core: links, peer management and the gossip mesh, composed without I/O.

Theory of operation. The runtime owns sockets and timers and tells the node what happened:
``connection_opened`` / ``dial_failed`` / ``data_received`` / ``connection_lost`` /
``handle_timer``, plus local commands (``publish``, ``send_private``, ``send_stem``). The node
answers through ``drain_actions()`` (send bytes, close, dial, message delivered) and
``next_deadline()``.

A transaction leaves its origin by one of two private routes: an onion circuit (``send_private``)
or a Dandelion++ stem (``send_stem``, :mod:`murmur.overlay.stem`), whose fluffing node publishes
it into the gossip mesh as an onion exit does; every gossip delivery of a transaction tells the
stem it was seen, which cancels that transaction's embargo.

Misbehaviour is answered at the right depth: a peer that broke the protocol *after*
authenticating is banned by node id (so other honest nodes behind the same address, a CGNAT or
a loopback testnet, are unaffected); garbage before authentication only earns its address a
short, escalating back-off. Every drop is counted.

A peer's rate limits (bytes, messages, and the drops allowed before it counts as flooding) are
kept by node id, not by link: its duplicate links share them, and they outlive its last link
(``DEPARTED_LIMITERS``: until they are full again), so neither another link nor a reconnect
buys a fresh burst.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from murmur.base.bounded import remember, remember_penalty
from murmur.base.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.crypto.identity import Identity
from murmur.link.connection import (
    HandshakeCompleted,
    LinkClosed,
    LinkConfig,
    LinkConnection,
    LinkState,
    MessageReceived,
    PongReceived,
)
from murmur.node.actions import (
    CloseConnection,
    ConnId,
    Dial,
    MessageDelivered,
    NodeAction,
    PrivateReplyArrived,
    PrivateSendFailed,
    SendBytes,
)
from murmur.node.config import (
    MAX_CIRCUIT_LINKS,
    NODE_TOPICS,
    BootstrapPeer,
    HostPort,
    NodeConfig,
)
from murmur.node.levels import PrivacySettings
from murmur.node.private_path import PrivatePath
from murmur.node.sessions import Session
from murmur.overlay.circuits.config import ClientConfig, RelayConfig
from murmur.overlay.circuits.events import (
    CircuitAction,
    CircuitBuilt,
    CircuitFailed,
    ConnectTo,
    OnionKeysRotated,
    PublishFromExit,
    ReplyReceived,
    RequestFailed,
    SendCell,
    SendFailed,
)
from murmur.overlay.circuits.guards import GuardRecord
from murmur.overlay.circuits.regions import RegionMap
from murmur.overlay.circuits.selection import on_local_network
from murmur.overlay.gossip.actions import Deliver, PenalizePeer, SendRpc
from murmur.overlay.gossip.config import GossipConfig
from murmur.overlay.gossip.router import GossipRouter, Validation
from murmur.overlay.peers.backoff import ReconnectBackoff
from murmur.overlay.peers.bans import AddressThrottle, BanList, HostBudget
from murmur.overlay.peers.limits import PeerRateLimiter
from murmur.overlay.peers.netgroup import (
    PROTECTED_LONGEST_INBOUND,
    InboundSlot,
    inbound_to_evict,
    netgroup,
)
from murmur.overlay.routing import MessagePath, MessageType, path_for_topic
from murmur.overlay.stem import STEM_TOPICS, Fluff, SendStem, StemConfig, StemPath
from murmur.wire.envelope import Channel, unwrap, wrap
from murmur.wire.stem import encode_stem

DELIVERY_LOG_ENTRIES = 100_000
DUPLICATE_DRAIN_S = 10.0
"""How long a link that lost to a duplicate is still read: far above the few round trips
between the two ends seeing their handshakes complete."""
ANNOUNCE_TOPIC = MessageType.PEER_ANNOUNCEMENT.value
CIRCUIT_LINK_IDLE_S = (180.0, 270.0)
"""A link opened for a circuit is closed once no circuit has run through it for a uniform time
in this range (Tor closes connections without circuits after 3 to 4.5 minutes; random, so the
close does not date the last circuit). Kept open, such links piled up at every rotation until
the node's ``MAX_CIRCUIT_LINKS`` and its relays' inbound slots were full, and then circuits
could no longer reach new relays (docs/evaluation.md §6, "Entry guards")."""
OWN_HOP_ONE_RESERVE = 8
"""Of the ``MAX_CIRCUIT_LINKS`` links for circuits, those only this node's own hop 1 may take
(its guard, and a few more while a guard is replaced): peers' EXTENDs cannot use them up."""
CATCH_UP_PER_HOST_BURST = 2
CATCH_UP_PER_HOST_PER_S = 1 / 600
"""The directory catch-up (up to ``CATCH_UP_ANNOUNCEMENTS`` records of about 9 kB, sent to
whoever asks for them) offered on inbound links: twice per host, then once per 10 minutes
(:class:`HostBudget`; a site gets four hosts' worth). Otherwise a host reconnecting under fresh
identities, as fast as the address throttle lets it (4 handshakes a second), pulled about
1.2 MB per handshake: megabytes a second of our uplink for the price of handshakes. A peer
over budget is still offered our own announcement; links this node dialled are not counted."""
DEPARTED_LIMITERS = 1024
"""Rate limiters kept for peers whose last link closed, given back, refilled at their rates for
the time away, when the same node id authenticates again. Without them each handshake bought a
fresh ``bytes_burst`` and ``messages_burst`` (8 MiB, 4,000 messages) and a fresh allowance of
drops before a flood, paced only by the address throttle; as many as the circuit relay
(``DEPARTED_BUDGETS``) and gossip (``max_retained_scores``) keep. Only limiters not yet full
again are kept (a full one is a new peer's), and a full table gives up the one that will be
full soonest (``murmur.base.bounded.remember_penalty``): dropping the least recently departed
instead let a peer shed a spent limiter by having 1,024 fresh identities connect and leave. A
peer that never authenticated has no limiter to keep: the node reads no message before the
handshake."""
FIRST_RPC_MAX_BYTES = 16 * 1024
"""A link's first message, if a gossip RPC no larger than this, has its subscriptions taken even
when the peer's rate limits drop it (see ``Node._on_message``). A peer sends its
subscriptions once per link, in that RPC, beside the catch-up offer: at most 64 topics of 64
bytes and 129 ids of 20 bytes, under 7 kB."""
CIRCUIT_LINK_SWEEP_S = 10.0
"""How often links opened for circuits are checked for use, at the node's timers (each link's
keepalive wakes the node at least every 15 s); a link found unused closes at its own time."""


@dataclass(slots=True)
class _DialTarget:
    peer: BootstrapPeer
    backoff: ReconnectBackoff
    next_attempt: float
    pending: bool = False
    connected_as: NodeId | None = None
    persistent: bool = True
    """Bootstrap peers are redialled forever; a link opened for a circuit is dialled once."""


class Node:
    def __init__(
        self,
        *,
        identity: Identity,
        config: NodeConfig,
        rng: Rng,
        now: float,
        wall_clock_offset_s: float,
        gossip_config: GossipConfig | None = None,
        link_config: LinkConfig | None = None,
        client_config: ClientConfig | None = None,
        relay_config: RelayConfig | None = None,
        privacy: PrivacySettings | None = None,
        stem_config: StemConfig | None = None,
        guards: Iterable[GuardRecord] = (),
        circuit_link_idle_s: tuple[float, float] = CIRCUIT_LINK_IDLE_S,
        regions: RegionMap | None = None,
    ) -> None:
        """``wall_clock_offset_s``: wall-clock time (Unix seconds) minus ``now`` (the runtime
        measures it, and tells the node when it changes: :meth:`set_wall_clock`; the simulator
        fixes it); it dates the node's announcements and judges others'. ``privacy``: the node's
        resolved preset and level, when not the config's (the simulator tunes levels this way).
        ``guards``: the entry guards the node kept when it last ran (``guard_records``).
        ``circuit_link_idle_s``: how long a link opened for circuits stays open unused (the
        simulator shortens it with the circuits' lifetime when it compresses time).
        ``regions``: the region map (the config's ``privacy.region_map``, which the runtime
        reads), needed when the node's privacy settings ask for regional paths."""
        self.identity = identity
        self.node_id = identity.node_id
        self.config = config
        self.counters = Counters()
        self.started_at = now
        self._rng = rng
        limits = config.limits
        self._link_config = link_config or LinkConfig(
            aead=config.aead,
            ping_window_s=limits.pings_burst / limits.pings_per_s,
            max_pings_per_window=limits.pings_burst,
        )
        gossip_config = gossip_config or GossipConfig()
        if gossip_config.max_peers < config.gossip_peers_needed:
            raise ConfigError("the gossip router cannot hold max_inbound + max_outbound peers")
        if gossip_config.max_topics < config.gossip_topics_needed:
            raise ConfigError("the gossip router cannot hold the configured topics")
        self.gossip = GossipRouter(config=gossip_config, rng=rng, now=now)
        self.private = PrivatePath(
            identity=identity,
            rng=rng,
            now=now,
            wall_clock_offset_s=wall_clock_offset_s,
            client_config=client_config,
            relay_config=relay_config,
            privacy=privacy or config.privacy(),
            guards=guards,
            regions=regions,
        )
        self.circuits = self.private.circuits
        self.stem = StemPath(rng=rng, config=stem_config)
        # Transactions reach every node through gossip once an exit has published them.
        for topic in (*config.topics, *NODE_TOPICS):
            if topic not in self.gossip.topics:
                self.gossip.subscribe(topic, now)
        self.gossip.set_validator(ANNOUNCE_TOPIC, self.private.validate_announcement)
        self.gossip.set_known(ANNOUNCE_TOPIC, self.private.holds)
        self._sessions: dict[ConnId, Session] = {}
        self._outbound: set[ConnId] = set()
        """The sessions that count against ``max_outbound`` (dialled by us, not for a circuit):
        kept beside ``_sessions`` because every ``next_deadline`` asks how many there are."""
        self._link_deadlines: dict[ConnId, float] = {}
        """Each session's link deadline, refreshed whenever that link takes input or a timer
        (nothing else moves it); a simulator asks for the node's deadline after every event."""
        self._by_peer: dict[NodeId, Session] = {}
        self._limiters: dict[NodeId, PeerRateLimiter] = {}
        """Each peer in ``_by_peer``'s one rate limiter, whichever of its links a message
        arrives on."""
        self._departed_limiters: OrderedDict[NodeId, PeerRateLimiter] = OrderedDict()
        """Departed peers' limiters not yet full again, at most ``DEPARTED_LIMITERS``, in the
        order they left."""
        self._retired: dict[ConnId, float] = {}
        """Retired duplicate links and when each is closed."""
        self._next_circuit_link_sweep = now
        self._circuit_link_idle_s = circuit_link_idle_s
        self._circuit_link_sweep_s = (
            CIRCUIT_LINK_SWEEP_S * circuit_link_idle_s[0] / CIRCUIT_LINK_IDLE_S[0]
        )
        self._unused_close_due = math.inf
        """The earliest time an unused circuit link is due to close (a node deadline)."""
        self._bans = BanList()
        self._throttle = AddressThrottle()
        self._catch_up_budget = HostBudget(
            CATCH_UP_PER_HOST_PER_S,
            CATCH_UP_PER_HOST_BURST,
            site_rate_per_s=4 * CATCH_UP_PER_HOST_PER_S,
            site_burst=4 * CATCH_UP_PER_HOST_BURST,
        )
        self._dial_targets = [
            _DialTarget(peer, ReconnectBackoff(), now) for peer in config.bootstrap
        ]
        self._actions: list[NodeAction] = []
        self._closed_link_counters: dict[str, int] = {}
        self.deliveries: OrderedDict[bytes, float] = OrderedDict()
        """Message id → local time of first delivery (bounded; testnet latency reads it)."""

    # --- outputs -------------------------------------------------------------------------

    def drain_actions(self) -> list[NodeAction]:
        actions, self._actions = self._actions, []
        return actions

    def next_deadline(self) -> float | None:
        # Plain comparisons, no lists: a simulator asks after every event.
        soonest = min(self._link_deadlines.values(), default=math.inf)
        for deadline in (
            self.gossip.next_deadline(),
            self.circuits.next_deadline(),
            self.private.next_deadline(),
            self.stem.next_deadline(),
        ):
            if deadline is not None and deadline < soonest:
                soonest = deadline
        if self._retired:
            soonest = min(soonest, *self._retired.values())
        if self._unused_close_due < soonest:
            soonest = self._unused_close_due
        # As ``_dial_due``: dials in flight hold their slots, else the node asks to be woken
        # for a target it will not dial yet, again and again until a dial ends. (Summed only
        # when slots are free: this runs after every event.)
        limit = self.config.limits.max_outbound
        outbound = self._outbound_count()
        if outbound < limit and outbound + self._pending_dials() < limit:
            for target in self._dial_targets:
                if target.next_attempt < soonest and self._dialable(target):
                    soonest = target.next_attempt
        return None if soonest == math.inf else soonest

    # --- transport events ----------------------------------------------------------------

    def connection_opened(
        self,
        conn_id: ConnId,
        *,
        outbound: bool,
        host: str,
        port: int,
        now: float,
        target: BootstrapPeer | None = None,
    ) -> None:
        if not outbound:
            if not self._throttle.allow(host, now):
                self.counters.inc("inbound_refused.throttled")
                self._actions.append(CloseConnection(conn_id, "throttled"))
                return
            if not self._make_inbound_room(host, now):
                self.counters.inc("inbound_refused.full")
                self._actions.append(CloseConnection(conn_id, "inbound_full"))
                return
        link = LinkConnection(
            initiator=outbound,
            identity=self.identity,
            rng=self._rng,
            now=now,
            config=self._link_config,
            expected_peer=target.node_id if target else None,
        )
        session = Session(
            conn_id=conn_id,
            link=link,
            outbound=outbound,
            host=host,
            port=port,
            opened_at=now,
            bootstrap=target,
        )
        dial_target = self._target_for(target)
        session.for_circuit = dial_target is not None and not dial_target.persistent
        self._sessions[conn_id] = session
        if outbound and not session.for_circuit:
            self._outbound.add(conn_id)
        self.counters.inc(
            "connections_opened.outbound" if outbound else "connections_opened.inbound"
        )
        self._pump_link(session, now)

    def dial_failed(self, target: BootstrapPeer, now: float) -> None:
        self.counters.inc("dials_failed")
        for t in list(self._dial_targets):
            if t.peer != target:
                continue
            if t.persistent:
                t.pending = False
                t.next_attempt = now + t.backoff.next_delay(self._rng)
            else:
                self._dial_targets.remove(t)
                if t.peer.node_id is not None:
                    self.circuits.link_failed(t.peer.node_id, now)
                    self._pump_circuits(now)

    def data_received(self, conn_id: ConnId, data: bytes, now: float) -> None:
        session = self._sessions.get(conn_id)
        if session is None:
            return
        session.bytes_in += len(data)
        session.link.receive_data(data, now)
        self._pump_link(session, now)
        self._pump_gossip(now)

    def connection_lost(self, conn_id: ConnId, now: float) -> None:
        session = self._sessions.get(conn_id)
        if session is not None:
            self.counters.inc("connections_lost")
            self._forget(session, now)
            self._pump_gossip(now)

    def stop(self, now: float) -> None:
        """The runtime is stopping (it reports its connections lost first): every private
        send the level's shaping still holds back or that waits for a circuit, and every
        private request not yet answered, fails now (``PrivateSendFailed``, reason
        ``node_stopped``). A lost link fails only the circuits through it; the others would
        wait for deadlines that no timer brings any more."""
        self.private.origin.fail_held("node_stopped")
        self.circuits.client.fail_pending("node_stopped")
        self._pump_circuits(now)

    def handle_timer(self, now: float) -> None:
        # Only links whose own deadline has come: the rest would do nothing (a link's deadline
        # moves only on input or its timer, both pumped, and every send flushes its own bytes),
        # and a node with dozens of links wakes for one of them.
        deadlines = self._link_deadlines
        for session in list(self._sessions.values()):
            if deadlines.get(session.conn_id, math.inf) <= now:
                session.link.handle_timer(now)
                self._pump_link(session, now)
        self.gossip.handle_timer(now)
        self.circuits.handle_timer(now)
        self.private.handle_timer(now)
        self.private.expire(now)
        self.stem.handle_timer(now)
        self._pump_stem(now)
        announcement = self.private.announcement_due(now)
        if announcement is not None:
            self.gossip.publish(ANNOUNCE_TOPIC, announcement, now)
        self._pump_gossip(now)
        self._pump_circuits(now)
        self._dial_due(now)
        self._close_drained(now)
        self._close_unused_circuit_links(now)
        self._pad_idle_links(now)

    # --- local commands ------------------------------------------------------------------

    def publish(self, topic: str, data: bytes, now: float) -> bytes:
        """Publishes on the fast path; private topics raise ``PrivatePathUnavailable``."""
        message_id = self.gossip.publish(topic, data, now)
        self.counters.inc("published")
        self._pump_gossip(now)
        return message_id

    def send_private(self, topic: str, data: bytes, now: float, level: str | None = None) -> int:
        """Sends through a random ready circuit (the exit publishes it), shaped by privacy
        ``level`` (default: the node's); returns a send id.

        Raises ``ConfigError`` for an unknown level, ``QueueFull`` when the level's queue is full,
        and :class:`NoCircuitAvailable` when no circuit can even be selected; a send that waited
        too long for one ends as a ``PrivateSendFailed`` action.
        """
        if path_for_topic(topic) is not MessagePath.PRIVATE:
            raise ValueError(f"topic {topic!r} travels the fast path; use publish")
        send_id = self.private.send(topic, data, now, level)
        self.counters.inc("private_sent")
        self._pump_circuits(now)
        return send_id

    def send_stem(self, topic: str, data: bytes, now: float) -> bytes:
        """Sends a transaction by Dandelion++: to this epoch's stem peer, never into the mesh
        from here; returns the gossip message id it will have once fluffed.

        Raises ``NoStemPeer`` while the node has no outbound peer and ``LocalProtocolError``
        for a topic other than transactions or for invalid data.
        """
        message_id = self.stem.submit(topic, data, now)
        self.counters.inc("stem_sent")
        self._pump_stem(now)
        return message_id

    def request_private(self, topic: str, data: bytes, now: float) -> int:
        """A private request (a sync request) whose reply returns through the same circuit."""
        request_id = self.circuits.send_request(topic, data, now)
        self.counters.inc("private_requests")
        self._pump_circuits(now)
        return request_id

    def guard_records(self) -> list[GuardRecord]:
        """The entry guards to keep for the next run (they change when ``guards_version``
        does)."""
        return self.circuits.client.guards.records()

    @property
    def guards_version(self) -> int:
        return self.circuits.client.guards.version

    def guard_announcements(self) -> dict[NodeId, bytes]:
        """The announcement the node holds of each of its guards, to keep with the list: a
        restarted node knows its guard at once, not when gossip brings the record back (in a
        large network, up to its hourly renewal, and meanwhile it would draw another guard)."""
        held: dict[NodeId, bytes] = {}
        for guard in self.guard_records():
            announcement = self.private.book.get(guard.node_id)
            if announcement is not None:
                held[guard.node_id] = announcement.encode()
        return held

    def restore_announcements(self, records: Iterable[bytes], now: float) -> int:
        """Announcements kept from an earlier run (the guards'), each judged as if gossip had
        delivered it (well formed, correctly signed, still alive on the wall clock, newer
        than what the node holds); returns how many the node took."""
        taken = 0
        for data in records:
            if self.private.validate_announcement(data, now) is Validation.ACCEPT:
                taken += self.private.on_announcement(data, now) is not None
        return taken

    def set_wall_clock(self, offset_s: float, now: float) -> None:
        """The wall clock now reads ``now + offset_s`` (it was set or stepped)."""
        self.private.set_wall_clock(offset_s, now)

    def set_advertised_address(self, host: str, port: int, now: float) -> None:
        """Where peers and circuit builders reach this node; triggers the first announcement."""
        self.private.set_advertised_address(host, port, now)

    def ban(self, node_id: NodeId, now: float, reason: str) -> None:
        self._bans.ban(node_id, now, self.config.limits.ban_s, reason)
        session = self._by_peer.get(node_id)
        if session is not None:
            self._close(session, now, reason)

    def status(self, now: float) -> dict[str, object]:
        counters: dict[str, int] = {}
        self.counters.merge_into(counters)
        self.gossip.counters.merge_into(counters)
        self.private.counters.merge_into(counters)
        self.stem.counters.merge_into(counters, "stem.")
        for name, value in self._closed_link_counters.items():
            counters[name] = counters.get(name, 0) + value
        for session in self._sessions.values():
            session.link.counters.merge_into(counters, "link.")
        circuits = self.circuits.metrics()
        peers = [
            {
                "node_id": peer.hex(),
                "address": f"{s.host}:{s.port}",
                "direction": "outbound" if s.outbound else "inbound",
                "rtt_ms": None if s.link.rtt_s is None else round(s.link.rtt_s * 1000, 3),
                "bytes_in": s.bytes_in,
                "messages_in": s.messages_in,
                "bytes_out": s.bytes_out,
                "connected_s": round(now - s.opened_at, 3),
            }
            for s in self._sessions.values()
            if s.ready and (peer := s.peer_id) is not None
        ]
        return {
            "node_id": self.node_id.hex(),
            "uptime_s": round(now - self.started_at, 3),
            "peers": peers,
            "pending_connections": sum(1 for s in self._sessions.values() if s.peer_id is None),
            "topics": self.gossip.status(),
            "bans": len(self._bans.active(now)),
            "relays_known": len(self.private.directory),
            "circuits": circuits,
            "relay_cells_per_s": round(
                circuits.get("relay.cells_relayed", 0) / max(now - self.started_at, 1e-9), 3
            ),
            "counters": dict(sorted(counters.items())),
        }

    # --- internals -----------------------------------------------------------------------

    def _make_inbound_room(self, host: str, now: float) -> bool:
        """True when an inbound connection from ``host`` may take a slot: one is free, or one
        held by an over-represented network group was closed for it (``netgroup``)."""
        inbound = [s for s in self._sessions.values() if not s.outbound]
        if len(inbound) < self.config.limits.max_inbound:
            return True
        longest = sorted(
            (s for s in inbound if s.peer_id is not None),
            key=lambda s: (s.opened_at, s.conn_id),
        )[:PROTECTED_LONGEST_INBOUND]
        protected = {s.conn_id for s in longest} | {
            s.conn_id for s in inbound if s.peer_id is not None and self._chose(s, s.peer_id)
        }
        victim = inbound_to_evict(
            [
                InboundSlot(
                    s.conn_id,
                    netgroup(s.host),
                    s.opened_at,
                    s.peer_id is not None,
                    protected=s.conn_id in protected,
                )
                for s in inbound
            ],
            netgroup(host),
        )
        if victim is None:
            return False
        self.counters.inc("inbound_evicted.netgroup")
        self._close(self._sessions[ConnId(victim)], now, "evicted_netgroup")
        return True

    def _outbound_count(self) -> int:
        return len(self._outbound)

    def _dialable(self, target: _DialTarget) -> bool:
        return target.persistent and not target.pending and target.connected_as is None

    def _dial_due(self, now: float) -> None:
        for target in self._dial_targets:
            if self._outbound_count() + self._pending_dials() >= self.config.limits.max_outbound:
                return
            if self._dialable(target) and target.next_attempt <= now:
                known = target.peer.node_id
                if known is not None and known in self._by_peer:
                    target.connected_as = known
                    continue
                target.pending = True
                self.counters.inc("dials")
                self._actions.append(Dial(target.peer))

    def _pending_dials(self) -> int:
        """Dials of the node's own peers still out: each holds an outbound slot."""
        return sum(t.pending for t in self._dial_targets if t.persistent)

    def _target_for(self, peer: BootstrapPeer | None) -> _DialTarget | None:
        if peer is None:
            return None
        return next((t for t in self._dial_targets if t.peer == peer), None)

    def _pump_link(self, session: Session, now: float) -> None:
        if not session.closing:
            deadline = session.link.next_deadline()
            self._link_deadlines[session.conn_id] = math.inf if deadline is None else deadline
        data = session.link.data_to_send()
        if data:
            session.bytes_out += len(data)
            self._actions.append(SendBytes(session.conn_id, data))
        for event in session.link.drain_events():
            if isinstance(event, MessageReceived):
                self._on_message(session, event.payload, now)
            elif isinstance(event, HandshakeCompleted):
                self._on_authenticated(session, event, now)
            elif isinstance(event, LinkClosed):
                self._on_link_closed(session, event, now)
            elif isinstance(event, PongReceived):
                self._report_latency(session)
            if session.closing:
                return

    def _on_authenticated(self, session: Session, event: HandshakeCompleted, now: float) -> None:
        peer = event.peer_id
        target = self._target_for(session.bootstrap)
        if target is not None:
            target.pending = False
        if peer == self.node_id:
            self.counters.inc("refused.self_connection")
            self._close(session, now, "self_connection")
            return
        if self._bans.is_banned(peer, now):
            self.counters.inc("refused.banned")
            self._close(session, now, "banned")
            return
        existing = self._by_peer.get(peer)
        session.peer_id = peer
        if existing is not None:
            self.counters.inc("refused.duplicate")
            if self._chose(session, peer):
                # The link we dialled authenticated second (a bootstrap entry without a node
                # id): the peer is ours after all, for the stem and for the mesh's d_out.
                self.stem.add_peer(peer, now, outbound=True)
                self.gossip.mark_outbound(peer)
            if not (self._preferred(session, peer) and not self._preferred(existing, peer)):
                self._retire(session, now)
                if target is not None:
                    target.connected_as = peer
                return
        self._by_peer[peer] = session
        if existing is not None:
            # The new link replaces the old one under the same peer. Gossip and circuit state
            # are keyed by peer, not by link, so they carry over (``_forget`` leaves a peer
            # alone once it maps to another session); tearing them down would kill every
            # circuit through this peer whenever two nodes happen to dial each other.
            self._retire(existing, now)
        self._throttle.record_success(session.host)
        if target is not None:
            target.connected_as = peer
            target.backoff.reset()
        if existing is None:
            self.counters.inc("peers_authenticated")
            limiter = self._departed_limiters.pop(peer, None)
            self._limiters[peer] = limiter or PeerRateLimiter(self.config.limits)
            chosen = self._chose(session, peer)
            self.gossip.add_peer(peer, now, outbound=chosen)
            self.stem.add_peer(peer, now, outbound=chosen)
            others = chosen or self._catch_up_budget.consume(session.host, now)
            if not others:
                self.counters.inc("catch_up.withheld")
            self.gossip.offer_to_peer(
                peer, ANNOUNCE_TOPIC, self.private.catch_up(self._rng, now, others=others)
            )
        self._report_latency(session)
        self.circuits.link_ready(peer, now)
        self._pump_gossip(now)
        self._pump_circuits(now)

    def _chose(self, session: Session, peer: NodeId) -> bool:
        """We dial this peer ourselves (a bootstrap target), whichever of two links between us
        survives. Only such a peer may be a stem edge or fill a mesh's ``d_out`` slots: an
        attacker cannot become anyone's stem, nor take every mesh slot, by dialling them, nor
        by asking them to extend a circuit to it."""
        if session.outbound and not session.for_circuit:
            return True
        return any(t.persistent and t.peer.node_id == peer for t in self._dial_targets)

    def _report_latency(self, session: Session) -> None:
        """Tells the circuit client the round trip of a link we chose (a bootstrap or peer
        target, not one a circuit asked for): the candidates for a near first hop."""
        peer = session.peer_id
        if peer is None or self._by_peer.get(peer) is not session:
            return
        chosen = session.outbound and not session.for_circuit
        self.circuits.link_latency(peer, session.link.rtt_s if chosen else None)

    def _retire(self, session: Session, now: float) -> None:
        """Stops sending on a link that lost to another with the same peer, and closes it
        ``DUPLICATE_DRAIN_S`` later. Until then what the peer sent on it is still taken as the
        peer's: the peer may not have seen the other link complete yet and keeps using this
        one (closing at once lost those cells, and a close reaching the peer before its own
        handshake on the kept link finished made it drop every circuit through us)."""
        session.retired = True
        self._retired[session.conn_id] = now + DUPLICATE_DRAIN_S

    def _close_unused_circuit_links(self, now: float) -> None:
        """Closes the links we opened for circuits that no circuit has used for a while
        (``CIRCUIT_LINK_IDLE_S``). Links to peers we chose (bootstrap and peer targets) and
        inbound links stay: the peer that opened one for its circuits closes it."""
        if now < self._next_circuit_link_sweep and now < self._unused_close_due:
            return
        self._next_circuit_link_sweep = now + self._circuit_link_sweep_s
        self._unused_close_due = math.inf
        in_use = self.circuits.peers_in_use()
        low, high = self._circuit_link_idle_s
        for session in list(self._sessions.values()):
            peer = session.peer_id
            if not session.for_circuit or not session.ready or peer is None:
                continue
            if self._by_peer.get(peer) is not session or self._chose(session, peer):
                continue
            if peer in in_use:
                session.unused_since = None
            elif session.unused_since is None:
                session.unused_since = now
                session.close_unused_at = now + self._rng.uniform(low, high)
            elif now >= session.close_unused_at:
                self.counters.inc("circuit_links_closed_unused")
                self._close(session, now, "unused_circuit_link")
                continue
            if session.unused_since is not None:
                self._unused_close_due = min(self._unused_close_due, session.close_unused_at)

    def _close_drained(self, now: float) -> None:
        for conn_id, close_at in list(self._retired.items()):
            if close_at <= now:
                del self._retired[conn_id]
                session = self._sessions.get(conn_id)
                if session is not None:
                    self._close(session, now, "duplicate")

    def _preferred(self, session: Session, peer: NodeId) -> bool:
        """Of two links between the same pair, both sides keep the one the smaller id dialled."""
        initiator = self.node_id if session.outbound else peer
        return initiator == min(self.node_id, peer)

    def _on_message(self, session: Session, payload: bytes, now: float) -> None:
        peer = session.peer_id
        if peer is None or session.closing or (session.retired and peer not in self._by_peer):
            return
        session.messages_in += 1
        # Charged to the peer's one limiter even when read on a retired duplicate: one budget
        # per peer, not one more per link it opens.
        limiter = self._limiters[peer]
        subscriptions_only = False
        if not limiter.admit(now, len(payload)):
            self.counters.inc("drops.rate_limited")
            if limiter.record_drop(now):
                self._misbehaved(session, now, "flood")
                return
            if session.messages_in != 1 or len(payload) > FIRST_RPC_MAX_BYTES:
                return
            # A peer that spent its budget on its last link and reconnects at once (its budget
            # is kept by node id) sends its subscriptions only in a link's first message; without
            # them the node has no mesh and no gossip with it on this link (it prunes the peer's
            # GRAFTs) until it reconnects. The rest of the message is dropped, and the drop was
            # counted towards a flood: a reconnect buys the peer one bounded decode and its
            # subscriptions, which gossip caps, nothing more.
            subscriptions_only = True
        try:
            channel, body = unwrap(payload)
        except RemoteProtocolError as exc:
            self._misbehaved(session, now, exc.reason)
            return
        if subscriptions_only:
            if channel is Channel.GOSSIP:
                self.counters.inc("rate_limited.subscriptions_taken")
                self.gossip.receive_rpc(peer, body, now, subscriptions_only=True)
            return
        if channel is Channel.GOSSIP:
            self.gossip.receive_rpc(peer, body, now)
        elif channel is Channel.STEM:
            try:
                self.stem.receive_stem(peer, body, now)
            except RemoteProtocolError as exc:
                self._misbehaved(session, now, f"stem.{exc.reason}")
                return
            self._pump_stem(now)
        else:
            self.circuits.receive_cell(peer, body, now)
            self._pump_circuits(now)

    def _on_link_closed(self, session: Session, event: LinkClosed, now: float) -> None:
        self.counters.inc(f"links_closed.{event.reason}")
        if event.by_peer_error:
            if session.peer_id is not None:
                self._ban(session, session.peer_id, now, event.reason)
                return
            if not session.outbound:
                # The throttle paces hosts that connect to us. A dial of ours that failed
                # (an EXTEND's sender names the address and the node id) is paced by its
                # target's back-off: held against the address, it refused the honest nodes
                # there when they connected in.
                self._throttle.record_failure(session.host, now)
                self.counters.inc("address_backoffs")
        self._close(session, now, event.reason)

    def _misbehaved(self, session: Session, now: float, reason: str) -> None:
        self.counters.inc(f"misbehaviour.{reason}")
        if session.peer_id is not None:
            self._ban(session, session.peer_id, now, reason)
            return
        self._close(session, now, reason)

    def _ban(self, session: Session, peer: NodeId, now: float, reason: str) -> None:
        """Bans ``peer`` for breaking the protocol on ``session`` and closes every link with
        it: when ``session`` is a retired duplicate, the peer still holds the kept one."""
        self._bans.ban(peer, now, self.config.limits.ban_s, reason)
        self.counters.inc("bans")
        self._close(session, now, reason)
        kept = self._by_peer.get(peer)
        if kept is not None:
            self._close(kept, now, reason)

    def _close(self, session: Session, now: float, reason: str) -> None:
        if session.closing:
            return
        session.link.close(now, reason)
        data = session.link.data_to_send()
        if data:
            self._actions.append(SendBytes(session.conn_id, data))
        session.link.drain_events()
        self._actions.append(CloseConnection(session.conn_id, reason))
        self._forget(session, now)

    def _forget(self, session: Session, now: float) -> None:
        session.closing = True
        self._link_deadlines.pop(session.conn_id, None)
        self._retired.pop(session.conn_id, None)
        self._outbound.discard(session.conn_id)
        if self._sessions.pop(session.conn_id, None) is not None:
            session.link.counters.merge_into(self._closed_link_counters, "link.")
        peer = session.peer_id
        if peer is not None and self._by_peer.get(peer) is session:
            del self._by_peer[peer]
            remember_penalty(
                self._departed_limiters,
                peer,
                self._limiters.pop(peer),
                DEPARTED_LIMITERS,
                lambda limiter: limiter.full_at() - now,
            )
            self.gossip.remove_peer(peer, now)
            self.stem.remove_peer(peer, now)
            self.circuits.peer_disconnected(peer, now)
        elif peer is not None and peer in self._by_peer:
            return  # a duplicate went; the peer is still linked, so its dial target stays met
        target = self._target_for(session.bootstrap)
        for t in list(self._dial_targets):
            if t is target or (peer is not None and t.connected_as == peer):
                if peer is not None and t.pending:
                    # This link's dial ended when it authenticated: a retired duplicate going
                    # after the kept link, its target already dialled again. That dial is
                    # still out; it ends in its own connection or failure.
                    continue
                if not t.persistent:
                    self._dial_targets.remove(t)
                    if t.connected_as is None and t.peer.node_id is not None:
                        self.circuits.link_failed(t.peer.node_id, now)
                    continue
                t.pending = False
                t.connected_as = None
                t.next_attempt = now + t.backoff.next_delay(self._rng)
        if peer is not None:
            self._pump_circuits(now)

    def _pump_gossip(self, now: float) -> None:
        """Apply the router's actions: one ``Deliver`` per new message (the relay path, so it
        is tested first and its counters are added once per drain) and one ``SendRpc`` per peer.
        """
        delivered: dict[str, int] = {}
        deliveries = self.deliveries
        store_put = self.private.store.put
        published = self.private.origin.published
        ours = False  # one of our own private messages came back, and the client heard so
        for action in self.gossip.drain_actions():
            if isinstance(action, Deliver):
                topic = action.topic
                message_id = action.message_id
                delivered[topic] = delivered.get(topic, 0) + 1
                store_put(message_id, action.data)
                if topic == ANNOUNCE_TOPIC:
                    self.private.on_announcement(action.data, now)
                else:
                    ours |= published(topic, message_id, len(action.data), now)
                    if topic in STEM_TOPICS:
                        self.stem.seen_in_gossip(message_id)
                if message_id not in deliveries:  # a repeat keeps the first time
                    remember(deliveries, message_id, now, DELIVERY_LOG_ENTRIES)
                self._actions.append(
                    MessageDelivered(topic, message_id, action.data, action.received_from)
                )
            elif isinstance(action, SendRpc):
                session = self._by_peer.get(action.peer)
                if session is not None and session.link.state is LinkState.ESTABLISHED:
                    session.link.send_message(wrap(Channel.GOSSIP, action.data), now)
                    data = session.link.data_to_send()
                    session.bytes_out += len(data)
                    self._actions.append(SendBytes(session.conn_id, data))
            elif isinstance(action, PenalizePeer):
                session = self._by_peer.get(action.peer)
                if session is not None:
                    self._misbehaved(session, now, f"gossip.{action.reason}")
        for topic, count in delivered.items():
            self.counters.inc(f"delivered.{topic}", count)
        if ours:
            self._pump_circuits(now)

    def _pump_circuits(self, now: float) -> None:
        # Handling a ConnectTo can make more actions at once (a refused dial truncates the
        # extensions waiting for it): drained here too, not left for the node's next event.
        while actions := self.circuits.drain_actions():
            self._apply_circuit_actions(actions, now)

    def _apply_circuit_actions(self, actions: list[CircuitAction], now: float) -> None:
        for action in actions:
            if isinstance(action, SendCell):
                session = self._by_peer.get(action.peer)
                if session is not None and session.link.state is LinkState.ESTABLISHED:
                    session.link.send_message(wrap(Channel.CIRCUIT, action.cell), now)
                    data = session.link.data_to_send()
                    session.bytes_out += len(data)
                    self.counters.inc("bytes_out.circuit", len(data))
                    self._actions.append(SendBytes(session.conn_id, data))
                else:
                    self.counters.inc("drops.cell_without_link")
            elif isinstance(action, ConnectTo):
                self._connect_for_circuit(action, now)
            elif isinstance(action, PublishFromExit):
                if self._publish_for_peer(action.topic, action.payload, now, "exit_publish"):
                    self.counters.inc("exit_published")
                    self._pump_gossip(now)
            elif isinstance(action, ReplyReceived):
                self._actions.append(PrivateReplyArrived(action.request_id, action.payload))
            elif isinstance(action, SendFailed):
                self.private.origin.abandon(action.send_id)
                self._actions.append(PrivateSendFailed(action.send_id, action.reason))
            elif isinstance(action, RequestFailed):
                self._actions.append(PrivateSendFailed(action.request_id, action.reason))
            elif isinstance(action, OnionKeysRotated):
                self.private.reannounce(now)
            elif isinstance(action, CircuitBuilt):
                self.counters.inc("circuits_built")
            elif isinstance(action, CircuitFailed):
                self.counters.inc(f"circuits_failed.{action.reason}")

    def _publish_for_peer(self, topic: str, data: bytes, now: float, what: str) -> bool:
        """Publishes into the mesh what a peer handed us to publish as our own (an exit's
        transaction, a stem's fluff). A peer's bytes reached here: an application validator
        refusing them is a drop counted as ``drops.<what>_refused``, never an exception out
        of the receive path."""
        try:
            self.gossip.publish(topic, data, now, from_circuit=True)
        except LocalProtocolError:
            self.counters.inc(f"drops.{what}_refused")
            return False
        return True

    def _pump_stem(self, now: float) -> None:
        """Stem messages go to their peer on the STEM channel; a fluff is published into the
        mesh the way an onion exit publishes (the stem hid its origin)."""
        fluffed = False
        for action in self.stem.drain_actions():
            if isinstance(action, SendStem):
                session = self._by_peer.get(action.peer)
                if session is not None and session.link.state is LinkState.ESTABLISHED:
                    session.link.send_message(wrap(Channel.STEM, encode_stem(action.message)), now)
                    data = session.link.data_to_send()
                    session.bytes_out += len(data)
                    self.counters.inc("bytes_out.stem", len(data))
                    self._actions.append(SendBytes(session.conn_id, data))
                else:
                    self.counters.inc("drops.stem_without_link")
            elif isinstance(action, Fluff):
                message = action.message
                if self._publish_for_peer(message.topic, message.data, now, "stem_fluff"):
                    self.counters.inc("stem_fluffed")
                    fluffed = True
        if fluffed:
            self._pump_gossip(now)

    def _pad_idle_links(self, now: float) -> None:
        """A padding frame on each established link quiet for its level's threshold."""
        padder = self.private.link_padder
        if padder is None:
            return
        live = [
            s for s in self._sessions.values() if s.ready and s.link.state is LinkState.ESTABLISHED
        ]
        for session in live:
            if padder.observe(session.conn_id, session.bytes_out, now):
                session.link.send_padding(padder.config.frame_bytes, now)
                data = session.link.data_to_send()
                session.bytes_out += len(data)
                self.counters.inc("bytes_out.padding", len(data))
                self._actions.append(SendBytes(session.conn_id, data))
                padder.observe(session.conn_id, session.bytes_out, now)
        padder.retain(s.conn_id for s in live)

    def _may_dial_for_circuit(self, host: str) -> bool:
        """An EXTEND names the address to dial, and whoever sends one chooses it: a relay that
        dialled any address would probe its own host and network for them (a closed port
        fails in a round trip, a filtered one at the dial timeout, another service at the
        handshake timeout). Only a node that is itself on a local network (a testnet, a LAN)
        dials local addresses for circuits; elsewhere they fail at once, as Tor's
        ExtendAllowPrivateAddresses 0 does."""
        if ipaddress.ip_address(host).is_global:
            return True
        advertised = self.private.advertised
        return advertised is not None and on_local_network(advertised.host)

    def _connect_for_circuit(self, action: ConnectTo, now: float) -> None:
        """A relay asked to extend to a node we have no link with opens one (once)."""
        if action.peer in self._by_peer:
            self.circuits.link_ready(action.peer, now)
            return
        if any(t.peer.node_id == action.peer for t in self._dial_targets):
            return
        if not self._may_dial_for_circuit(action.address.host):
            self.counters.inc("drops.extend_to_local_address")
            self.circuits.link_failed(action.peer, now, by_policy=True)
            return
        one_shot = sum(1 for t in self._dial_targets if not t.persistent)
        reserve = 0 if action.own_circuit else OWN_HOP_ONE_RESERVE
        if one_shot >= MAX_CIRCUIT_LINKS - reserve:
            self.counters.inc("drops.circuit_links_full")
            self.circuits.link_failed(action.peer, now, refused_locally=True)
            return
        target = BootstrapPeer(HostPort(action.address.host, action.address.port), action.peer)
        self._dial_targets.append(
            _DialTarget(target, ReconnectBackoff(), now, pending=True, persistent=False)
        )
        self.counters.inc("dials.for_circuit")
        self._actions.append(Dial(target))
