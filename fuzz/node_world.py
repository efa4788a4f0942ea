"""The node harness's world: a victim ``Node``, an honest ``Node`` linked to it, and a hostile
peer on an authenticated link to it, wired in memory on a fake clock.

The world moves every byte between the three until nothing is left to move, runs timers the way
the runtime does, and checks after each step what must hold whatever the hostile peer sent:
nothing escaped either node (an exception simply propagates to the fuzzer), each node's
deadline moves forward once its timers ran, and their peer-fed queues and buffers stay within
their limits (the honest node's too: the hostile peer reaches it through circuits the victim
extends). Dials go to the honest node when they name its address and fail otherwise.
"""

from __future__ import annotations

import functools

from fuzz.bounds import check_relay
from fuzz.hand_circuit import HandCircuit, HandHop
from fuzz.hostile_peer import HostilePeer
from murmur.base.ids import NodeId
from murmur.crypto.identity import Identity
from murmur.node.actions import CloseConnection, ConnId, Dial, NodeAction, SendBytes
from murmur.node.config import MAX_CIRCUIT_LINKS, BootstrapPeer, HostPort, NodeConfig
from murmur.node.node import DELIVERY_LOG_ENTRIES, DEPARTED_LIMITERS, Node
from murmur.overlay.circuits.ids import CircuitIds
from murmur.overlay.circuits.onion_keys import OnionKeyPair
from murmur.overlay.circuits.relay import CircuitRelay
from murmur.sim.node_host import WALL_CLOCK_AT_ZERO_S
from murmur.sim.rng import SeededRng
from murmur.wire.cells import CellCommand, RelayAddress, decode_cell
from murmur.wire.envelope import Channel
from murmur.wire.link import MAX_RECORD_BODY_BYTES, RECORD_HEADER_BYTES

VICTIM_ADDRESS = HostPort("127.1.0.1", 7001)
HONEST_ADDRESS = HostPort("127.2.0.1", 7002)
HOSTILE_HOST = "127.3.0.1"
SETTLE_ROUNDS = 1_000
"""Rounds of moving bytes after one step before the world counts as livelocked."""
TIMER_ROUNDS = 40
"""Timer firings one ``advance`` replays in order; past that it jumps (a late wake-up)."""
STUCK_ROUNDS = 50
"""Timer runs at one instant whose deadline stays due: a runtime would spin on it."""
MAX_HAND_CIRCUITS = 4
HOSTILE = 3
"""The hostile peer's identity index (its sybils are 4 and up)."""


@functools.cache
def identity(index: int) -> Identity:
    """Node ``index``'s identity (the harness always runs under the same crypto backend)."""
    return Identity.from_seed(bytes([index]) * 32)


@functools.cache
def onion_keys(index: int) -> OnionKeyPair:
    """The onion keys the hostile peer (or sybil) ``index`` announces."""
    return OnionKeyPair.generate(SeededRng(100 + index))


