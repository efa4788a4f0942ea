"""One CircuitRelay driven by hand: hostile cells, extension rules, exits, limits, timers."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.ids import NodeId
from murmur.overlay.circuits import relay as relay_module
from murmur.overlay.circuits.config import RelayConfig
from murmur.overlay.circuits.events import ConnectTo, OnionKeysRotated, PublishFromExit, SendCell
from murmur.overlay.circuits.handshake import HopKeys, client_finish, client_onionskin
from murmur.overlay.circuits.ids import CircuitIds
from murmur.overlay.circuits.layers import OriginLayers, RelayLayer
from murmur.overlay.circuits.onion_keys import OnionKeyPair, OnionKeyRing
from murmur.overlay.circuits.path_bias import PathBiasConfig, RelayedOutcomes
from murmur.overlay.circuits.relay import CircuitRelay
from murmur.overlay.shaping import DelayRange
from murmur.sim.rng import SeededRng
from murmur.wire.cells import (
    CELL_BODY_BYTES,
    CELL_BYTES,
    CREATE_BYTES,
    CREATE_CELLS,
    CREATE_CHUNK_BYTES,
    ONIONSKIN_BYTES,
    CellCommand,
    Created,
    DestroyReason,
    Envelope,
    Extend,
    Fragment,
    MessageKind,
    Onionskin,
    RelayAddress,
    RelayCommand,
    RelayMessage,
    TruncateReason,
    cells_for,
    decode_cell,
    decode_create_body,
    decode_destroy,
    decode_relay_plaintext,
    decode_truncated,
    encode_cell,
    encode_reason,
    extend_data,
    split_message,
    unpad_message,
)

RELAY_ID = NodeId(b"\x55" * 32)
PEER = NodeId(b"\x11" * 32)
OTHER = NodeId(b"\x22" * 32)
TARGET = NodeId(b"\x99" * 32)
PAIR = OnionKeyPair.generate(SeededRng(42))
CLOSE = encode_reason(DestroyReason.REQUESTED)


@dataclass
class Setup:
    relay: CircuitRelay
    published: list[tuple[str, bytes]] = field(default_factory=list)


def make_relay(
    config: RelayConfig | None = None,
    valid: bool = True,
    relayed: RelayedOutcomes | None = None,
) -> Setup:
    published: list[tuple[str, bytes]] = []

    def validate(topic: str, payload: bytes) -> bool:
        published.append((topic, payload))
        return valid

    relay = CircuitRelay(
        node_id=RELAY_ID,
        onion_keys=OnionKeyRing(PAIR, now=0.0),
        rng=SeededRng(1),
        validate=validate,
        answer=lambda topic, payload: b"answer to " + payload,
        config=config,
        relayed=relayed,
    )
    return Setup(relay, published)


class HandOrigin:
    """A one-hop circuit to the relay, built with the pure handshake steps."""

    def __init__(self, relay: CircuitRelay, peer: NodeId = PEER, seed: int = 2) -> None:
        rng = SeededRng(seed)
        self.relay, self.peer = relay, peer
        self.extended_with: Onionskin | None = None
        self.circ_id = CircuitIds(peer).allocate(relay.node_id, rng)
        skin, pending = client_onionskin(
            relay.node_id, PAIR.public, x25519_seed=rng.random_bytes(32)
        )
        for cell_bytes in _create_cells(self.circ_id, skin.encode()):
            relay.receive_cell(peer, cell_bytes, 0.0)
        (action,) = relay.drain_actions()
        assert isinstance(action, SendCell) and action.peer == peer
        cell = decode_cell(action.cell)
        assert cell.command is CellCommand.CREATED
        self.layers = OriginLayers()
        self.layers.add_hop(client_finish(Created.decode_body(cell.body), pending).keys)

    def send(self, command: RelayCommand, data: bytes, now: float = 0.0) -> None:
        body = self.layers.wrap_forward(0, command, data)
        self.relay.receive_cell(self.peer, encode_cell(self.circ_id, CellCommand.RELAY, body), now)

    def extend(self, extend: Extend, now: float = 0.0) -> None:
        for data in extend_data(extend):
            self.send(RelayCommand.EXTEND, data, now)

    def open(self, cell_bytes: bytes) -> RelayMessage:
        cell = decode_cell(cell_bytes)
        assert cell.circ_id == self.circ_id and cell.command is CellCommand.RELAY
        return self.layers.unwrap_backward(cell.body)[1]


def _create_cells(circ_id: int, message: bytes) -> list[bytes]:
    """The CREATE cells carrying ``message`` (an onionskin, or hostile bytes as long)."""
    padded = message + bytes(CREATE_BYTES - len(message))
    chunks = [
        padded[i : i + CREATE_CHUNK_BYTES] for i in range(0, CREATE_BYTES, CREATE_CHUNK_BYTES)
    ]
    return [
        encode_cell(circ_id, CellCommand.CREATE, Fragment(0, i, len(chunks), c).encode())
        for i, c in enumerate(chunks)
    ]


def _cells(relay: CircuitRelay) -> list[SendCell]:
    actions = relay.drain_actions()
    assert all(isinstance(a, SendCell) for a in actions)
    return actions  # type: ignore[return-value]


def _publish(topic: str, payload: bytes) -> list[bytes]:
    env = Envelope(MessageKind.PUBLISH, topic, payload).encode()
    return [f.encode() for f in split_message(1, env)]


def test_cells_for_unknown_circuits_are_dropped_and_counted() -> None:
    s = make_relay()
    s.relay.receive_cell(PEER, encode_cell(77, CellCommand.RELAY, b"\x01" * 100), 0.0)
    s.relay.receive_cell(PEER, encode_cell(78, CellCommand.DESTROY, b"\x01"), 0.0)
    assert s.relay.drain_actions() == []
    assert s.relay.counters.get("drop_unknown_circuit") == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encode_cell(5, CellCommand.RELAY, b"")[:-1], "drop_bad_cell_size"),
        (b"", "drop_bad_cell_size"),
        (
            encode_cell(5, CellCommand.RELAY, b"")[:4] + b"\x07" + bytes(CELL_BYTES - 5),
            "drop_bad_cell_command",
        ),
        (bytes(CELL_BYTES), "drop_bad_circ_id"),
    ],
)
def test_truncated_and_malformed_cells_are_dropped(data: bytes, reason: str) -> None:
    s = make_relay()
    s.relay.receive_cell(PEER, data, 0.0)
    assert s.relay.drain_actions() == []
    assert s.relay.counters.get(reason) == 1


def test_corrupted_relay_cell_destroys_its_circuit() -> None:
    s = make_relay()
    origin = HandOrigin(s.relay)
    body = bytearray(origin.layers.wrap_forward(0, RelayCommand.DATA, _publish("t", b"x")[0]))
    body[100] ^= 0x80
    s.relay.receive_cell(PEER, encode_cell(origin.circ_id, CellCommand.RELAY, bytes(body)), 0.0)
    (destroy,) = _cells(s.relay)
    cell = decode_cell(destroy.cell)
    assert destroy.peer == PEER and cell.command is CellCommand.DESTROY
    assert decode_destroy(cell.body) is DestroyReason.PROTOCOL
    assert s.relay.counters.get("drop_unrecognized") == 1
    assert s.relay.circuit_count == 0 and s.published == []


def test_create_in_the_wrong_half_of_the_id_space_is_dropped() -> None:
    s = make_relay()
    own_id = CircuitIds(RELAY_ID).allocate(PEER, SeededRng(1))
    s.relay.receive_cell(PEER, encode_cell(own_id, CellCommand.CREATE, b""), 0.0)
    assert s.relay.drain_actions() == []
    assert s.relay.counters.get("drop_bad_circ_id") == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\0" * 32 + b"x" * 1600, DestroyReason.UNKNOWN_KEY),
        (PAIR.key_id + b"x" * 1600 + b"\x01", DestroyReason.PROTOCOL),
        (PAIR.key_id + bytes(32) + b"c" * 1568, DestroyReason.PROTOCOL),
    ],
)
def test_bad_create_is_answered_with_destroy(body: bytes, reason: DestroyReason) -> None:
    s = make_relay()
    circ_id = CircuitIds(PEER).allocate(RELAY_ID, SeededRng(3))
    for cell_bytes in _create_cells(circ_id, body):
        s.relay.receive_cell(PEER, cell_bytes, 0.0)
    (destroy,) = _cells(s.relay)
    assert decode_destroy(decode_cell(destroy.cell).body) is reason
    assert s.relay.circuit_count == 0


def _skin_cells(seed: int, circ_id: int) -> list[bytes]:
    skin, _ = client_onionskin(RELAY_ID, PAIR.public, x25519_seed=bytes([seed]) * 32)
    return _create_cells(circ_id, skin.encode())


def test_a_create_is_answered_once_its_last_cell_is_in() -> None:
    s = make_relay()
    circ_id = CircuitIds(PEER).allocate(RELAY_ID, SeededRng(3))
    cells = _skin_cells(1, circ_id)
    for cell_bytes in cells[:-1]:
        s.relay.receive_cell(PEER, cell_bytes, 0.0)
    assert s.relay.drain_actions() == [] and s.relay.circuit_count == 0
    assert s.relay.next_deadline() == pytest.approx(s.relay.config.create_timeout_s)
    s.relay.receive_cell(PEER, cells[-1], 0.1)
    (created,) = _cells(s.relay)
    assert decode_cell(created.cell).command is CellCommand.CREATED
    assert s.relay.circuit_count == 1


def test_a_create_that_stops_halfway_times_out_with_destroy() -> None:
    s = make_relay()
    circ_id = CircuitIds(PEER).allocate(RELAY_ID, SeededRng(3))
    for cell_bytes in _skin_cells(1, circ_id)[:2]:
        s.relay.receive_cell(PEER, cell_bytes, 1.0)
    s.relay.handle_timer(1.0 + s.relay.config.create_timeout_s)
    (destroy,) = _cells(s.relay)
    assert decode_cell(destroy.cell).circ_id == circ_id
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.TIMEOUT
    assert s.relay.counters.get("create_reassembly_expired") == 1
    assert s.relay.next_deadline() == s.relay._rotate_at  # nothing pending any more


def test_create_cells_out_of_order_or_orphaned_are_refused_and_counted() -> None:
    s = make_relay()
    ids = CircuitIds(PEER)
    first, second = ids.allocate(RELAY_ID, SeededRng(3)), ids.allocate(RELAY_ID, SeededRng(4))
    cells = _skin_cells(1, first)
    s.relay.receive_cell(PEER, cells[0], 0.0)
    s.relay.receive_cell(PEER, cells[2], 0.0)  # skips index 1
    (destroy,) = _cells(s.relay)
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.PROTOCOL
    assert s.relay.counters.get("drop_bad_fragment") == 1
    s.relay.receive_cell(PEER, _skin_cells(1, second)[1], 0.0)  # continues nothing
    assert s.relay.drain_actions() == []
    assert s.relay.counters.get("drop_orphan_create") == 1


def test_partly_received_creates_are_bounded_per_peer_and_dropped_with_the_peer() -> None:
    s = make_relay(RelayConfig(max_pending_creates_per_peer=2))
    ids = CircuitIds(PEER)
    circ_ids = [ids.allocate(RELAY_ID, SeededRng(10 + i)) for i in range(3)]
    for circ_id in circ_ids:
        s.relay.receive_cell(PEER, _skin_cells(1, circ_id)[0], 0.0)
    (destroy,) = _cells(s.relay)
    assert decode_cell(destroy.cell).circ_id == circ_ids[2]
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.RESOURCE
    s.relay.peer_disconnected(PEER, 1.0)
    s.relay.receive_cell(PEER, _skin_cells(1, circ_ids[0])[1], 1.0)
    assert s.relay.counters.get("drop_orphan_create") == 1
    assert s.relay.next_deadline() == s.relay._rotate_at


def test_destroy_abandons_a_create_in_progress() -> None:
    s = make_relay()
    circ_id = CircuitIds(PEER).allocate(RELAY_ID, SeededRng(3))
    s.relay.receive_cell(PEER, _skin_cells(1, circ_id)[0], 0.0)
    s.relay.receive_cell(PEER, encode_cell(circ_id, CellCommand.DESTROY, b"\x01"), 0.0)
    assert s.relay.drain_actions() == []
    assert s.relay.counters.get("creates_abandoned") == 1
    assert s.relay.next_deadline() == s.relay._rotate_at


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 3),  # which circuit id
            st.integers(0, CREATE_CELLS),  # a cell of a real CREATE, or (CREATE_CELLS) garbage
            st.binary(max_size=CELL_BODY_BYTES),
        ),
        max_size=30,
    )
)
def test_any_sequence_of_create_cells_never_raises_and_leaves_nothing_behind(
    steps: list[tuple[int, int, bytes]],
) -> None:
    s = make_relay(RelayConfig(max_pending_creates_per_peer=2))
    ids = CircuitIds(PEER)
    circ_ids = [ids.allocate(RELAY_ID, SeededRng(20 + i)) for i in range(4)]
    real = [_skin_cells(7, c) for c in circ_ids]
    for which, index, garbage in steps:
        if index < CREATE_CELLS:
            data = real[which][index]
        else:
            data = encode_cell(circ_ids[which], CellCommand.CREATE, garbage)
        s.relay.receive_cell(PEER, data, 0.0)
        s.relay.drain_actions()
        assert len(s.relay._creates) <= 2
    s.relay.handle_timer(s.relay.config.create_timeout_s)
    assert not s.relay._creates and not s.relay._creates_per_peer


def test_an_extend_that_stops_halfway_destroys_its_circuit() -> None:
    s = make_relay()
    origin = HandOrigin(s.relay)
    skin, _ = client_onionskin(TARGET, PAIR.public, x25519_seed=b"\x01" * 32)
    data = extend_data(Extend(TARGET, RelayAddress("10.9.0.1", 7), skin))
    for part in data[:-1]:
        origin.send(RelayCommand.EXTEND, part, now=1.0)
    assert s.relay.drain_actions() == []
    s.relay.handle_timer(1.0 + s.relay.config.extend_timeout_s)
    (destroy,) = _cells(s.relay)
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.TIMEOUT
    assert s.relay.counters.get("extend_reassembly_expired") == 1
    assert s.relay.circuit_count == 0 and s.relay._reassembly_bytes == 0


def test_data_in_the_middle_of_an_extend_destroys_the_circuit() -> None:
    s = make_relay()
    origin = HandOrigin(s.relay)
    skin, _ = client_onionskin(TARGET, PAIR.public, x25519_seed=b"\x01" * 32)
    origin.send(
        RelayCommand.EXTEND, extend_data(Extend(TARGET, RelayAddress("10.9.0.1", 7), skin))[0]
    )
    origin.send(RelayCommand.DATA, _publish("t", b"x")[0])
    (destroy,) = _cells(s.relay)
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.PROTOCOL
    assert s.relay.counters.get("drop_bad_relay_command") == 1
    assert s.relay.circuit_count == 0 and s.relay._reassembly_bytes == 0


@pytest.mark.parametrize("target", [PEER, RELAY_ID])
def test_extend_loops_are_refused(target: NodeId) -> None:
    s = make_relay()
    origin = HandOrigin(s.relay)
    skin, _ = client_onionskin(target, PAIR.public, x25519_seed=b"\x01" * 32)
    origin.extend(Extend(target, RelayAddress("10.1.0.1", 1), skin))
    (reply,) = _cells(s.relay)
    message = origin.open(reply.cell)
    assert message.command is RelayCommand.TRUNCATED
    assert decode_truncated(message.data) is TruncateReason.LOOP
    assert s.relay.counters.get("extend_loop_refused") == 1


def _extend_to_target(s: Setup) -> HandOrigin:
    origin = HandOrigin(s.relay)
    skin, _ = client_onionskin(TARGET, PAIR.public, x25519_seed=b"\x01" * 32)
    origin.extended_with = skin
    origin.extend(Extend(TARGET, RelayAddress("10.9.0.1", 7), skin))
    return origin


def test_extend_to_a_new_node_dials_then_creates_with_a_fresh_id() -> None:
    s = make_relay()
    origin = _extend_to_target(s)
    assert s.relay.drain_actions() == [ConnectTo(TARGET, RelayAddress("10.9.0.1", 7))]
    s.relay.link_ready(TARGET, 0.1)
    creates = _cells(s.relay)
    assert len(creates) == CREATE_CELLS and {c.peer for c in creates} == {TARGET}
    cells = [decode_cell(c.cell) for c in creates]
    assert {(c.command, c.circ_id) for c in cells} == {(CellCommand.CREATE, cells[0].circ_id)}
    cell = cells[0]
    assert cell.circ_id != origin.circ_id
    onionskin = b"".join(decode_create_body(c.body).chunk for c in cells)
    assert Onionskin.decode_body(onionskin) == origin.extended_with
    assert s.relay.counters.get("links_opened_for_extend") == 1
    s.relay.receive_cell(TARGET, encode_cell(cell.circ_id, CellCommand.CREATED, b"y" * 64), 0.2)
    (extended,) = _cells(s.relay)
    message = origin.open(extended.cell)
    assert (message.command, message.data) == (RelayCommand.EXTENDED, b"y" * 64)


def test_extends_to_a_node_being_dialled_share_the_dial_and_are_counted() -> None:
    """A second EXTEND to TARGET while the first one's dial is under way asks for no second
    dial: it waits for the same link (counted ``extend_joined_dial``, the relay's only trace of
    it until the link is up), then both circuits send their CREATEs, each with its own id."""
    s = make_relay()
    _extend_to_target(s)
    assert s.relay.drain_actions() == [ConnectTo(TARGET, RelayAddress("10.9.0.1", 7))]
    second = HandOrigin(s.relay, OTHER, seed=3)
    skin, _ = client_onionskin(TARGET, PAIR.public, x25519_seed=b"\x02" * 32)
    second.extend(Extend(TARGET, RelayAddress("10.9.0.1", 7), skin), now=0.01)
    assert s.relay.drain_actions() == []
    assert s.relay.counters.get("links_opened_for_extend") == 1
    assert s.relay.counters.get("extend_joined_dial") == 1
    s.relay.link_ready(TARGET, 0.1)
    creates = _cells(s.relay)
    assert len(creates) == 2 * CREATE_CELLS and {c.peer for c in creates} == {TARGET}
    assert len({decode_cell(c.cell).circ_id for c in creates}) == 2


def test_every_whole_extend_is_counted_once_whatever_becomes_of_it() -> None:
    """``extend_requests`` moves once per EXTEND, at its last cell, before the relay decides
    anything: dialled, joining that dial, refused as a loop or for its rate, sent on at once
    over a link; never for a part, nor for a whole one that does not parse."""
    s = make_relay()
    address = RelayAddress("10.9.0.1", 7)

    def extend(peer: NodeId, seed: int, target: NodeId = TARGET) -> list[object]:
        """Sends an EXTEND on a new circuit; what the relay did with it."""
        origin = HandOrigin(s.relay, peer, seed=seed)
        skin, _ = client_onionskin(target, PAIR.public, x25519_seed=bytes([seed]) * 32)
        data = extend_data(Extend(target, address, skin))
        before = s.relay.counters.get("extend_requests")
        for part in data[:-1]:
            origin.send(RelayCommand.EXTEND, part)
        assert s.relay.counters.get("extend_requests") == before
        origin.send(RelayCommand.EXTEND, data[-1])
        assert s.relay.counters.get("extend_requests") == before + 1
        return list(s.relay.drain_actions())

    assert extend(PEER, 2) == [ConnectTo(TARGET, address)]  # dials TARGET
    assert extend(OTHER, 3) == []  # joins that dial
    assert len(extend(PEER, 4, target=PEER)) == 1  # a loop back to its predecessor: TRUNCATED
    s.relay.link_ready(TARGET, 0.1)
    s.relay.drain_actions()
    creates = extend(OTHER, 5)  # over the link now up: CREATE at once
    assert len(creates) == CREATE_CELLS
    assert s.relay.counters.get("extend_requests") == 4
    assert [
        s.relay.counters.get(name)
        for name in ("links_opened_for_extend", "extend_joined_dial", "extend_loop_refused")
    ] == [1, 1, 1]

    # a whole EXTEND whose padding is not zero: the circuit goes, the request is not counted
    origin = HandOrigin(s.relay, PEER, seed=6)
    skin, _ = client_onionskin(TARGET, PAIR.public, x25519_seed=b"\x06" * 32)
    data = extend_data(Extend(TARGET, address, skin))
    data[-1] = data[-1][:-1] + b"\x01"
    for part in data:
        origin.send(RelayCommand.EXTEND, part)
    (destroy,) = _cells(s.relay)
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.PROTOCOL
    assert s.relay.counters.get("drop_bad_padding") == 1
    assert s.relay.counters.get("extend_requests") == 4

    # refused for the predecessor's extension rate: counted too
    s = make_relay(RelayConfig(create_rate_per_s=0.001, create_burst=1))
    _extend_to_target(s)
    assert s.relay.counters.get("extend_rate_limited") == 1
    assert s.relay.counters.get("extend_requests") == 1


def test_extend_whose_dial_fails_is_truncated() -> None:
    s = make_relay()
    origin = _extend_to_target(s)
    s.relay.drain_actions()
    s.relay.link_failed(TARGET, 1.0)
    (reply,) = _cells(s.relay)
    assert decode_truncated(origin.open(reply.cell).data) is TruncateReason.CONNECT_FAILED


def test_a_dial_that_ends_after_its_extension_timed_out_leaves_the_next_extension_be() -> None:
    """The extension to TARGET times out while its dial is pending and the origin extends to
    OTHER instead: the late end of TARGET's dial, failed or up, is not OTHER's."""
    relayed = RelayedOutcomes(PathBiasConfig())
    s = make_relay(relayed=relayed)
    origin = _extend_to_target(s)
    s.relay.drain_actions()
    s.relay.handle_timer(s.relay.config.extend_timeout_s + 0.1)
    (timed_out,) = _cells(s.relay)
    assert decode_truncated(origin.open(timed_out.cell).data) is TruncateReason.TIMEOUT
    skin, _ = client_onionskin(OTHER, PAIR.public, x25519_seed=b"\x02" * 32)
    origin.extend(Extend(OTHER, RelayAddress("10.9.0.2", 7), skin), now=20.0)
    assert s.relay.drain_actions() == [ConnectTo(OTHER, RelayAddress("10.9.0.2", 7))]
    for end in (s.relay.link_failed, s.relay.link_ready):
        end(TARGET, 21.0)
        assert s.relay.drain_actions() == []  # no TRUNCATED, no CREATE to TARGET
    s.relay.link_ready(OTHER, 22.0)
    creates = _cells(s.relay)
    assert len(creates) == CREATE_CELLS and {c.peer for c in creates} == {OTHER}
    assert _tally(relayed) == (1.0, 0.0)  # the timeout only


def test_an_extension_that_ends_while_its_dial_is_pending_forgets_the_dial() -> None:
    """The node may never report on a dial (it joins one to a peer it keeps dialling for
    itself, which can stay down): extensions that time out or whose circuit is torn down
    meanwhile must not stay queued for that peer, or a predecessor extending there again
    and again would grow the relay's memory without bound and keep the peer "in use"."""
    s = make_relay()
    origin = _extend_to_target(s)
    assert s.relay.drain_actions() == [ConnectTo(TARGET, RelayAddress("10.9.0.1", 7))]
    s.relay.handle_timer(s.relay.config.extend_timeout_s + 0.1)
    (timed_out,) = _cells(s.relay)
    assert decode_truncated(origin.open(timed_out.cell).data) is TruncateReason.TIMEOUT
    assert TARGET not in s.relay.peers_in_use()
    again = HandOrigin(s.relay, seed=3)
    skin, _ = client_onionskin(TARGET, PAIR.public, x25519_seed=b"\x03" * 32)
    again.extend(Extend(TARGET, RelayAddress("10.9.0.1", 7), skin), now=21.0)
    # nothing waits on the old dial any more, so the new extension asks for one itself
    assert s.relay.drain_actions() == [ConnectTo(TARGET, RelayAddress("10.9.0.1", 7))]
    s.relay.receive_cell(PEER, encode_cell(again.circ_id, CellCommand.DESTROY, CLOSE), 22.0)
    assert s.relay.circuit_count == 1 and TARGET not in s.relay.peers_in_use()
    s.relay.link_ready(TARGET, 23.0)  # the dial ends at last: nothing left to send
    assert s.relay.drain_actions() == []


