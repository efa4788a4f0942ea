"""Regenerates tests/vectors/circuits.json (run once; the file is checked in).

Part 1, the hybrid circuit handshake: fixed seeds give the relay's onion keys and both ephemeral
X25519 keys; the ML-KEM encapsulation is randomized inside OpenSSL, so the file records its
ciphertext and shared secret, and the test replays them through the pure steps to check every
message and derived key, and the CREATE cells that carry the onionskin. Part 2, one
onion-encrypted cell: a DATA cell for the third hop of a circuit with fixed hop keys, as it looks
on each link, plus a REPLY from that hop as the origin receives it. Part 3, a handshake that
spans cells: an EXTEND (carrying part 1's onionskin) from the origin to hop 1 of a circuit with
part 2's keys, cell by cell as hop 1 receives and reads it, and the CREATE cells hop 1 then
sends to the next hop.
"""

from __future__ import annotations

import json
from pathlib import Path

from murmur.base.ids import NodeId
from murmur.crypto.hashing import sha3_256
from murmur.crypto.kdf import hkdf_expand
from murmur.crypto.kem import X25519Secret, mlkem_encapsulate
from murmur.overlay.circuits import handshake as hs
from murmur.overlay.circuits.layers import OriginLayers, RelayLayer
from murmur.overlay.circuits.onion_keys import OnionKeyPair
from murmur.wire.cells import (
    CELL_BYTES,
    CellCommand,
    Envelope,
    Extend,
    MessageKind,
    Onionskin,
    RelayAddress,
    RelayCommand,
    create_bodies,
    encode_cell,
    extend_data,
    split_message,
)

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "circuits.json"
CIRC_ID = 0x8000_1234
NEXT_CIRC_ID = 0x0000_5678


def hop_keys(index: int) -> hs.HopKeys:
    return hs.HopKeys(*(bytes([0x40 + 4 * index + k]) * 32 for k in range(4)))


def handshake_part() -> dict[str, object]:
    seeds = {
        "onion_x25519_seed": bytes([0x51] * 32),
        "onion_mlkem_seed": bytes([0x52] * 64),
        "client_x25519_seed": bytes([0x53] * 32),
        "relay_x25519_seed": bytes([0x54] * 32),
    }
    relay_id = NodeId(sha3_256(b"murmur circuit vector relay"))
    pair = OnionKeyPair(seeds["onion_x25519_seed"], seeds["onion_mlkem_seed"])
    recorded: dict[str, bytes] = {}

    def encapsulate(ek: bytes) -> tuple[bytes, bytes]:
        ct, ss = mlkem_encapsulate(ek)
        recorded["mlkem_ciphertext"], recorded["mlkem_shared_secret"] = ct, ss
        return ct, ss

    skin, pending = hs.client_onionskin(
        relay_id,
        pair.public,
        x25519_seed=seeds["client_x25519_seed"],
        encapsulate=encapsulate,
    )
    created, relay_ks = hs.relay_answer(
        skin, pair, node_id=relay_id, y_seed=seeds["relay_x25519_seed"]
    )
    client_ks = hs.client_finish(created, pending)
    assert client_ks.keys == relay_ks.keys
    keys = relay_ks.keys
    y = X25519Secret(seeds["relay_x25519_seed"])
    return {
        **{k: v.hex() for k, v in seeds.items()},
        "relay_node_id": relay_id.hex(),
        "onion_public_keys": pair.public.encode().hex(),
        "key_id": pair.key_id.hex(),
        **{k: v.hex() for k, v in recorded.items()},
        "onionskin": skin.encode().hex(),
        "create_cells": [
            encode_cell(CIRC_ID, CellCommand.CREATE, b).hex() for b in create_bodies(skin)
        ],
        "dh_ephemeral": y.exchange(skin.x25519_public).hex(),
        "dh_static": pair.x25519.exchange(skin.x25519_public).hex(),
        "th": relay_ks.th.hex(),
        "prk": relay_ks.prk.hex(),
        "auth_key": hkdf_expand(relay_ks.prk, b"murmur circuit auth", 32).hex(),
        "auth": relay_ks.auth.hex(),
        "created": created.encode().hex(),
        "forward_key": keys.forward_key.hex(),
        "backward_key": keys.backward_key.hex(),
        "forward_digest_key": keys.forward_digest.hex(),
        "backward_digest_key": keys.backward_digest.hex(),
    }


