"""Replays tests/vectors/circuits.json: the circuit handshake, one onion-encrypted cell, and an
EXTEND that spans cells, checking the 546-byte layout byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from murmur.base.ids import NodeId
from murmur.crypto.hashing import hmac_sha3_256, sha3_256
from murmur.crypto.kdf import hkdf_expand, hkdf_extract
from murmur.crypto.kem import X25519Secret
from murmur.overlay.circuits import handshake as hs
from murmur.overlay.circuits.layers import OriginLayers, RelayLayer
from murmur.overlay.circuits.onion_keys import OnionKeyPair, OnionPublicKeys
from murmur.wire.cells import (
    CELL_BYTES,
    CREATE_BYTES,
    CREATE_CELLS,
    CREATE_CHUNK_BYTES,
    EXTEND_CELLS,
    EXTEND_PADDED_BYTES,
    ONIONSKIN_BYTES,
    CellCommand,
    Created,
    Envelope,
    Extend,
    Fragment,
    MessageKind,
    Onionskin,
    RelayAddress,
    RelayCommand,
    create_bodies,
    decode_cell,
    decode_relay_plaintext,
    encode_cell,
    extend_data,
    split_message,
)

DOC: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "vectors" / "circuits.json").read_text()
)
H = {k: bytes.fromhex(v) for k, v in DOC["handshake"].items() if isinstance(v, str)}
CREATE_CELLS_HEX: list[str] = DOC["handshake"]["create_cells"]
C = DOC["onion_cell"]
X = DOC["extend"]


def _keys(d: dict[str, str]) -> hs.HopKeys:
    return hs.HopKeys(
        bytes.fromhex(d["forward_key"]),
        bytes.fromhex(d["backward_key"]),
        bytes.fromhex(d["forward_digest_key"]),
        bytes.fromhex(d["backward_digest_key"]),
    )


def test_protocol_name_and_cell_size() -> None:
    assert DOC["protocol_name"] == hs.PROTOCOL_NAME.decode()
    assert DOC["cell_bytes"] == CELL_BYTES == 546


def _fragment_layout(data: bytes, index: int, count: int) -> bytes:
    """Checks ``message_id (u32) = 0 || index (u16) || count (u16)`` and returns the chunk."""
    assert data[:8] == bytes(4) + index.to_bytes(2, "big") + count.to_bytes(2, "big")
    return data[8:]


def _create_layout(cells_hex: list[str], circ_id: int) -> bytes:
    """Every CREATE cell: ``circ_id || 0x01 || fragment (533-byte chunk)``; returns the
    reassembled message."""
    chunks = []
    for index, cell_hex in enumerate(cells_hex):
        cell = bytes.fromhex(cell_hex)
        assert len(cell) == CELL_BYTES and cell[:5] == circ_id.to_bytes(4, "big") + b"\x01"
        chunks.append(_fragment_layout(cell[5:], index, CREATE_CELLS))
        assert len(chunks[-1]) == CREATE_CHUNK_BYTES
    return b"".join(chunks)


def test_onion_keys_and_recorded_kem_are_genuine() -> None:
    pair = OnionKeyPair(H["onion_x25519_seed"], H["onion_mlkem_seed"])
    assert pair.public.encode() == H["onion_public_keys"]
    assert OnionPublicKeys.decode(H["onion_public_keys"]).key_id() == H["key_id"] == pair.key_id
    assert pair.mlkem.decapsulate(H["mlkem_ciphertext"]) == H["mlkem_shared_secret"]


def test_handshake_messages_and_keys() -> None:
    relay_id = NodeId(H["relay_node_id"])
    pair = OnionKeyPair(H["onion_x25519_seed"], H["onion_mlkem_seed"])
    skin, pending = hs.client_onionskin(
        relay_id,
        pair.public,
        x25519_seed=H["client_x25519_seed"],
        encapsulate=lambda ek: (H["mlkem_ciphertext"], H["mlkem_shared_secret"]),
    )
    assert skin.encode() == H["onionskin"]
    circ_id = decode_cell(bytes.fromhex(CREATE_CELLS_HEX[0])).circ_id
    message = _create_layout(CREATE_CELLS_HEX, circ_id)
    assert message == skin.encode() + bytes(CREATE_BYTES - ONIONSKIN_BYTES)
    assert Onionskin.decode_body(message) == skin
    cells = [encode_cell(circ_id, CellCommand.CREATE, b).hex() for b in create_bodies(skin)]
    assert cells == CREATE_CELLS_HEX
    created, ks = hs.relay_answer(skin, pair, node_id=relay_id, y_seed=H["relay_x25519_seed"])
    assert (ks.th, ks.prk, ks.auth) == (H["th"], H["prk"], H["auth"])
    assert created.encode() == H["created"]
    client = hs.client_finish(Created(created.x25519_public, created.auth), pending)
    assert client.keys == ks.keys
    assert ks.keys == hs.HopKeys(
        H["forward_key"], H["backward_key"], H["forward_digest_key"], H["backward_digest_key"]
    )


def test_key_schedule_step_by_step() -> None:
    """docs/protocol/circuits.md §3, recomputed from the recorded values with the primitives."""
    pair = OnionKeyPair(H["onion_x25519_seed"], H["onion_mlkem_seed"])
    x, y = X25519Secret(H["client_x25519_seed"]), X25519Secret(H["relay_x25519_seed"])
    assert y.exchange(x.public) == x.exchange(y.public) == H["dh_ephemeral"]
    assert pair.x25519.exchange(x.public) == x.exchange(pair.public.x25519) == H["dh_static"]
    th = sha3_256(
        hs.PROTOCOL_NAME, H["relay_node_id"], H["key_id"], x.public, y.public, H["mlkem_ciphertext"]
    )
    assert th == H["th"]
    ikm = H["dh_ephemeral"] + H["dh_static"] + H["mlkem_shared_secret"]
    assert hkdf_extract(th, ikm) == H["prk"]
    assert hkdf_expand(H["prk"], b"murmur circuit auth", 32) == H["auth_key"]
    assert hmac_sha3_256(H["auth_key"], th) == H["auth"]
    material = hkdf_expand(H["prk"], b"murmur circuit keys", 128)
    names = ("forward_key", "backward_key", "forward_digest_key", "backward_digest_key")
    assert [material[i * 32 : (i + 1) * 32] for i in range(4)] == [H[n] for n in names]


def test_onion_cell_layer_by_layer() -> None:
    keys = [_keys(k) for k in C["hop_keys"]]
    origin = OriginLayers()
    for k in keys:
        origin.add_hop(k)
    data = bytes.fromhex(C["relay_data"])
    body = origin.wrap_forward(2, RelayCommand.DATA, data)
    assert encode_cell(C["circ_id"], CellCommand.RELAY, body).hex() == C["cell_hop1_receives"]
    assert len(bytes.fromhex(C["cell_hop1_receives"])) == CELL_BYTES
    expected = [C["body_hop2_receives"], C["body_hop3_receives"], C["plaintext_at_hop3"]]
    relays = [RelayLayer(k) for k in keys]
    for i, relay in enumerate(relays):
        body, mine = relay.unwrap_forward(body)
        assert body.hex() == expected[i]
        assert mine is (i == 2)
    assert decode_relay_plaintext(body).data == data
    reply = relays[2].originate_backward(RelayCommand.REPLY, data)
    assert reply.hex() == C["reply_body_from_hop3"]
    at_origin = relays[0].wrap_backward(relays[1].wrap_backward(reply))
    assert at_origin.hex() == C["reply_body_origin_receives"]
    hop, message = origin.unwrap_backward(at_origin)
    assert (hop, message.command, message.data) == (2, RelayCommand.REPLY, data)


def test_the_onion_cells_data_is_a_fragment_of_a_padded_envelope() -> None:
    """The DATA the vector carries, read per docs/protocol/circuits.md: ``message_id (u32) ||
    index (u16) || count (u16) || chunk``, the chunk a padded envelope ``length (u32 BE) ||
    kind (u8) || topic (u8 length, UTF-8) || payload``, here with no padding bytes."""
    data = bytes.fromhex(C["relay_data"])
    assert data[:8] == (1).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    chunk = data[8:]
    fragment = Fragment.decode(data)
    assert (fragment.message_id, fragment.index, fragment.count, fragment.chunk) == (1, 0, 1, chunk)
    payload = bytes(range(64))
    message = bytes([MessageKind.PUBLISH, len("transaction")]) + b"transaction" + payload
    assert chunk == len(message).to_bytes(4, "big") + message
    envelope = Envelope(MessageKind.PUBLISH, "transaction", payload)
    assert Envelope.decode(chunk) == envelope
    assert split_message(1, envelope.encode()) == [fragment]
    assert Envelope.decode(chunk + b"any padding") == envelope  # the receiver ignores it


def test_extend_spans_cells_layer_by_layer() -> None:
    """The origin's EXTEND for hop 1 (part 1's onionskin, an IPv6 next hop) as four relay cells:
    each ``circ_id || 0x03 || body``; hop 1 reads ``recognized (0) || digest || EXTEND ||
    length 520 || fragment``; the chunks are the EXTEND zero-padded to 2,048 bytes. Hop 1 then
    sends the onionskin on as four CREATE cells."""
    keys = [_keys(k) for k in C["hop_keys"]]
    origin = OriginLayers()
    for k in keys:
        origin.add_hop(k)
    hop1 = RelayLayer(keys[0])
    extend = Extend(
        NodeId(bytes.fromhex(X["next_node_id"])),
        RelayAddress(X["address"]["host"], X["address"]["port"]),
        Onionskin.decode_body(H["onionskin"]),
    )
    assert extend.encode().hex() == X["extend"]
    data = extend_data(extend)
    assert [d.hex() for d in data] == X["relay_data"]
    assert len(data) == len(X["cells_hop1_receives"]) == EXTEND_CELLS == 4
    chunks = []
    for index, d in enumerate(data):
        cell = encode_cell(
            C["circ_id"], CellCommand.RELAY, origin.wrap_forward(0, RelayCommand.EXTEND, d)
        )
        assert cell.hex() == X["cells_hop1_receives"][index]
        assert len(cell) == CELL_BYTES and cell[:5] == C["circ_id"].to_bytes(4, "big") + b"\x03"
        plain, mine = hop1.unwrap_forward(cell[5:])
        assert mine and plain.hex() == X["plaintexts_at_hop1"][index]
        assert plain[:2] == b"\0\0" and plain[18:21] == b"\x01" + (520).to_bytes(2, "big")
        assert plain[21:] == d
        chunks.append(_fragment_layout(plain[21:], index, EXTEND_CELLS))
    message = b"".join(chunks)
    assert message == extend.encode() + bytes(EXTEND_PADDED_BYTES - len(extend.encode()))
    assert Extend.decode(message) == extend
    create = _create_layout(X["create_cells_hop1_sends"], X["next_circ_id"])
    assert create == H["onionskin"] + bytes(CREATE_BYTES - ONIONSKIN_BYTES)