def test_extend_that_gets_no_created_times_out() -> None:
    s = make_relay()
    origin = _extend_to_target(s)
    s.relay.link_ready(TARGET, 0.0)
    s.relay.drain_actions()
    s.relay.handle_timer(s.relay.config.extend_timeout_s + 0.1)
    destroy, truncated = _cells(s.relay)
    assert destroy.peer == TARGET and decode_cell(destroy.cell).command is CellCommand.DESTROY
    assert decode_truncated(origin.open(truncated.cell).data) is TruncateReason.TIMEOUT


def _answered_extension(relayed: RelayedOutcomes) -> tuple[Setup, HandOrigin, int]:
    """A relay that extended PEER's circuit to TARGET and got CREATED back."""
    s = make_relay(RelayConfig(max_circuit_lifetime_s=60), relayed=relayed)
    origin = _extend_to_target(s)
    s.relay.drain_actions()  # the dial
    s.relay.link_ready(TARGET, 0.0)
    next_id = decode_cell(_cells(s.relay)[-1].cell).circ_id
    s.relay.receive_cell(TARGET, encode_cell(next_id, CellCommand.CREATED, b"y" * 64), 0.1)
    s.relay.drain_actions()
    return s, origin, next_id


def _tally(relayed: RelayedOutcomes) -> tuple[float, float]:
    """(outcomes, ok) counted for PEER, the only predecessor in these tests."""
    counts = relayed._by_peer.get(PEER)
    return (0.0, 0.0) if counts is None else (counts.outcomes, counts.ok)