def cell_part() -> dict[str, object]:
    envelope = Envelope(MessageKind.PUBLISH, "transaction", bytes(range(64)))
    (fragment,) = split_message(1, envelope.encode())
    origin, relays = _layers()
    body = origin.wrap_forward(2, RelayCommand.DATA, fragment.encode())
    seen = [body]
    for relay in relays:
        body, mine = relay.unwrap_forward(body)
        seen.append(body)
    assert mine
    reply = relays[2].originate_backward(RelayCommand.REPLY, fragment.encode())
    reply_at_origin = relays[0].wrap_backward(relays[1].wrap_backward(reply))
    return {
        "hop_keys": [
            {
                "forward_key": k.forward_key.hex(),
                "backward_key": k.backward_key.hex(),
                "forward_digest_key": k.forward_digest.hex(),
                "backward_digest_key": k.backward_digest.hex(),
            }
            for k in map(hop_keys, range(3))
        ],
        "circ_id": CIRC_ID,
        "relay_data": fragment.encode().hex(),
        "cell_hop1_receives": encode_cell(CIRC_ID, CellCommand.RELAY, seen[0]).hex(),
        "body_hop2_receives": seen[1].hex(),
        "body_hop3_receives": seen[2].hex(),
        "plaintext_at_hop3": seen[3].hex(),
        "reply_body_from_hop3": reply.hex(),
        "reply_body_origin_receives": reply_at_origin.hex(),
    }


def _layers() -> tuple[OriginLayers, list[RelayLayer]]:
    origin = OriginLayers()
    for i in range(3):
        origin.add_hop(hop_keys(i))
    return origin, [RelayLayer(hop_keys(i)) for i in range(3)]


def extend_part(onionskin: bytes) -> dict[str, object]:
    extend = Extend(
        NodeId(sha3_256(b"murmur circuit vector next hop")),
        RelayAddress("2001:db8::2", 7000),
        Onionskin.decode_body(onionskin),
    )
    origin, relays = _layers()
    data = extend_data(extend)
    cells = [
        encode_cell(CIRC_ID, CellCommand.RELAY, origin.wrap_forward(0, RelayCommand.EXTEND, d))
        for d in data
    ]
    plaintexts = []
    for cell in cells:
        plain, mine = relays[0].unwrap_forward(cell[5:])
        assert mine
        plaintexts.append(plain)
    return {
        "next_node_id": extend.next_node.hex(),
        "address": {"host": extend.address.host, "port": extend.address.port},
        "extend": extend.encode().hex(),
        "relay_data": [d.hex() for d in data],
        "cells_hop1_receives": [c.hex() for c in cells],
        "plaintexts_at_hop1": [p.hex() for p in plaintexts],
        "next_circ_id": NEXT_CIRC_ID,
        "create_cells_hop1_sends": [
            encode_cell(NEXT_CIRC_ID, CellCommand.CREATE, b).hex()
            for b in create_bodies(extend.onionskin)
        ],
    }


def main() -> None:
    handshake = handshake_part()
    vector = {
        "source": "Murmur circuits v1, 546-byte cells (docs/protocol/circuits.md); generated by "
        "scripts/make_circuit_vectors.py with pyca/cryptography 50",
        "protocol_name": hs.PROTOCOL_NAME.decode(),
        "cell_bytes": CELL_BYTES,
        "handshake": handshake,
        "onion_cell": cell_part(),
        "extend": extend_part(bytes.fromhex(str(handshake["onionskin"]))),
    }
    OUT.write_text(json.dumps(vector, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
