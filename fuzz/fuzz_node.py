"""A whole victim ``Node`` under a hostile, authenticated peer: the fuzzer writes a program.

Each input is a sequence of operations (see ``OPERATIONS``): frames sealed under the link's real
keys whose plaintext the fuzzer chooses outright, link messages on each overlay channel (gossip
RPCs raw or built from choices, stem messages, cells), CREATE / relay cells on circuits the
hostile peer built to the victim by hand (so relay plaintexts pass the digest check and reach
EXTEND, DATA and the exit), the same past the victim once such a circuit is extended to the
honest node (the victim is then its middle relay, the honest node its exit), backward cells on
circuits the victim built through the hostile peer (so they reach its circuit client as
recognized), signed announcements from the peer and its sybils, unsealed bytes, a reconnect,
local commands on both nodes, and the passing of time. ``node_world.World`` says what is
checked after each step; a victim that closes or bans the peer is behaving correctly.

It runs with the simulator's stand-in ML-DSA / ML-KEM (``murmur.sim.crypto_standin``): a real
handshake per input costs about 4 ms and would spend most of the campaign in OpenSSL, and
the post-quantum primitives are fuzzed with real keys in ``fuzz_wire`` (handshake targets).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable

from fuzz.hand_circuit import HandCircuit
from fuzz.node_world import HONEST_ADDRESS, World, identity, onion_keys
from fuzz.source import ByteSource, run_program
from murmur.base.errors import LocalProtocolError
from murmur.base.ids import NodeId
from murmur.node.config import DEFAULT_TOPICS
from murmur.node.node import ANNOUNCE_TOPIC
from murmur.overlay.announce import MAX_TTL_S, sign_announcement
from murmur.overlay.circuits.handshake import client_onionskin
from murmur.overlay.circuits.selection import NatType, NoCircuitAvailable, RelayCapacity
from murmur.overlay.routing import MessageType
from murmur.sim.crypto_standin import standin_crypto
from murmur.sim.node_host import WALL_CLOCK_AT_ZERO_S
from murmur.wire.cells import (
    CELL_BODY_BYTES,
    CELL_HEADER,
    MAX_MESSAGE_BYTES,
    Envelope,
    Extend,
    MessageKind,
    Onionskin,
    RelayAddress,
    RelayCommand,
    encode_relay_plaintext,
    extend_data,
    split_message,
)
from murmur.wire.envelope import Channel, wrap
from murmur.wire.gossip import (
    MESSAGE_ID_BYTES,
    Graft,
    IHave,
    IWant,
    Message,
    Prune,
    Rpc,
    Subscription,
    encode_rpc,
    message_id,
)

TOPICS = tuple(
    dict.fromkeys(
        (
            *DEFAULT_TOPICS,
            ANNOUNCE_TOPIC,
            MessageType.TRANSACTION.value,
            MessageType.SYNC_REQUEST.value,
            "unheard.of",
        )
    )
)
SYBILS = (3, 4, 5, 6)
"""Identities the hostile peer signs announcements with (3 is its own)."""
ADVANCES = (0.01, 0.2, 1.0, 5.0, 30.0, 120.0, 3_600.0, 7 * 86_400.0)
"""Time steps (seconds), times 1 to 5: the last passes an onion key's lifetime."""
BLOB_BYTES = 4096
STEPS = 64
"""Operations one input may run (keeps each execution short)."""


def _sealed_frame(world: World, src: ByteSource) -> None:
    if world.hostile.established:
        world.send_hostile(world.hostile.sealed(src.blob(BLOB_BYTES)))


def _message(world: World, src: ByteSource) -> None:
    _send(world, src.blob(BLOB_BYTES))


def _on_channel(world: World, src: ByteSource) -> None:
    _send(world, wrap(src.pick(tuple(Channel)), src.blob(BLOB_BYTES)))


def _send(world: World, payload: bytes) -> None:
    if world.hostile.established:
        world.send_hostile(world.hostile.message(payload, world.now))


def _gossip(world: World, src: ByteSource) -> None:
    """An RPC built from choices, so valid topics, ids and counts are easy to reach."""
    topic = functools.partial(src.pick, TOPICS)

    def ids() -> tuple[bytes, ...]:
        return tuple(_message_id(src) for _ in range(src.u8() % 4))

    rpc = Rpc(
        subscriptions=tuple(Subscription(topic(), bool(src.u8() & 1)) for _ in range(src.u8() % 3)),
        messages=tuple(Message(topic(), src.blob(512)) for _ in range(src.u8() % 3)),
        graft=tuple(Graft(topic()) for _ in range(src.u8() % 2)),
        prune=tuple(Prune(topic(), src.u16()) for _ in range(src.u8() % 2)),
        ihave=tuple(IHave(topic(), ids()) for _ in range(src.u8() % 2)),
        iwant=tuple(IWant(ids()) for _ in range(src.u8() % 2)),
    )
    _send(world, wrap(Channel.GOSSIP, encode_rpc(rpc)))