def test_each_extension_counts_one_outcome_for_the_baseline() -> None:
    """Path bias's relay-side baseline: an extension answered counts ok at once (closing it
    from the origin's side or by lifetime later changes nothing); one destroyed from beyond
    or whose next relay went away later takes that ok back; one refused, timed out or
    unreachable fails; our own refusals do not count."""
    ended_well = [
        lambda s, origin, next_id: origin.relay.receive_cell(
            PEER, encode_cell(origin.circ_id, CellCommand.DESTROY, CLOSE), 1.0
        ),
        lambda s, origin, next_id: s.relay.handle_timer(61.0),
    ]
    collapsed = [
        lambda s, origin, next_id: s.relay.receive_cell(
            TARGET, encode_cell(next_id, CellCommand.DESTROY, CLOSE), 1.0
        ),
        lambda s, origin, next_id: s.relay.peer_disconnected(TARGET, 1.0),
    ]
    for ok, endings in ((True, ended_well), (False, collapsed)):
        for end in endings:
            relayed = RelayedOutcomes(PathBiasConfig())
            s, origin, next_id = _answered_extension(relayed)
            assert _tally(relayed) == (1.0, 1.0)  # ok once answered
            end(s, origin, next_id)
            assert s.relay.circuit_count == 0
            assert _tally(relayed) == (1.0, 1.0 if ok else 0.0)
    # never answered: unreachable, refused, silent
    for fail in ("dial", "refused", "timeout"):
        relayed = RelayedOutcomes(PathBiasConfig())
        s = make_relay(relayed=relayed)
        origin = _extend_to_target(s)
        s.relay.drain_actions()
        if fail == "dial":
            s.relay.link_failed(TARGET, 1.0)
        else:
            s.relay.link_ready(TARGET, 0.0)
            next_id = decode_cell(_cells(s.relay)[-1].cell).circ_id
            if fail == "refused":
                destroy = encode_cell(next_id, CellCommand.DESTROY, CLOSE)
                s.relay.receive_cell(TARGET, destroy, 0.5)
            else:
                s.relay.handle_timer(s.relay.config.extend_timeout_s + 0.1)
        assert _tally(relayed) == (1.0, 0.0), fail
        # the circuit is still there, truncated: closing it now adds nothing
        origin.relay.receive_cell(
            PEER, encode_cell(origin.circ_id, CellCommand.DESTROY, CLOSE), 2.0
        )
        assert _tally(relayed) == (1.0, 0.0), fail
    # the next relay breaking the protocol collapses an answered extension
    relayed = RelayedOutcomes(PathBiasConfig())
    s, origin, next_id = _answered_extension(relayed)
    s.relay.receive_cell(TARGET, encode_cell(next_id, CellCommand.CREATED, b"y" * 64), 1.0)
    assert s.relay.circuit_count == 0 and _tally(relayed) == (1.0, 0.0)
    # the next relay going away while its CREATE is pending fails the extension
    relayed = RelayedOutcomes(PathBiasConfig())
    s = make_relay(relayed=relayed)
    _extend_to_target(s)
    s.relay.drain_actions()
    s.relay.link_ready(TARGET, 0.0)
    s.relay.peer_disconnected(TARGET, 0.5)
    assert _tally(relayed) == (1.0, 0.0)
    # a dial we never made (out of circuit links, or an address we do not dial) is ours
    relayed = RelayedOutcomes(PathBiasConfig())
    s = make_relay(relayed=relayed)
    origin = _extend_to_target(s)
    s.relay.drain_actions()
    s.relay.link_failed(TARGET, 1.0, ours=True)
    (reply,) = _cells(s.relay)
    assert decode_truncated(origin.open(reply.cell).data) is TruncateReason.CONNECT_FAILED
    assert _tally(relayed) == (0.0, 0.0)
    # our own refusal (the predecessor's extension rate) is the guard's fault, not the network's
    relayed = RelayedOutcomes(PathBiasConfig())
    s = make_relay(RelayConfig(create_rate_per_s=0.001, create_burst=1), relayed=relayed)
    origin = _extend_to_target(s)
    assert s.relay.counters.get("extend_rate_limited") == 1
    assert _tally(relayed) == (0.0, 0.0)


