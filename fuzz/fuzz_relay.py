"""One ``CircuitRelay`` alone, under tight limits the fuzzer picks, fed by hostile origins and a
hostile next hop: the relay's state machine at a rate the whole-node harness cannot reach.

The first bytes choose the relay's config (caps of one to a few circuits, queued cells, pending
CREATEs, reassembly bytes and held cells; token rates; short timeouts; a per-cell forward delay
or none), so the paths where a limit is hit, a queue is full or a timer fires mid-extension are
reached within a few operations. Then a program, as in ``fuzz_node``: two origins build
circuits by hand and send recognized relay plaintexts (EXTEND to the next hop, DATA for the
exit, anything), opaque cells to forward, and raw cells on any circuit id; the next hop answers
the relay's CREATEs properly or not at all, and sends backward cells or DESTROY; links come up,
fail or drop; time passes. The real X25519 / ML-KEM run throughout. After every step the
relay's peer-fed structures must be within their limits (``bounds.check_relay``), and after its
timers ran its deadline must have moved past the present.
"""

from __future__ import annotations

from collections.abc import Callable

from fuzz.bounds import check_relay
from fuzz.hand_circuit import HandCircuit, HandHop
from fuzz.source import ByteSource, run_program
from murmur.base.ids import NodeId
from murmur.overlay.circuits.config import RelayConfig
from murmur.overlay.circuits.events import ConnectTo, SendCell
from murmur.overlay.circuits.handshake import client_onionskin
from murmur.overlay.circuits.ids import CircuitIds
from murmur.overlay.circuits.onion_keys import OnionKeyPair, OnionKeyRing
from murmur.overlay.circuits.relay import CircuitRelay
from murmur.overlay.shaping import DelayRange
from murmur.sim.rng import SeededRng
from murmur.wire.cells import (
    CELL_BODY_BYTES,
    CELL_HEADER,
    PADDING_BUCKETS_BYTES,
    CellCommand,
    DestroyReason,
    Envelope,
    Extend,
    MessageKind,
    Onionskin,
    RelayAddress,
    RelayCommand,
    decode_cell,
    encode_cell,
    encode_reason,
    encode_relay_plaintext,
    extend_data,
    split_message,
)

RELAY_ID = NodeId(b"\x55" * 32)
ORIGINS = (NodeId(b"\x11" * 32), NodeId(b"\x22" * 32))
NEXT_HOP = NodeId(b"\x99" * 32)
PEERS = (*ORIGINS, NEXT_HOP)
RELAY_KEYS = OnionKeyPair.generate(SeededRng(42))
NEXT_HOP_KEYS = OnionKeyPair.generate(SeededRng(43))
MAX_CIRCUITS = 6
SETTLE_ROUNDS = 200
STUCK_ROUNDS = 20
STEPS = 64


def _config(src: ByteSource) -> RelayConfig:
    delays = (None, DelayRange(0.0, 0.0), DelayRange(0.0, 0.5), DelayRange(1.0, 5.0))
    return RelayConfig(
        max_circuits=1 + src.u8() % 6,
        max_circuits_per_peer=1 + src.u8() % 6,
        cell_rate_per_s=src.pick((1.0, 50.0, 2000.0)),
        cell_burst=src.pick((1.0, 5.0, 2000.0)),
        max_queued_cells_per_peer=1 + src.u8() % 8,
        create_rate_per_s=src.pick((0.5, 5.0, 100.0)),
        create_burst=src.pick((1.0, 5.0, 50.0)),
        extend_timeout_s=src.pick((0.5, 20.0)),
        create_timeout_s=src.pick((0.5, 10.0)),
        max_pending_creates=1 + src.u8() % 4,
        max_pending_creates_per_peer=1 + src.u8() % 4,
        max_circuit_lifetime_s=src.pick((5.0, 3600.0)),
        onion_key_lifetime_s=src.pick((30.0, 7 * 86_400.0)),
        onion_key_grace_s=src.pick((10.0, 86_400.0)),
        exit_reassembly_timeout_s=src.pick((1.0, 30.0)),
        max_reassemblies_per_circuit=1 + src.u8() % 4,
        max_reassembly_bytes=(reassembly_bytes := src.pick((600, 5_000, 16 * 1024 * 1024))),
        max_reassembly_bytes_per_peer=reassembly_bytes // 2,  # reads no byte: the same format
        reply_buckets=src.pick(((), PADDING_BUCKETS_BYTES)),
        forward_delay=src.pick(delays),
        max_delayed_cells=1 + src.u8() % 16,
    )