def _message_id(src: ByteSource) -> bytes:
    """The id of a small message the fuzzer may also publish, or 20 bytes of its own."""
    if src.u8() & 1:
        return src.take(MESSAGE_ID_BYTES).ljust(MESSAGE_ID_BYTES, b"\x00")
    return message_id(src.pick(TOPICS), bytes((src.u8(),)))


def _cell(world: World, src: ByteSource) -> None:
    """A raw cell on a circuit id of the hand circuits, the victim's own, or any."""
    known = [c.circ_id for c in world.circuits] + world.victim_circ_ids
    use_known = src.u8() & 1
    circ_id = src.pick(known) if known and use_known else src.uint(4)
    header = CELL_HEADER.pack(circ_id, src.u8())
    body = src.blob(CELL_BODY_BYTES).ljust(CELL_BODY_BYTES, b"\x00")
    _send(world, wrap(Channel.CIRCUIT, header + body))


def _open_circuit(world: World, src: ByteSource) -> None:
    world.open_circuit()


def _reaching(world: World, hop: int) -> list[HandCircuit]:
    """The hand circuits with a hop ``hop`` (0: the victim, 1: the honest node past it). With
    none past the victim, one is extended there first: coverage hardly rewards reaching the
    honest node (it runs the victim's code), so left to chance the ``_far_*`` operations
    seldom had a circuit to use (12 of 733 minimized inputs sent a cell past the victim)."""
    if hop and not any(c.hops > hop for c in world.circuits):
        world.extend_past_victim(0)
    return [c for c in world.circuits if c.hops > hop]


def _relay(world: World, src: ByteSource, hop: int = 0) -> None:
    """A relay plaintext hop ``hop`` recognizes: a relay command and data, or raw bytes."""
    circuits = _reaching(world, hop)
    if not circuits:
        return
    circuit = src.pick(circuits)
    if src.u8() & 1:
        plaintext = bytes(encode_relay_plaintext(src.pick(tuple(RelayCommand)), src.blob(512)))
    else:
        plaintext = src.blob(CELL_BODY_BYTES)
    _send(world, wrap(Channel.CIRCUIT, circuit.recognized_cell(plaintext, hop)))


def _opaque_relay(world: World, src: ByteSource) -> None:
    """A relay cell for a hop past the circuit's last: each hop forwards it if extended."""
    built = _reaching(world, 0)
    if built:
        cell = src.pick(built).opaque_cell(src.blob(CELL_BODY_BYTES))
        _send(world, wrap(Channel.CIRCUIT, cell))


def _exit_message(world: World, src: ByteSource, hop: int = 0) -> None:
    """A whole message for hop ``hop`` as exit: a publish or a request, cut into DATA cells,
    of which the fuzzer may drop one."""
    circuits = _reaching(world, hop)
    if not circuits:
        return
    circuit = src.pick(circuits)
    kind = src.pick(tuple(MessageKind))
    payload = _exit_payload(world, src, kind)
    padding = src.blob(1024)
    fragments = split_message(src.u16(), Envelope(kind, src.pick(TOPICS), payload).encode(padding))
    skip = src.u8() - 1  # 0: none
    for index, fragment in enumerate(fragments):
        if index != skip:
            plaintext = encode_relay_plaintext(RelayCommand.DATA, fragment.encode())
            _send(world, wrap(Channel.CIRCUIT, circuit.recognized_cell(bytes(plaintext), hop)))


def _exit_payload(world: World, src: ByteSource, kind: MessageKind) -> bytes:
    if kind is MessageKind.REQUEST and src.u8() & 1:  # a sync request for ids it may hold
        return b"".join(_message_id(src) for _ in range(1 + src.u8() % 4))
    return src.blob(min(MAX_MESSAGE_BYTES, 2 * BLOB_BYTES))


def _extend(world: World, src: ByteSource, hop: int = 0) -> None:
    """EXTEND from hop ``hop`` to the honest node (a real onionskin for its onion key, whose
    secrets are thrown away), the victim, the hostile peer, or a stranger, at a chosen
    address. Past the victim each of these is refused (a loop) or fails to connect."""
    circuits = _reaching(world, hop)
    if not circuits:
        return
    circuit = src.pick(circuits)
    choice = src.u8() % 4
    stranger = choice == 3
    target = NodeId(src.take(32).ljust(32, b"\x00")) if stranger else world.peers()[choice]
    if target == world.honest.node_id and src.u8() & 1:
        keys = world.honest.private.onion_keys.current.public
        skin, _ = client_onionskin(target, keys, x25519_seed=b"\x05" * 32)
    else:
        skin = Onionskin(src.take(32).ljust(32, b"\x00"), bytes(32), bytes(1568))
    address = RelayAddress(HONEST_ADDRESS.host, HONEST_ADDRESS.port)
    if src.u8() & 1:
        address = _address(src)
    parts = extend_data(Extend(target, address, skin))
    for data in parts[: 1 + src.u8() % len(parts)]:
        plaintext = encode_relay_plaintext(RelayCommand.EXTEND, data)
        _send(world, wrap(Channel.CIRCUIT, circuit.recognized_cell(bytes(plaintext), hop)))