def test_exit_publishes_valid_payloads_once() -> None:
    s = make_relay()
    origin = HandOrigin(s.relay)
    payload = bytes(range(256)) * 20
    for part in _publish("transaction", payload):
        origin.send(RelayCommand.DATA, part)
    assert s.relay.drain_actions() == [PublishFromExit("transaction", payload)]
    assert s.relay.counters.get("exit_publications") == 1


def test_exit_drops_and_counts_invalid_payloads() -> None:
    s = make_relay(valid=False)
    origin = HandOrigin(s.relay)
    origin.send(RelayCommand.DATA, _publish("transaction", b"bad tx")[0])
    assert s.relay.drain_actions() == []
    assert s.relay.counters.get("exit_invalid_dropped") == 1


def test_exit_drops_cover_silently() -> None:
    s = make_relay()
    origin = HandOrigin(s.relay)
    origin.send(RelayCommand.COVER, b"")
    assert s.relay.drain_actions() == []
    assert s.relay.counters.get("exit_cover_dropped") == 1
    assert s.relay.circuit_count == 1


def test_exit_answers_requests_back_through_the_circuit() -> None:
    s = make_relay()
    origin = HandOrigin(s.relay)
    env = Envelope(MessageKind.REQUEST, "sync_request", b"q" * 3000).encode()
    for f in split_message(5, env):
        origin.send(RelayCommand.DATA, f.encode())
    replies = _cells(s.relay)
    assert len(replies) == cells_for(8192)  # a 3,010-byte answer is padded to the 8 KiB bucket
    messages = [origin.open(r.cell) for r in replies]
    assert all(m.command is RelayCommand.REPLY for m in messages)
    padded = b"".join(Fragment.decode(m.data).chunk for m in messages)
    assert len(padded) == 8192
    assert unpad_message(padded) == b"answer to " + b"q" * 3000


