"""The hybrid circuit handshake and onion-key rotation."""

from __future__ import annotations

import pytest

from murmur.base.errors import CryptoError, RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.overlay.circuits import handshake as hs
from murmur.overlay.circuits.onion_keys import (
    ONION_PUBLIC_KEYS_BYTES,
    OnionKeyPair,
    OnionKeyRing,
    OnionPublicKeys,
    UnknownOnionKey,
)
from murmur.sim.rng import SeededRng
from murmur.wire.cells import Created, Onionskin

RELAY = NodeId(b"R" * 32)


@pytest.fixture(scope="module")
def pair() -> OnionKeyPair:
    return OnionKeyPair.generate(SeededRng(7))


def _run(pair: OnionKeyPair, relay_id: NodeId = RELAY) -> tuple[hs.Schedule, hs.Schedule]:
    rng = SeededRng(3)
    skin, pending = hs.client_onionskin(RELAY, pair.public, x25519_seed=rng.random_bytes(32))
    created, relay_ks = hs.relay_answer(skin, pair, node_id=relay_id, y_seed=rng.random_bytes(32))
    return hs.client_finish(created, pending), relay_ks


def test_both_sides_derive_the_same_distinct_keys(pair: OnionKeyPair) -> None:
    client, relay = _run(pair)
    assert client.keys == relay.keys
    k = client.keys
    assert len({k.forward_key, k.backward_key, k.forward_digest, k.backward_digest}) == 4


def test_relay_with_another_node_id_fails_authentication(pair: OnionKeyPair) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        _run(pair, relay_id=NodeId(b"S" * 32))
    assert info.value.reason == "auth_failed"


def test_relay_without_the_onion_keys_cannot_answer(pair: OnionKeyPair) -> None:
    rng = SeededRng(4)
    skin, pending = hs.client_onionskin(RELAY, pair.public, x25519_seed=rng.random_bytes(32))
    impostor = OnionKeyPair.generate(SeededRng(8))
    created, _ = hs.relay_answer(skin, impostor, node_id=RELAY, y_seed=rng.random_bytes(32))
    with pytest.raises(RemoteProtocolError):
        hs.client_finish(created, pending)


@pytest.mark.parametrize("field", ["x25519_public", "auth"])
def test_tampered_created_is_rejected(pair: OnionKeyPair, field: str) -> None:
    rng = SeededRng(5)
    skin, pending = hs.client_onionskin(RELAY, pair.public, x25519_seed=rng.random_bytes(32))
    created, _ = hs.relay_answer(skin, pair, node_id=RELAY, y_seed=rng.random_bytes(32))
    value = bytearray(getattr(created, field))
    value[0] ^= 1
    bad = Created(
        **{"x25519_public": created.x25519_public, "auth": created.auth, field: bytes(value)}
    )
    with pytest.raises(RemoteProtocolError):
        hs.client_finish(bad, pending)


def test_low_order_client_key_is_a_crypto_error(pair: OnionKeyPair) -> None:
    rng = SeededRng(6)
    skin, _ = hs.client_onionskin(RELAY, pair.public, x25519_seed=rng.random_bytes(32))
    zero = Onionskin(skin.key_id, bytes(32), skin.mlkem_ciphertext)
    with pytest.raises(CryptoError):
        hs.relay_answer(zero, pair, node_id=RELAY, y_seed=rng.random_bytes(32))


def test_public_keys_round_trip_and_reject_bad_sizes(pair: OnionKeyPair) -> None:
    encoded = pair.public.encode()
    assert len(encoded) == ONION_PUBLIC_KEYS_BYTES
    assert OnionPublicKeys.decode(encoded) == pair.public
    for bad in (encoded[:-1], encoded + b"\0"):
        with pytest.raises(RemoteProtocolError):
            OnionPublicKeys.decode(bad)
    assert "key_id" in repr(pair.public) and "key_id" in repr(pair)


def test_ring_accepts_previous_key_only_during_grace(pair: OnionKeyPair) -> None:
    ring = OnionKeyRing(pair, now=0.0)
    new = OnionKeyPair.generate(SeededRng(9))
    ring.rotate(new, now=100.0, grace_s=50.0)
    assert ring.find(new.key_id, 120.0) is new
    assert ring.find(pair.key_id, 149.0) is pair
    with pytest.raises(UnknownOnionKey):
        ring.find(pair.key_id, 150.0)
    with pytest.raises(UnknownOnionKey):
        ring.find(b"\0" * 32, 120.0)