class World:
    def __init__(self) -> None:
        self.now = 0.0
        self.victim = Node(
            identity=identity(1),
            config=NodeConfig(
                listen=VICTIM_ADDRESS,
                bootstrap=(BootstrapPeer(HONEST_ADDRESS, identity(2).node_id),),
            ),
            rng=SeededRng(1),
            now=0.0,
            wall_clock_offset_s=WALL_CLOCK_AT_ZERO_S,
        )
        self.victim.set_advertised_address(VICTIM_ADDRESS.host, VICTIM_ADDRESS.port, 0.0)
        self.honest = Node(
            identity=identity(2),
            config=NodeConfig(listen=HONEST_ADDRESS),
            rng=SeededRng(2),
            now=0.0,
            wall_clock_offset_s=WALL_CLOCK_AT_ZERO_S,
        )
        self.honest.set_advertised_address(HONEST_ADDRESS.host, HONEST_ADDRESS.port, 0.0)
        self._conns = 0
        self._victim_to_honest: dict[ConnId, ConnId] = {}
        self._honest_to_victim: dict[ConnId, ConnId] = {}
        self.circuits: list[HandCircuit] = []
        self.victim_circ_ids: list[int] = []
        """Circuits the victim opened towards the hostile peer (it may answer on them)."""
        self._circuit_ids = CircuitIds(identity(HOSTILE).node_id)
        self._circuit_rng = SeededRng(3)
        self.hop = HandHop(identity(HOSTILE).node_id, onion_keys(HOSTILE))
        self._open_hostile()
        self.advance(1.0)

    # --- the hostile peer's moves ------------------------------------------------------------

    def reconnect_hostile(self, *, drop_old: bool) -> None:
        """A fresh link from the same identity (it may be banned by now), with the old one
        closed or left open (then the victim holds two links to one peer and the old one goes
        quiet: what the victim sends on it is lost)."""
        if drop_old:
            self.victim.connection_lost(self.hostile.conn_id, self.now)
        self.hop = HandHop(identity(HOSTILE).node_id, onion_keys(HOSTILE))
        self.circuits.clear()
        self.victim_circ_ids.clear()
        self._open_hostile()

    def send_hostile(self, data: bytes) -> None:
        """Bytes from the hostile peer into the victim, then everything they cause."""
        if data:
            self.victim.data_received(self.hostile.conn_id, data, self.now)
        self.settle()

    def open_circuit(self) -> None:
        if len(self.circuits) >= MAX_HAND_CIRCUITS or not self.hostile.established:
            return
        victim = self.victim
        circuit = HandCircuit(
            self._circuit_ids.allocate(victim.node_id, self._circuit_rng),
            victim.node_id,
            victim.private.onion_keys.current.public,
            self._circuit_rng.random_bytes(32),
        )
        self.circuits.append(circuit)
        self._send_cells(circuit.create_cells)

    def extend_past_victim(self, pick: int) -> None:
        """EXTEND to the honest node, with a real onionskin for its current onion key, on the
        ``pick``-th (modulo their number) one-hop hand circuit, a new one if none is built and
        there is room: the EXTENDED that comes back through the victim while the world settles
        gives that circuit its second hop."""
        if not any(c.extendable for c in self.circuits):
            self.open_circuit()
        circuits = [c for c in self.circuits if c.extendable]
        if not circuits:
            return
        circuit = circuits[pick % len(circuits)]
        honest = self.honest
        self._send_cells(
            circuit.extend_cells(
                honest.node_id,
                honest.private.onion_keys.current.public,
                RelayAddress(HONEST_ADDRESS.host, HONEST_ADDRESS.port),
                self._circuit_rng.random_bytes(32),
            )
        )

    def _send_cells(self, cells: list[bytes]) -> None:
        for cell in cells:
            if self.hostile.established:
                self.send_hostile(self.hostile.message(bytes((Channel.CIRCUIT,)) + cell, self.now))

    # --- time ----------------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Runs the nodes' timers due in the next ``seconds``, in order, as the runtime would;
        after ``TIMER_ROUNDS`` firings the rest are run late, at the end, all at once."""
        until = self.now + seconds
        for _ in range(TIMER_ROUNDS):
            due = min(
                (
                    d
                    for d in (self.victim.next_deadline(), self.honest.next_deadline())
                    if d is not None
                ),
                default=None,
            )
            if due is None or due > until:
                break
            self.now = max(self.now, due)
            self._fire_timers()
        self.now = max(self.now, until)
        self._fire_timers()

    def _fire_timers(self) -> None:
        for _ in range(STUCK_ROUNDS):
            fired = False
            for node in (self.victim, self.honest):
                if self._due(node):
                    node.handle_timer(self.now)
                    fired = True
            self.settle()
            if not fired or not (self._due(self.victim) or self._due(self.honest)):
                return
        raise AssertionError(
            f"deadlines {self.victim.next_deadline()} (victim), {self.honest.next_deadline()} "
            f"(honest) stuck at {self.now}"
        )

    def _due(self, node: Node) -> bool:
        deadline = node.next_deadline()
        return deadline is not None and deadline <= self.now

    # --- moving bytes ------------------------------------------------------------------------

    def settle(self) -> None:
        for _ in range(SETTLE_ROUNDS):
            moved = self._route_victim(self.victim.drain_actions())
            moved |= self._route_honest(self.honest.drain_actions())
            if not moved:
                self.check_bounds()
                return
        raise AssertionError("the nodes never stop sending (livelock)")

    def _route_victim(self, actions: list[NodeAction]) -> bool:
        moved = False
        for action in actions:
            if isinstance(action, SendBytes):
                moved = True
                if action.conn_id == self.hostile.conn_id:
                    self._to_hostile(action.data)
                elif (honest_conn := self._victim_to_honest.get(action.conn_id)) is not None:
                    self.honest.data_received(honest_conn, action.data, self.now)
            elif isinstance(action, CloseConnection):
                honest_conn = self._victim_to_honest.pop(action.conn_id, None)
                if honest_conn is not None:
                    del self._honest_to_victim[honest_conn]
                    self.honest.connection_lost(honest_conn, self.now)
                    moved = True
            elif isinstance(action, Dial):
                moved = True
                if action.target.address == HONEST_ADDRESS:
                    self._pair(victim_dials=True, target=action.target)
                else:
                    self.victim.dial_failed(action.target, self.now)
        return moved

    def _route_honest(self, actions: list[NodeAction]) -> bool:
        moved = False
        for action in actions:
            if isinstance(action, SendBytes):
                victim_conn = self._honest_to_victim.get(action.conn_id)
                if victim_conn is not None:
                    moved = True
                    self.victim.data_received(victim_conn, action.data, self.now)
            elif isinstance(action, CloseConnection):
                victim_conn = self._honest_to_victim.pop(action.conn_id, None)
                if victim_conn is not None:
                    del self._victim_to_honest[victim_conn]
                    self.victim.connection_lost(victim_conn, self.now)
                    moved = True
            elif isinstance(action, Dial):
                moved = True
                if action.target.address == VICTIM_ADDRESS:
                    self._pair(victim_dials=False, target=action.target)
                else:
                    self.honest.dial_failed(action.target, self.now)
        return moved

    def _to_hostile(self, data: bytes) -> None:
        answer = self.hostile.receive(data, self.now)
        self._read_inbox()
        if answer:
            self.victim.data_received(self.hostile.conn_id, answer, self.now)

    def _read_inbox(self) -> None:
        """Completes hand circuits from CREATED cells, gives them every backward RELAY cell (in
        order: their keystreams depend on it), forgets those the victim destroyed, and answers
        the victim's CREATEs."""
        answers = []
        circuits = {circuit.circ_id: circuit for circuit in self.circuits}
        for payload in self.hostile.inbox:
            if payload[:1] != bytes((Channel.CIRCUIT,)):
                continue
            cell = decode_cell(payload[1:])
            if cell.command is CellCommand.CREATE:
                if cell.circ_id not in self.victim_circ_ids:
                    self.victim_circ_ids.append(cell.circ_id)
                    del self.victim_circ_ids[:-MAX_HAND_CIRCUITS]
                created = self.hop.on_create(cell.circ_id, cell.body)
                if created is not None:
                    answers.append(created)
            elif (circuit := circuits.get(cell.circ_id)) is None:
                continue
            elif cell.command is CellCommand.CREATED and not circuit.built:
                circuit.finish(cell.body)
            elif cell.command is CellCommand.RELAY:
                circuit.on_backward(cell.body)
            elif cell.command is CellCommand.DESTROY:  # its slot goes to a circuit that lives
                del circuits[cell.circ_id]
                self.circuits.remove(circuit)
        self.hostile.inbox.clear()
        for answer in answers:
            if self.hostile.established:
                data = self.hostile.message(bytes((Channel.CIRCUIT,)) + answer, self.now)
                self.victim.data_received(self.hostile.conn_id, data, self.now)

    def _pair(self, *, victim_dials: bool, target: BootstrapPeer) -> None:
        victim_conn, honest_conn = self._conn(), self._conn()
        self._victim_to_honest[victim_conn] = honest_conn
        self._honest_to_victim[honest_conn] = victim_conn
        self.victim.connection_opened(
            victim_conn,
            outbound=victim_dials,
            host=HONEST_ADDRESS.host,
            port=HONEST_ADDRESS.port,
            now=self.now,
            target=target if victim_dials else None,
        )
        self.honest.connection_opened(
            honest_conn,
            outbound=not victim_dials,
            host=VICTIM_ADDRESS.host,
            port=VICTIM_ADDRESS.port,
            now=self.now,
            target=None if victim_dials else target,
        )

    def _open_hostile(self) -> None:
        conn = self._conn()
        self.hostile = HostilePeer(
            identity(HOSTILE), self.victim.node_id, conn, seed=conn, now=self.now
        )
        self.victim.connection_opened(
            conn, outbound=False, host=HOSTILE_HOST, port=7003, now=self.now
        )
        self.send_hostile(self.hostile.link.data_to_send())

    def _conn(self) -> ConnId:
        self._conns += 1
        return ConnId(self._conns)

    # --- what must hold ----------------------------------------------------------------------

    def check_bounds(self) -> None:
        check_node(self.victim)
        check_node(self.honest)

    def peers(self) -> list[NodeId]:
        return [self.victim.node_id, self.honest.node_id, self.hostile.node_id]