def test_exit_reassembly_expires() -> None:
    s = make_relay()
    origin = HandOrigin(s.relay)
    first = _publish("transaction", b"z" * 5000)[0]
    origin.send(RelayCommand.DATA, first, now=1.0)
    assert s.relay.next_deadline() == pytest.approx(1.0 + s.relay.config.exit_reassembly_timeout_s)
    s.relay.handle_timer(100.0)
    assert s.relay.counters.get("exit_reassembly_expired") == 1


def test_a_flooding_peer_is_delayed_and_cannot_starve_another() -> None:
    config = RelayConfig(cell_rate_per_s=10, cell_burst=8, max_queued_cells_per_peer=20)
    s = make_relay(config)
    flooder, honest = HandOrigin(s.relay, PEER, 2), HandOrigin(s.relay, OTHER, 3)
    for _ in range(24):  # its CREATE cells took four tokens of the burst of 8
        flooder.send(RelayCommand.COVER, b"")
    assert s.relay.counters.get("exit_cover_dropped") == 4
    assert s.relay.counters.get("cells_delayed") == 20
    assert s.relay.counters.get("drop_rate_limited") == 0
    flooder.send(RelayCommand.COVER, b"")
    assert s.relay.counters.get("drop_rate_limited") == 1
    destroy = _cells(s.relay)
    assert [d.peer for d in destroy] == [PEER]
    honest.send(RelayCommand.COVER, b"")
    assert s.relay.counters.get("exit_cover_dropped") == 5
    deadline = s.relay.next_deadline()
    assert deadline is not None and deadline < 1.0
    while (deadline := s.relay.next_deadline()) is not None and deadline < 100:
        s.relay.handle_timer(deadline)
    assert s.relay.counters.get("drop_unknown_circuit") == 20