class RelayWorld:
    def __init__(self, config: RelayConfig) -> None:
        self.now = 0.0
        self.relay = CircuitRelay(
            node_id=RELAY_ID,
            onion_keys=OnionKeyRing(RELAY_KEYS, now=0.0),
            rng=SeededRng(1),
            validate=lambda topic, payload: len(payload) % 2 == 0,
            answer=lambda topic, payload: payload * 3 if payload else None,
            config=config,
        )
        self.circuits: list[tuple[NodeId, HandCircuit]] = []
        self.next_hop = HandHop(NEXT_HOP, NEXT_HOP_KEYS)
        self.answers_creates = True
        self.connects: list[NodeId] = []
        """Peers the relay asked to be linked to, not yet answered."""
        self.seen_circ_ids: dict[NodeId, list[int]] = {peer: [] for peer in PEERS}
        self._ids = {origin: CircuitIds(origin) for origin in ORIGINS}
        self._rng = SeededRng(2)

    def deliver(self, peer: NodeId, cell: bytes) -> None:
        self.relay.receive_cell(peer, cell, self.now)
        self.settle()

    def open_circuit(self, origin: NodeId) -> None:
        if len(self.circuits) >= MAX_CIRCUITS:
            return
        circ_id = self._ids[origin].allocate(RELAY_ID, self._rng)
        circuit = HandCircuit(circ_id, RELAY_ID, RELAY_KEYS.public, self._rng.random_bytes(32))
        self.circuits.append((origin, circuit))
        for cell in circuit.create_cells:
            self.deliver(origin, cell)

    def settle(self) -> None:
        for _ in range(SETTLE_ROUNDS):
            actions = self.relay.drain_actions()
            if not actions:
                check_relay(self.relay)
                return
            for action in actions:
                if isinstance(action, SendCell):
                    self._on_cell(action.peer, action.cell)
                elif isinstance(action, ConnectTo) and action.peer not in self.connects:
                    self.connects.append(action.peer)
        raise AssertionError("the relay never stops sending")

    def _on_cell(self, peer: NodeId, data: bytes) -> None:
        cell = decode_cell(data)
        seen = self.seen_circ_ids[peer]
        if cell.circ_id not in seen:
            seen.append(cell.circ_id)
            del seen[:-MAX_CIRCUITS]
        if peer == NEXT_HOP and cell.command is CellCommand.CREATE and self.answers_creates:
            created = self.next_hop.on_create(cell.circ_id, cell.body)
            if created is not None:
                self.relay.receive_cell(NEXT_HOP, created, self.now)
        elif cell.command is CellCommand.CREATED:
            for origin, circuit in self.circuits:
                if origin == peer and circuit.circ_id == cell.circ_id and not circuit.built:
                    circuit.finish(cell.body)

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        while True:
            due = self.relay.next_deadline()
            if due is None or due > until:
                break
            self.now = max(self.now, due)
            for _ in range(STUCK_ROUNDS):
                self.relay.handle_timer(self.now)
                self.settle()
                due = self.relay.next_deadline()
                if due is None or due > self.now:
                    break
            else:
                raise AssertionError(f"relay deadline {due} stuck at {self.now}")
        self.now = until

    def built(self) -> list[tuple[NodeId, HandCircuit]]:
        return [(origin, circuit) for origin, circuit in self.circuits if circuit.built]


def _open(world: RelayWorld, src: ByteSource) -> None:
    world.open_circuit(src.pick(ORIGINS))


def _recognized(world: RelayWorld, src: ByteSource) -> None:
    built = world.built()
    if built:
        origin, circuit = src.pick(built)
        if src.u8() & 1:
            plaintext = bytes(encode_relay_plaintext(src.pick(tuple(RelayCommand)), src.blob(512)))
        else:
            plaintext = src.blob(CELL_BODY_BYTES)
        world.deliver(origin, circuit.recognized_cell(plaintext))


def _opaque(world: RelayWorld, src: ByteSource) -> None:
    built = world.built()
    if built:
        origin, circuit = src.pick(built)
        world.deliver(origin, circuit.opaque_cell(src.blob(CELL_BODY_BYTES)))