def check_node(node: Node) -> None:
    """A node's buffers and queues that a peer can fill stay within their limits."""
    for session in node._sessions.values():
        assert len(session.link._inbuf) < RECORD_HEADER_BYTES + MAX_RECORD_BODY_BYTES
    limits = node.config.limits
    inbound = sum(1 for session in node._sessions.values() if not session.outbound)
    assert inbound <= limits.max_inbound, "inbound sessions"  # retired duplicates count too
    outbound = len(node._sessions) - inbound
    assert outbound <= limits.max_outbound + MAX_CIRCUIT_LINKS, "outbound sessions"
    assert len(node.deliveries) <= DELIVERY_LOG_ENTRIES
    assert len(node._dial_targets) <= len(node.config.bootstrap) + MAX_CIRCUIT_LINKS
    assert node._limiters.keys() == node._by_peer.keys(), "one rate limiter per linked peer"
    assert len(node._departed_limiters) <= DEPARTED_LIMITERS, "departed peers' rate limiters"
    relay = node.circuits.relay
    assert isinstance(relay, CircuitRelay)
    check_relay(relay)
    gossip = node.gossip
    caps = gossip._config
    assert len(gossip._promises) <= caps.max_pending_iwants, "pending IWANTs"
    assert gossip._scores.retained <= caps.max_retained_scores, "departed peers' scores"
    assert len(gossip._spent) <= caps.max_retained_scores, "departed peers' allowances"
    for peer in gossip._peers.values():
        assert len(peer.topics) <= caps.max_peer_topics, "peer topics"
        assert len(peer.iwant_served) <= caps.max_iwant_replies, "IWANT replies"
        assert peer.batch.queued_bytes <= caps.max_outbox_bytes, "gossip outbox"