def _address(src: ByteSource) -> RelayAddress:
    """On loopback's own /16s (where the world's nodes are), any IPv4, or any IPv6."""
    family = src.u8() % 3
    if family == 0:
        host = f"127.{src.u8()}.{src.u8()}.1"
    else:
        size = 4 if family == 1 else 16
        host = str(ipaddress.ip_address(src.take(size).ljust(size, b"\x00")))
    return RelayAddress(host, 1 + src.u16() % 0xFFFF)


def _announcement(world: World, src: ByteSource) -> None:
    """A correctly signed announcement by the hostile peer or one of its sybils, with chosen
    address, capacity, sequence and lifetime, published to the victim. The sequence is an
    issue time up to about 9 hours either side of the victim's wall clock, in whole seconds
    (the choice read as a signed 16-bit number): small choices give fresh records, as they
    did when the sequence was the choice itself, and the rest records from the future and
    past ones, stale when their lifetime is short."""
    who = src.pick(SYBILS)
    wall_ms = round((world.now + WALL_CLOCK_AT_ZERO_S) * 1000)
    announcement = sign_announcement(
        identity(who),
        address=_address(src),
        onion_keys=onion_keys(who).public,
        capacity=RelayCapacity(src.u16() * 64, src.u8() / 255, src.pick(tuple(NatType)), 0.1),
        sequence=wall_ms + _signed16(src.u16()) * 1000,
        ttl_s=1 + src.u16() * 2 % MAX_TTL_S,
    )
    rpc = Rpc(messages=(Message(ANNOUNCE_TOPIC, announcement.encode()),))
    _send(world, wrap(Channel.GOSSIP, encode_rpc(rpc)))


def _signed16(value: int) -> int:
    return value - 0x10000 if value & 0x8000 else value


def _unsealed(world: World, src: ByteSource) -> None:
    world.send_hostile(src.blob(256))


def _reconnect(world: World, src: ByteSource) -> None:
    world.reconnect_hostile(drop_old=not src.u8() & 1)


def _advance(world: World, src: ByteSource) -> None:
    world.advance(src.pick(ADVANCES) * (1 + src.u8() / 64))


def _backward(world: World, src: ByteSource) -> None:
    """A backward cell from the hostile peer as first hop of one of the victim's circuits,
    recognized by the victim's client as coming from that hop."""
    circuits = sorted(world.hop.layers)
    if circuits:
        cell = world.hop.backward_cell(
            src.pick(circuits), src.pick(tuple(RelayCommand)), src.blob(CELL_BODY_BYTES)
        )
        _send(world, wrap(Channel.CIRCUIT, cell))


def _extend_past_victim(world: World, src: ByteSource) -> None:
    """A circuit through the victim to the honest node in one operation (its second hop's
    secrets kept, unlike ``_extend``'s), which the ``_far_*`` operations then address."""
    world.extend_past_victim(src.u8())


_far_relay = functools.partial(_relay, hop=1)
_far_exit_message = functools.partial(_exit_message, hop=1)
_far_extend = functools.partial(_extend, hop=1)


def _local(world: World, src: ByteSource) -> None:
    """What the nodes' own users do meanwhile (their documented local errors are fine)."""
    victim, now, data = world.victim, world.now, src.blob(512) or b"\x00"
    command = src.u8() % 5
    try:
        if command == 0:
            victim.publish(src.pick(DEFAULT_TOPICS), data, now)
        elif command == 1:
            victim.send_private(MessageType.TRANSACTION.value, data, now)
        elif command == 2:
            victim.request_private(MessageType.SYNC_REQUEST.value, _message_id(src), now)
        elif command == 3:
            victim.send_stem(MessageType.TRANSACTION.value, data, now)
        else:
            world.honest.publish(src.pick(DEFAULT_TOPICS), data, now)
    except (LocalProtocolError, NoCircuitAvailable):
        pass
    world.settle()


OPERATIONS: tuple[Callable[[World, ByteSource], None], ...] = (
    _sealed_frame,
    _message,
    _on_channel,
    _gossip,
    _cell,
    _open_circuit,
    _relay,
    _opaque_relay,
    _exit_message,
    _extend,
    _announcement,
    _unsealed,
    _reconnect,
    _advance,
    _local,
    _backward,
    _extend_past_victim,
    _far_relay,
    _far_exit_message,
    _far_extend,
)
"""The order is part of the corpus format: append, never reorder."""


def one_input(data: bytes) -> None:
    src = ByteSource(data)
    with standin_crypto():
        world = World()
        run_program(src, world, OPERATIONS, STEPS)
        world.advance(2.0)