def test_create_rate_limit_answers_destroy() -> None:
    s = make_relay(RelayConfig(create_rate_per_s=1, create_burst=1))
    HandOrigin(s.relay, PEER, 2)
    circ_id = CircuitIds(PEER).allocate(RELAY_ID, SeededRng(9))
    for cell_bytes in _create_cells(circ_id, bytes(ONIONSKIN_BYTES)):
        s.relay.receive_cell(PEER, cell_bytes, 0.0)
    (destroy,) = _cells(s.relay)  # refused at the first cell; the others are orphans
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.RATE_LIMITED
    assert s.relay.counters.get("drop_orphan_create") == CREATE_CELLS - 1


def test_a_peer_that_reconnects_keeps_its_spent_create_budget() -> None:
    """A new link must not buy a new burst of CREATEs (each costs the relay an X25519 and an
    ML-KEM decapsulation); a budget kept for a departed peer refills at its rate as before."""
    s = make_relay(RelayConfig(create_rate_per_s=0.1, create_burst=1))
    HandOrigin(s.relay, PEER, 2)  # spends the one CREATE of its burst
    s.relay.peer_disconnected(PEER, 1.0)
    s.relay.drain_actions()
    circ_id = CircuitIds(PEER).allocate(RELAY_ID, SeededRng(9))
    s.relay.receive_cell(PEER, _create_cells(circ_id, bytes(ONIONSKIN_BYTES))[0], 2.0)
    (destroy,) = _cells(s.relay)
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.RATE_LIMITED
    again = CircuitIds(PEER).allocate(RELAY_ID, SeededRng(4))
    for cell_bytes in _skin_cells(4, again):
        s.relay.receive_cell(PEER, cell_bytes, 12.0)  # ten seconds on: one more token
    (created,) = _cells(s.relay)
    assert decode_cell(created.cell).command is CellCommand.CREATED
    assert s.relay.counters.get("create_refused_rate_limited") == 1


def test_a_peer_that_reconnects_keeps_its_spent_cell_budget() -> None:
    """A new link must not buy a new burst of cells (each costs the relay a layer of crypto
    and a forwarded cell); the budget kept for a departed peer refills at its rate as
    before."""
    s = make_relay(RelayConfig(cell_rate_per_s=1, cell_burst=8))
    for circ_id in range(70, 78):  # the whole burst
        s.relay.receive_cell(PEER, encode_cell(circ_id, CellCommand.RELAY, b""), 0.0)
    assert s.relay.counters.get("drop_unknown_circuit") == 8
    s.relay.peer_disconnected(PEER, 0.5)
    s.relay.receive_cell(PEER, encode_cell(78, CellCommand.RELAY, b""), 0.5)
    assert s.relay.counters.get("cells_delayed") == 1  # half a token: it waits
    assert s.relay.next_deadline() == pytest.approx(1.0)
    s.relay.handle_timer(1.0)
    assert s.relay.counters.get("drop_unknown_circuit") == 9


def test_only_the_most_recently_departed_peers_keep_their_budgets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(relay_module, "DEPARTED_BUDGETS", 1)
    s = make_relay(RelayConfig(cell_rate_per_s=1, cell_burst=1))
    s.relay.receive_cell(PEER, encode_cell(70, CellCommand.RELAY, b""), 0.0)
    s.relay.peer_disconnected(PEER, 0.0)
    s.relay.receive_cell(OTHER, encode_cell(71, CellCommand.RELAY, b""), 0.0)
    s.relay.peer_disconnected(OTHER, 0.0)  # PEER's spent budgets make room for OTHER's
    s.relay.receive_cell(PEER, encode_cell(72, CellCommand.RELAY, b""), 0.0)
    s.relay.receive_cell(OTHER, encode_cell(73, CellCommand.RELAY, b""), 0.0)
    assert s.relay.counters.get("drop_unknown_circuit") == 3
    assert s.relay.counters.get("cells_delayed") == 1


def _visit(relay: CircuitRelay, index: int, cells: int, now: float) -> None:
    """A fresh identity sends ``cells`` cells (on circuits the relay does not know) and
    leaves."""
    fresh = NodeId(index.to_bytes(32, "big"))
    for circ_id in range(1, cells + 1):
        relay.receive_cell(fresh, encode_cell(circ_id, CellCommand.RELAY, b""), now)
    relay.peer_disconnected(fresh, now)
    relay.drain_actions()


def test_fresh_identities_that_spend_less_cannot_push_out_a_spent_create_budget() -> None:
    """A peer that left with its CREATEs spent has more than the table holds in fresh
    identities each spend a cell and leave: it comes back to its spent budget. Forgetting the
    least recently departed, it came back to a fresh burst of CREATEs."""
    s = make_relay(RelayConfig(create_rate_per_s=0.1, create_burst=1))
    HandOrigin(s.relay, PEER, 2)  # spends the one CREATE of its burst
    s.relay.peer_disconnected(PEER, 1.0)
    s.relay.drain_actions()
    for i in range(relay_module.DEPARTED_BUDGETS + 10):
        _visit(s.relay, 1000 + i, cells=1, now=1.0)
    assert len(s.relay._departed_budgets) == relay_module.DEPARTED_BUDGETS
    circ_id = CircuitIds(PEER).allocate(RELAY_ID, SeededRng(9))
    s.relay.receive_cell(PEER, _create_cells(circ_id, bytes(ONIONSKIN_BYTES))[0], 2.0)
    (destroy,) = _cells(s.relay)
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.RATE_LIMITED


def test_budgets_full_again_are_not_kept() -> None:
    """A departed peer whose budgets have refilled by the time it leaves is the same as a new
    one: nothing is kept for it."""
    s = make_relay(RelayConfig(cell_rate_per_s=1, cell_burst=8))
    s.relay.receive_cell(PEER, encode_cell(70, CellCommand.RELAY, b""), 0.0)
    s.relay.peer_disconnected(PEER, 1.0)  # the cell's token is back
    s.relay.receive_cell(OTHER, encode_cell(71, CellCommand.RELAY, b""), 0.0)
    s.relay.peer_disconnected(OTHER, 0.5)  # half a token short: kept
    assert list(s.relay._departed_budgets) == [OTHER]


