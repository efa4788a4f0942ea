"""Replays tests/vectors/circuits.json: the circuit handshake and one onion-encrypted cell."""

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
    CellCommand,
    Created,
    Onionskin,
    RelayCommand,
    decode_cell,
    decode_relay_plaintext,
    encode_cell,
)

DOC: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "vectors" / "circuits.json").read_text()
)
H = {k: bytes.fromhex(v) for k, v in DOC["handshake"].items()}
C = DOC["onion_cell"]


def _keys(d: dict[str, str]) -> hs.HopKeys:
    return hs.HopKeys(
        bytes.fromhex(d["forward_key"]),
        bytes.fromhex(d["backward_key"]),
        bytes.fromhex(d["forward_digest_key"]),
        bytes.fromhex(d["backward_digest_key"]),
    )


def test_protocol_name() -> None:
    assert DOC["protocol_name"] == hs.PROTOCOL_NAME.decode()


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
    cell = decode_cell(H["create_cell"])
    assert cell.command is CellCommand.CREATE
    assert Onionskin.decode_body(cell.body) == skin
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
