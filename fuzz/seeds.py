"""Seed corpora from valid encodings: the protocol test vectors and values built here.

``python -m fuzz.seeds DIR`` writes ``DIR/<harness>/<name>`` for every harness. A seed for
``fuzz_wire`` is its target's index followed by the input; a seed for ``fuzz_node`` or
``fuzz_control_api`` is a program in that harness's format, written with :class:`Program`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fuzz import fuzz_control_api, fuzz_node, fuzz_relay, fuzz_wire
from murmur.crypto.identity import Identity
from murmur.overlay.announce import sign_announcement
from murmur.overlay.circuits.onion_keys import OnionKeyPair
from murmur.overlay.circuits.selection import NatType, RelayCapacity
from murmur.overlay.routing import MessageType
from murmur.sim.rng import SeededRng
from murmur.wire.cells import (
    CellCommand,
    DestroyReason,
    Envelope,
    Fragment,
    MessageKind,
    RelayAddress,
    RelayCommand,
    encode_cell,
    encode_reason,
    encode_relay_plaintext,
)
from murmur.wire.envelope import Channel, wrap
from murmur.wire.gossip import message_id
from murmur.wire.link import FrameType, encode_frame_plaintext, encode_record

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors"

Operation = Callable[..., None]


def _vectors(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


def u8(value: int) -> bytes:
    return bytes((value,))


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def blob(data: bytes) -> bytes:
    """What ``ByteSource.blob`` reads back as ``data`` (for data within its limit)."""
    return u16(len(data)) + data


class Program:
    """Operations of a harness, by function, with their encoded arguments."""

    def __init__(self, operations: tuple[Operation, ...]) -> None:
        self._operations = operations
        self._parts: list[bytes] = []

    def add(self, operation: Operation, *arguments: bytes) -> Program:
        self._parts.append(u8(self._operations.index(operation)) + b"".join(arguments))
        return self

    def encode(self) -> bytes:
        return b"".join(self._parts)


def _announcement() -> bytes:
    return sign_announcement(
        Identity.from_seed(b"\x04" * 32),
        address=RelayAddress("127.4.0.1", 7004),
        onion_keys=OnionKeyPair.generate(SeededRng(4)).public,
        capacity=RelayCapacity(40_000, 0.9, NatType.OPEN, 0.1),
        sequence=1,
        ttl_s=3600,
    ).encode()


def wire_seeds() -> Iterator[tuple[str, bytes]]:
    handshake = _vectors("handshake.json")
    circuits = _vectors("circuits.json")
    gossip = _vectors("gossip_rpc.json")
    stem = _vectors("stem.json")
    hs, onion, extend = circuits["handshake"], circuits["onion_cell"], circuits["extend"]

    def seed(index: int, name: str, data: bytes) -> tuple[str, bytes]:
        return f"{index:02d}_{name}", u8(index) + data

    yield seed(0, "hello", _hex(handshake["message1"]))
    yield seed(1, "reply", _hex(handshake["message2"]))
    yield seed(3, "ping", encode_frame_plaintext(FrameType.PING, bytes(8), padding=5))
    yield seed(4, "gossip", wrap(Channel.GOSSIP, _hex(stem["valid"][0]["encoded_hex"])))
    for i, vector in enumerate([*gossip["valid"], *gossip["invalid"]]):
        yield seed(5, f"rpc{i}", _hex(vector["encoded_hex"])[:4096])
    for i, vector in enumerate([*stem["valid"], *stem["invalid"]]):
        yield seed(6, f"stem{i}", _hex(vector["encoded_hex"]))
    create = [_hex(c) for c in hs["create_cells"]]
    for i, cell in enumerate([*create, _hex(onion["cell_hop1_receives"])]):
        yield seed(7, f"cell{i}", cell)
    yield seed(8, "onionskin", _hex(hs["onionskin"]))
    yield seed(9, "created", _hex(hs["created"]))
    yield seed(10, "destroy", encode_reason(DestroyReason.PROTOCOL) + bytes(40))
    yield seed(11, "relay_plaintext", _hex(onion["plaintext_at_hop3"]))
    for i, plaintext in enumerate(extend["plaintexts_at_hop1"]):
        yield seed(11, f"extend_plaintext{i}", _hex(plaintext))
    yield seed(12, "extend", _hex(extend["extend"]))
    yield seed(13, "extended", _hex(hs["created"]))
    yield seed(14, "truncated", u8(1))
    yield seed(15, "fragment", Fragment(7, 0, 1, b"chunk").encode())
    yield seed(16, "create_body", create[0][5:])
    yield seed(17, "extend_data", _hex(extend["relay_data"][0]))
    envelope = Envelope(MessageKind.PUBLISH, "transaction", b"tx").encode(b"pad")
    yield seed(18, "envelope", envelope)
    yield seed(19, "announcement", _announcement())
    yield seed(20, "onion_keys", _hex(hs["onion_public_keys"]))
    yield seed(21, "capacity", RelayCapacity(1, 0.5, NatType.OPEN, 0.5).encode())
    yield seed(22, "sync_response", bytes(20) + u16(0) + u16(2) + b"hi")
    yield seed(23, "diffusion", b"\x01\x00\x00\x00\x02tx")
    yield seed(24, "dandelion", b"\x01\x00\x00\x00\x02tx")
    yield seed(25, "link_hello", encode_record(_hex(handshake["message1"])))
    yield seed(26, "link_reply", encode_record(_hex(handshake["message2"])))
    yield seed(27, "relay_answer", _hex(hs["onionskin"]))
    yield seed(28, "client_finish", _hex(hs["created"]))
    yield seed(29, "request_head", b"POST /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(fuzz_wire.TARGETS) == 30


def node_seeds() -> Iterator[tuple[str, bytes]]:
    n = fuzz_node
    gossip = _vectors("gossip_rpc.json")
    stem = _vectors("stem.json")

    def program() -> Program:
        return Program(n.OPERATIONS)

    for i, vector in enumerate(gossip["valid"]):
        rpc = _hex(vector["encoded_hex"])[:4096]
        yield f"gossip{i}", program().add(n._on_channel, u8(0), blob(rpc)).encode()
    for i, vector in enumerate(stem["valid"]):
        payload = blob(_hex(vector["envelope_hex"]))
        yield f"stem{i}", program().add(n._message, payload).add(n._advance, u8(3), u8(0)).encode()
    yield "gossip_built", program().add(n._gossip, bytes(range(1, 40))).encode()
    yield (
        "ping_frame",
        program()
        .add(n._sealed_frame, blob(encode_frame_plaintext(FrameType.PING, bytes(8))))
        .encode(),
    )
    yield (
        "announcement",
        program().add(n._announcement, bytes(13)).add(n._advance, u8(2), u8(0)).encode(),
    )
    exit_publish = (
        program()
        .add(n._open_circuit)
        .add(n._exit_message, u8(0), u8(0), blob(b"a transaction"), blob(b""), u16(1), u8(5), u8(0))
        .add(
            n._exit_message,
            u8(0),
            u8(1),
            u8(1),
            u8(0),
            u8(1),
            bytes(20),
            blob(b""),
            u16(2),
            u8(6),
            u8(0),
        )
        .add(n._advance, u8(2), u8(0))
    )
    yield "exit", exit_publish.encode()
    relay = encode_relay_plaintext(RelayCommand.COVER, b"")
    yield (
        "relay",
        program()
        .add(n._open_circuit)
        .add(n._relay, u8(0), u8(0), blob(bytes(relay)))
        .add(n._relay, u8(0), u8(1), u8(3), blob(b"x"))
        .encode(),
    )
    yield (
        "extend_honest",
        program()
        .add(n._open_circuit)
        .add(n._extend, u8(0), u8(1), u8(1), u8(0), u8(255))
        .add(n._advance, u8(1), u8(0))
        .add(n._opaque_relay, u8(0), blob(b"onward"))
        .encode(),
    )
    cell = encode_cell(0x8000_0001, CellCommand.DESTROY, encode_reason(DestroyReason.PROTOCOL))
    yield "cell", program().add(n._cell, u8(0), cell[:4], cell[4:5], blob(cell[5:])).encode()
    yield (
        "local",
        program()
        .add(n._local, blob(b"tx"), u8(1))
        .add(n._advance, u8(4), u8(0))
        .add(n._local, blob(b"block"), u8(4), u8(0))
        .encode(),
    )
    through_hostile = program()
    for index, prefix in enumerate((3, 4, 5)):
        address = u8(0) + u8(prefix) + u8(0) + u16(7000)
        capacity = u16(1000) + u8(230) + u8(0)
        through_hostile.add(n._announcement, u8(index), address, capacity, u16(1), u16(3600))
    for _ in range(3):
        through_hostile.add(n._advance, u8(3), u8(0))
    through_hostile.add(n._backward, u8(0), u8(1), blob(bytes(64)))
    yield "through_hostile", through_hostile.encode()
    yield "two_hops", two_hops().encode()
    yield "reconnect", program().add(n._unsealed, blob(b"junk")).add(n._reconnect, u8(0)).encode()
    yield (
        "duplicate_link",
        program()
        .add(n._reconnect, u8(1))
        .add(n._gossip, bytes(range(1, 40)))
        .add(n._advance, u8(4), u8(0))
        .encode(),
    )


TWO_HOP_TX = b"a transaction published two hops away"


def two_hops() -> Program:
    """A hand circuit extended past the victim to the honest node, which publishes a
    transaction as exit, then answers a sync request for it back through the victim."""
    n = fuzz_node

    def far_message(kind: MessageKind, payload: bytes, topic: str, message: int) -> bytes:
        """``_far_exit_message``'s arguments: the first circuit, no padding, nothing dropped."""
        kinds, topic_index = tuple(MessageKind), n.TOPICS.index(topic)
        return (
            u8(0)
            + u8(kinds.index(kind))
            + payload
            + blob(b"")
            + u16(message)
            + u8(topic_index)
            + u8(0)
        )

    tx_id = message_id(MessageType.TRANSACTION.value, TWO_HOP_TX)
    sync = u8(1) + u8(0) + u8(1) + tx_id  # a sync request of one id, given raw
    return (
        Program(n.OPERATIONS)
        .add(n._open_circuit)
        .add(n._extend_past_victim, u8(0))
        .add(
            n._far_exit_message,
            far_message(MessageKind.PUBLISH, blob(TWO_HOP_TX), MessageType.TRANSACTION.value, 1),
        )
        .add(
            n._far_exit_message,
            far_message(MessageKind.REQUEST, sync, MessageType.SYNC_REQUEST.value, 2),
        )
    )