def test_departed_budgets_stay_bounded_under_a_flood_of_spending_identities() -> None:
    """Fresh identities that each spend their whole cell burst before leaving fill the table
    but never grow it past its bound, and push out only budgets fuller than theirs: the peer
    whose CREATE takes longer to come back (10 s) than their cells (8 s) stays."""
    s = make_relay(
        RelayConfig(cell_rate_per_s=1, cell_burst=8, create_rate_per_s=0.1, create_burst=1)
    )
    HandOrigin(s.relay, PEER, 2)
    s.relay.peer_disconnected(PEER, 0.0)
    s.relay.drain_actions()
    for i in range(relay_module.DEPARTED_BUDGETS + 10):
        _visit(s.relay, 1000 + i, cells=8, now=0.0)
        assert len(s.relay._departed_budgets) <= relay_module.DEPARTED_BUDGETS
    assert len(s.relay._departed_budgets) == relay_module.DEPARTED_BUDGETS
    assert PEER in s.relay._departed_budgets


def test_per_peer_circuit_cap() -> None:
    s = make_relay(RelayConfig(max_circuits_per_peer=1))
    HandOrigin(s.relay, PEER, 2)
    HandOrigin(s.relay, OTHER, 3)
    circ_id = CircuitIds(PEER).allocate(RELAY_ID, SeededRng(9))
    s.relay.receive_cell(PEER, _create_cells(circ_id, b"")[0], 0.0)
    (destroy,) = _cells(s.relay)
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.RESOURCE


THIRD = NodeId(b"\x33" * 32)


def _create_from(s: Setup, peer: NodeId, seed: int) -> list[SendCell]:
    """What the relay answers a whole CREATE from ``peer``."""
    circ_id = CircuitIds(peer).allocate(RELAY_ID, SeededRng(seed))
    for cell_bytes in _skin_cells(seed, circ_id):
        s.relay.receive_cell(peer, cell_bytes, 0.0)
    return _cells(s.relay)


def test_a_full_table_makes_room_from_the_peer_holding_the_most() -> None:
    """A few peers, each within its cap and create rate, fill the table with idle circuits
    (an hour's lifetime each): a newcomer's CREATE evicts the largest holder's oldest circuit
    instead of being refused, down to an even share."""
    s = make_relay(RelayConfig(max_circuits=6, max_circuits_per_peer=4))
    hostile = [HandOrigin(s.relay, PEER, seed) for seed in range(2, 6)]
    HandOrigin(s.relay, OTHER, 6)
    HandOrigin(s.relay, OTHER, 7)
    destroy, created = _create_from(s, THIRD, 8)
    assert (destroy.peer, decode_cell(destroy.cell).circ_id) == (PEER, hostile[0].circ_id)
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.RESOURCE
    assert (created.peer, decode_cell(created.cell).command) == (THIRD, CellCommand.CREATED)
    assert s.relay.counters.get("circuits_evicted") == 1
    destroy, _ = _create_from(s, THIRD, 9)  # PEER 3, OTHER 2, THIRD 1: PEER again
    assert (destroy.peer, decode_cell(destroy.cell).circ_id) == (PEER, hostile[1].circ_id)
    # PEER, OTHER and THIRD now hold 2 each: no one holds more than a newcomer would
    (refused,) = _create_from(s, THIRD, 10)
    assert refused.peer == THIRD
    assert decode_destroy(decode_cell(refused.cell).body) is DestroyReason.RESOURCE
    assert s.relay.counters.get("circuits_evicted") == 2 and s.relay.circuit_count == 6


def test_circuits_expire_at_the_relay() -> None:
    s = make_relay(RelayConfig(max_circuit_lifetime_s=60))
    HandOrigin(s.relay)
    s.relay.handle_timer(61.0)
    (destroy,) = _cells(s.relay)
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.TIMEOUT
    assert s.relay.circuit_count == 0


def test_onion_keys_rotate_and_the_old_key_works_during_grace() -> None:
    config = RelayConfig(onion_key_lifetime_s=100, onion_key_grace_s=50, max_circuit_lifetime_s=1e9)
    s = make_relay(config)
    assert s.relay.next_deadline() == 100
    s.relay.handle_timer(100.0)
    (rotated,) = s.relay.drain_actions()
    assert isinstance(rotated, OnionKeysRotated) and rotated.public != PAIR.public
    HandOrigin(s.relay)  # built with the previous key, accepted during grace
    assert s.relay.circuit_count == 1


def test_the_old_onion_key_is_dropped_when_its_grace_ends_without_any_create() -> None:
    """Its secrets decrypt recorded handshakes: they must go at the end of the grace period
    even if no CREATE naming an unknown key ever arrives to trigger the clean-up."""
    config = RelayConfig(onion_key_lifetime_s=100, onion_key_grace_s=50, max_circuit_lifetime_s=1e9)
    s = make_relay(config)
    s.relay.handle_timer(100.0)
    s.relay.drain_actions()
    assert s.relay.onion_keys.find(PAIR.key_id, 149.0) is not None
    assert s.relay.next_deadline() == 150.0  # the grace deadline, before the next rotation
    s.relay.handle_timer(150.0)
    assert s.relay.onion_keys.previous_until is None
    assert s.relay.next_deadline() == 200.0


def test_disconnect_tears_down_with_destroy_on_the_other_leg() -> None:
    s = make_relay()
    _extend_to_target(s)
    s.relay.link_ready(TARGET, 0.0)
    s.relay.drain_actions()
    s.relay.peer_disconnected(PEER, 1.0)
    (destroy,) = _cells(s.relay)
    assert destroy.peer == TARGET
    assert decode_destroy(decode_cell(destroy.cell).body) is DestroyReason.HOP_GONE
    assert s.relay.circuit_count == 0


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(min_size=0, max_size=CELL_BODY_BYTES),
    command=st.sampled_from([int(c) for c in CellCommand]) | st.integers(0, 255),
    use_circuit=st.booleans(),
)
def test_garbage_cells_are_counted_never_raised(
    body: bytes, command: int, use_circuit: bool
) -> None:
    s = make_relay()
    origin = HandOrigin(s.relay)
    circ_id = origin.circ_id if use_circuit else 12345
    data = circ_id.to_bytes(4, "big") + bytes([command]) + body
    before = s.relay.counters.snapshot()
    s.relay.receive_cell(PEER, data + bytes(max(0, CELL_BYTES - len(data))), 0.0)
    after = s.relay.counters.snapshot()
    counted = [name for name, count in after.items() if count != before.get(name, 0)]
    # Counted: dropped for its reason, or what a cell that happens to be valid did (a DESTROY
    # of the peer's own circuit with a known reason closes it).
    assert counted
    assert set(counted) <= {"circuits_closed", "circuits_destroyed_by_peer"} or any(
        name.startswith("drop_") for name in counted
    ), counted
    s.relay.drain_actions()


def test_timers_of_closed_circuits_are_purged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, "TIMER_COMPACT_MIN", 4)
    s = make_relay()
    for seed in range(40):
        HandOrigin(s.relay, PEER, seed)
        s.relay.peer_disconnected(PEER, 0.0)
    assert s.relay.circuit_count == 0
    assert len(s.relay._timers) <= relay_module.TIMER_COMPACT_FACTOR * 4 + 1


