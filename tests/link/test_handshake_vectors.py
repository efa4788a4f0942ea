"""Replays tests/vectors/handshake.json through the pure handshake steps, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from murmur.crypto.identity import Identity, verify
from murmur.crypto.kem import MlKemSecret
from murmur.link import handshake as hs

V = {
    k: (bytes.fromhex(v) if k not in {"source", "protocol_name"} else v)
    for k, v in json.loads(
        (Path(__file__).parent.parent / "vectors" / "handshake.json").read_text()
    ).items()
}


def _replay_signer(name: str) -> hs.Signer:
    def sign(message: bytes, context: bytes) -> bytes:
        assert message == V[f"{name}_signed_transcript"]
        return V[f"{name}_signature"]

    return sign


def test_protocol_name_and_identities() -> None:
    assert V["protocol_name"] == hs.PROTOCOL_NAME.decode()
    assert Identity.from_seed(V["initiator_identity_seed"]).node_id == V["initiator_node_id"]
    assert Identity.from_seed(V["responder_identity_seed"]).node_id == V["responder_node_id"]


def test_recorded_randomness_is_genuine() -> None:
    kem = MlKemSecret(V["initiator_mlkem_seed"])
    assert kem.decapsulate(V["mlkem_ciphertext"]) == V["mlkem_shared_secret"]
    res = Identity.from_seed(V["responder_identity_seed"])
    ini = Identity.from_seed(V["initiator_identity_seed"])
    assert verify(
        res.public_key,
        V["responder_signature"],
        V["responder_signed_transcript"],
        hs.RESPONDER_CONTEXT,
    )
    assert verify(
        ini.public_key,
        V["initiator_signature"],
        V["initiator_signed_transcript"],
        hs.INITIATOR_CONTEXT,
    )


def test_every_message_and_key_matches() -> None:
    ini = Identity.from_seed(V["initiator_identity_seed"])
    res = Identity.from_seed(V["responder_identity_seed"])
    m1, ini_state = hs.initiator_hello(V["initiator_x25519_seed"], V["initiator_mlkem_seed"])
    assert m1 == V["message1"]
    assert hs.transcript_h1(m1) == V["h1"]
    m2, res_state = hs.responder_reply(
        m1,
        x25519_seed=V["responder_x25519_seed"],
        encapsulate=lambda ek: (V["mlkem_ciphertext"], V["mlkem_shared_secret"]),
        public_key=res.public_key,
        sign=_replay_signer("responder"),
    )
    ks = res_state.schedule
    assert (ks.h2, ks.prk) == (V["h2"], V["prk"])
    assert (ks.hs_r2i, ks.hs_i2r) == (V["hs_key_r2i"], V["hs_key_i2r"])
    assert (ks.fin_r, ks.fin_i) == (V["finished_key_r"], V["finished_key_i"])
    assert m2 == V["message2"]
    m3, ini_keys = hs.initiator_finish(
        m2,
        ini_state,
        public_key=ini.public_key,
        sign=_replay_signer("initiator"),
        expected_peer=res.node_id,
    )
    assert m3 == V["message3"]
    res_keys = hs.responder_finish(m3, res_state)
    assert ini_keys.send_key == res_keys.recv_key == V["app_key_i2r"]
    assert ini_keys.recv_key == res_keys.send_key == V["app_key_r2i"]
    assert ini_keys.session_id == res_keys.session_id == V["session_id"]
    assert res_keys.peer_id == V["initiator_node_id"]
    assert ini_keys.peer_id == V["responder_node_id"]


@pytest.mark.parametrize("index", [0, 100, 1700, 5000, 8000, len(V["message2"]) - 1])
def test_any_flipped_bit_in_message2_is_rejected(index: int) -> None:
    ini = Identity.from_seed(V["initiator_identity_seed"])
    _, ini_state = hs.initiator_hello(V["initiator_x25519_seed"], V["initiator_mlkem_seed"])
    m2 = bytearray(V["message2"])
    m2[index] ^= 0x01
    with pytest.raises(hs.RemoteProtocolError):
        hs.initiator_finish(
            bytes(m2), ini_state, public_key=ini.public_key, sign=ini.sign, expected_peer=None
        )