def relay_seeds() -> Iterator[tuple[str, bytes]]:
    r = fuzz_relay
    roomy = bytes((5, 5, 2, 2, 7, 2, 2, 1, 1, 3, 3, 1, 1, 1, 1, 3, 2, 1, 0, 15))
    tight = bytes(20)
    delayed = roomy[:-2] + bytes((2, 15))

    def program() -> Program:
        return Program(r.OPERATIONS).add(r._open, u8(0))

    for name, config in (("roomy", roomy), ("tight", tight), ("delayed", delayed)):
        publish = (
            program()
            .add(r._exit_message, u8(0), u8(0), blob(b"tx"), u16(1), blob(b""), u8(0))
            .add(r._exit_message, u8(0), u8(1), blob(b"ask"), u16(2), blob(b""), u8(0))
            .add(r._advance, u8(2), u8(0))
        )
        yield f"exit_{name}", config + publish.encode()
        extend = (
            program()
            .add(r._extend, u8(0), u8(0), u8(0), u8(3))
            .add(r._opaque, u8(0), blob(b"onward"))
            .add(r._backward, u8(0), u8(4), blob(b"back"))
            .add(r._advance, u8(3), u8(0))
        )
        yield f"extend_{name}", config + extend.encode()
    yield (
        "links",
        roomy
        + program()
        .add(r._extend, u8(0), u8(3), u8(1), u8(3))
        .add(r._links, u8(0))
        .add(r._links, u8(2), u8(0))
        .add(r._destroy, u8(2))
        .encode(),
    )


def control_api_seeds() -> Iterator[tuple[str, bytes]]:
    body = b'{"topic": "block_header", "data": "00"}'
    yield "post", fuzz_control_api.request(b"/v1/echo", body)
    yield "get", b"GET /v1/status HTTP/1.1\r\n\r\n"


HARNESSES: dict[str, Callable[[], Iterator[tuple[str, bytes]]]] = {
    "fuzz_wire": wire_seeds,
    "fuzz_node": node_seeds,
    "fuzz_relay": relay_seeds,
    "fuzz_control_api": control_api_seeds,
}


def write(root: Path) -> None:
    for harness, seeds in HARNESSES.items():
        folder = root / harness
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds():
            (folder / name).write_bytes(data)


if __name__ == "__main__":
    write(Path(sys.argv[1]))