def test_exit_counts_and_drops_a_message_whose_padding_length_overruns_it() -> None:
    s = make_relay()
    origin = HandOrigin(s.relay)
    envelope = Envelope(MessageKind.PUBLISH, "transaction", b"tx").encode(b"\x00" * 100)
    overrun = (len(envelope) - 3).to_bytes(4, "big") + envelope[4:]
    origin.send(RelayCommand.DATA, split_message(1, overrun)[0].encode())
    assert s.relay.drain_actions() == []
    assert s.relay.counters.get("drop_bad_padding_length") == 1
    assert s.relay.circuit_count == 1  # the cells were in order: the circuit stays
    for part in _publish("transaction", b"next"):
        origin.send(RelayCommand.DATA, part)
    assert s.relay.drain_actions() == [PublishFromExit("transaction", b"next")]


def test_one_peer_cannot_fill_the_reassembly_budget_for_everyone() -> None:
    """Unfinished multi-cell messages from one previous hop stop at its share; another
    peer's messages are still reassembled, and a one-cell message passes even a full share."""
    config = RelayConfig(max_reassembly_bytes=40_000, max_reassembly_bytes_per_peer=10_000)
    s = make_relay(config)
    hostile = [HandOrigin(s.relay, PEER, seed) for seed in range(2, 10)]
    unfinished = Envelope(MessageKind.PUBLISH, "transaction", bytes(4_000)).encode()
    for origin in hostile:
        for fragment in split_message(1, unfinished)[:4]:  # 4 of 8 cells, about 2 kB held
            origin.send(RelayCommand.DATA, fragment.encode())
    refused = [c for c in _cells(s.relay) if decode_cell(c.cell).command is CellCommand.DESTROY]
    assert len(refused) == 4  # the fifth circuit's first cell found the share full
    assert s.relay.counters.get("drop_reassembly_peer_budget") == 4
    assert 8_000 <= s.relay._reassembly_bytes <= 10_000
    honest = HandOrigin(s.relay, OTHER, 11)
    payload = bytes(range(256)) * 20  # ten cells
    for part in _publish("transaction", payload):
        honest.send(RelayCommand.DATA, part)
    assert s.relay.drain_actions() == [PublishFromExit("transaction", payload)]
    one_cell = Envelope(MessageKind.PUBLISH, "transaction", b"one cell").encode()
    (only,) = split_message(2, one_cell)
    hostile[0].send(RelayCommand.DATA, only.encode())
    assert s.relay.drain_actions() == [PublishFromExit("transaction", b"one cell")]


NEXT_KEYS = HopKeys(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, b"\x04" * 32)


def _middle(config: RelayConfig) -> tuple[Setup, HandOrigin, int]:
    """A relay extended to TARGET, and an origin with a second layer (TARGET's, NEXT_KEYS)
    that the relay cannot remove: its cells are forwarded, as at a middle hop."""
    s = make_relay(config)
    origin = _extend_to_target(s)
    s.relay.drain_actions()  # ConnectTo
    s.relay.link_ready(TARGET, 0.0)
    create, *_ = _cells(s.relay)
    next_id = decode_cell(create.cell).circ_id
    s.relay.receive_cell(TARGET, encode_cell(next_id, CellCommand.CREATED, b"y" * 64), 0.0)
    s.relay.drain_actions()
    origin.layers.add_hop(NEXT_KEYS)
    return s, origin, next_id


def _send_through(s: Setup, origin: HandOrigin, data: bytes, now: float) -> None:
    body = origin.layers.wrap_forward(1, RelayCommand.DATA, data)
    s.relay.receive_cell(PEER, encode_cell(origin.circ_id, CellCommand.RELAY, body), now)


def test_forward_delay_holds_cells_within_its_range_and_keeps_their_order() -> None:
    s, origin, next_id = _middle(RelayConfig(forward_delay=DelayRange(0.01, 0.05)))
    for i in range(50):
        _send_through(s, origin, bytes([i]) * 10, 1.0 + i * 0.001)
    assert s.relay.drain_actions() == []
    released: list[tuple[float, bytes]] = []
    while (deadline := s.relay.next_deadline()) is not None and deadline < 10:
        s.relay.handle_timer(deadline)
        released += [(deadline, a.cell) for a in _cells(s.relay)]
    assert len(released) == 50
    assert all(decode_cell(cell).circ_id == next_id for _, cell in released)
    target = RelayLayer(NEXT_KEYS)  # fails to recognize any cell that arrives out of order
    for i, (_, cell) in enumerate(released):
        plain, mine = target.unwrap_forward(decode_cell(cell).body)
        assert mine and decode_relay_plaintext(plain).data == bytes([i]) * 10
    waits = [t - (1.0 + i * 0.001) for i, (t, _) in enumerate(released)]
    assert min(waits) >= 0.01 and max(waits) <= 0.05 + 0.049
    assert s.relay.counters.get("cells_held") == 50


def test_each_cell_apart_from_the_others_is_held_for_its_own_uniform_draw() -> None:
    """Cells further apart than the longest delay, so keeping their order never lengthens a
    wait: each is held for a fresh draw from the whole range (a constant delay would shift
    timings, not hide them)."""
    s, origin, _ = _middle(RelayConfig(forward_delay=DelayRange(0.01, 0.05)))
    waits = []
    for i in range(300):
        sent_at = 1.0 + i * 0.06
        _send_through(s, origin, b"x", sent_at)
        deadline = s.relay.next_deadline()
        assert deadline is not None and s.relay.drain_actions() == []
        s.relay.handle_timer(deadline)
        assert len(_cells(s.relay)) == 1
        waits.append(deadline - sent_at)
    assert min(waits) >= 0.01 and max(waits) <= 0.05
    assert min(waits) < 0.012 and max(waits) > 0.048
    quartiles = sorted(waits)[75], sorted(waits)[225]
    assert quartiles[0] == pytest.approx(0.02, abs=0.003)
    assert quartiles[1] == pytest.approx(0.04, abs=0.003)


def test_held_cells_of_a_torn_down_circuit_are_dropped_and_the_hold_is_bounded() -> None:
    config = RelayConfig(forward_delay=DelayRange(1.0, 1.0), max_delayed_cells=3)
    s, origin, _ = _middle(config)
    for _ in range(4):  # the fourth finds the hold full
        _send_through(s, origin, b"x", 0.0)
    assert s.relay.counters.get("drop_delay_queue_full") == 1
    assert s.relay.circuit_count == 0
    commands = [decode_cell(a.cell).command for a in _cells(s.relay)]
    assert commands == [CellCommand.DESTROY, CellCommand.DESTROY]
    s.relay.handle_timer(2.0)
    assert s.relay.drain_actions() == []
    assert s.relay.counters.get("held_cells_dropped") == 3