def _extend(world: RelayWorld, src: ByteSource) -> None:
    """EXTEND to the next hop (a real onionskin for its key, or junk), an origin, or the relay,
    possibly only some of its cells."""
    built = world.built()
    if not built:
        return
    origin, circuit = src.pick(built)
    target = src.pick((NEXT_HOP, NEXT_HOP, *ORIGINS, RELAY_ID))
    if src.u8() & 1:
        skin = Onionskin(NEXT_HOP_KEYS.public.key_id(), bytes(32), bytes(1568))
    else:
        skin, _ = client_onionskin(target, NEXT_HOP_KEYS.public, x25519_seed=b"\x05" * 32)
    extend = Extend(target, RelayAddress("10.9.9.9", 7000), skin)
    parts = extend_data(extend)
    for data in parts[: 1 + src.u8() % len(parts)]:
        plaintext = bytes(encode_relay_plaintext(RelayCommand.EXTEND, data))
        world.deliver(origin, circuit.recognized_cell(plaintext))


def _exit_message(world: RelayWorld, src: ByteSource) -> None:
    built = world.built()
    if not built:
        return
    origin, circuit = src.pick(built)
    envelope = Envelope(src.pick(tuple(MessageKind)), "transaction", src.blob(2048))
    fragments = split_message(src.u16(), envelope.encode(src.blob(600)))
    skip = src.u8() - 1  # 0: none
    for index, fragment in enumerate(fragments):
        if index != skip:
            plaintext = encode_relay_plaintext(RelayCommand.DATA, fragment.encode())
            world.deliver(origin, circuit.recognized_cell(bytes(plaintext)))


def _raw_cell(world: RelayWorld, src: ByteSource) -> None:
    """Any cell from any peer, on a circuit id the relay uses with it or any other."""
    peer = src.pick(PEERS)
    known = world.seen_circ_ids[peer] + [c.circ_id for o, c in world.circuits if o == peer]
    use_known = src.u8() & 1
    circ_id = src.pick(known) if known and use_known else src.uint(4)
    body = src.blob(CELL_BODY_BYTES).ljust(CELL_BODY_BYTES, b"\x00")
    world.deliver(peer, CELL_HEADER.pack(circ_id, src.u8()) + body)


def _destroy(world: RelayWorld, src: ByteSource) -> None:
    peer = src.pick(PEERS)
    known = world.seen_circ_ids[peer] + [c.circ_id for o, c in world.circuits if o == peer]
    if known:
        reason = encode_reason(src.pick(tuple(DestroyReason)))
        world.deliver(peer, encode_cell(src.pick(known), CellCommand.DESTROY, reason))


def _backward(world: RelayWorld, src: ByteSource) -> None:
    """The next hop speaks on a circuit the relay extended to it."""
    legs = sorted(world.next_hop.layers)
    if legs:
        cell = world.next_hop.backward_cell(
            src.pick(legs), src.pick(tuple(RelayCommand)), src.blob(CELL_BODY_BYTES)
        )
        world.deliver(NEXT_HOP, cell)


def _links(world: RelayWorld, src: ByteSource) -> None:
    """A link comes up, a dial fails, or a peer goes away; or the next hop stops answering."""
    event = src.u8() % 4
    if event == 0 and world.connects:
        world.relay.link_ready(world.connects.pop(0), world.now)
    elif event == 1 and world.connects:
        world.relay.link_failed(world.connects.pop(0), world.now)
    elif event == 2:
        world.relay.peer_disconnected(src.pick(PEERS), world.now)
    else:
        world.answers_creates = not world.answers_creates
    world.settle()


def _advance(world: RelayWorld, src: ByteSource) -> None:
    world.advance(src.pick((0.001, 0.1, 1.0, 10.0, 100.0, 5_000.0)) * (1 + src.u8() / 64))


OPERATIONS: tuple[Callable[[RelayWorld, ByteSource], None], ...] = (
    _open,
    _recognized,
    _opaque,
    _extend,
    _exit_message,
    _raw_cell,
    _destroy,
    _backward,
    _links,
    _advance,
)
"""The order is part of the corpus format: append, never reorder."""


def one_input(data: bytes) -> None:
    src = ByteSource(data)
    world = RelayWorld(_config(src))
    world.relay.link_ready(NEXT_HOP, 0.0)
    run_program(src, world, OPERATIONS, STEPS)
    world.advance(10.0)
