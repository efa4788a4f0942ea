"""The circuit handshake: Tor's ntor made hybrid (X25519 + ML-KEM-1024), as pure steps.

Theory of operation (docs/protocol/circuits.md §3). The client knows the relay's node id ``ID``
and onion keys ``(B, EK)`` from its signed announcement; it stays anonymous itself.

1. Client: ephemeral ``x``; ``(CT, SS) = Encaps(EK)``; sends ``KEYID || X || CT``.
2. Relay: ephemeral ``y``; ``SS = Decaps(CT)``;
   ``th = SHA3-256(PROTOCOL_NAME || ID || KEYID || X || Y || CT)``;
   ``prk = HKDF-Extract(th, X25519(y, X) || X25519(b, X) || SS)``;
   ``AUTH = HMAC-SHA3-256(HKDF-Expand(prk, "murmur circuit auth", 32), th)``; sends ``Y || AUTH``.
3. Client: computes the same ``th`` and ``prk`` (``X25519(x, Y) || X25519(x, B) || SS``) and
   checks ``AUTH`` in constant time.

Both sides then expand ``prk`` into the forward and backward cipher keys and digest keys of this
hop. Only a party holding ``b`` *and* the ML-KEM decapsulation key can produce ``AUTH`` (each
secret is in the extract input), so impersonating a relay needs both X25519 and ML-KEM broken;
the ephemeral ``X25519(y, X)`` gives classical forward secrecy per circuit, while the ML-KEM part
is forward-secret at onion-key rotation granularity (old secrets are erased after the grace).
``KEYID`` hashes ``B`` and ``EK`` and ``th`` covers it and ``ID``, so the keys are bound to the
relay the client meant.

Steps take their randomness as values (ephemeral seeds, the encapsulation result) so that
tests/vectors/circuits.json replays them byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from murmur.base.errors import RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.crypto.hashing import equal, hmac_sha3_256, sha3_256
from murmur.crypto.kdf import hkdf_expand, hkdf_extract
from murmur.crypto.kem import X25519Secret, mlkem_encapsulate
from murmur.overlay.circuits.onion_keys import OnionKeyPair, OnionPublicKeys
from murmur.wire.cells import Created, Onionskin

PROTOCOL_NAME = b"Murmur_Circuit_v1_X25519+MLKEM1024_HKDF-SHA3-256"
KEY_BYTES = 32
Encapsulate = Callable[[bytes], tuple[bytes, bytes]]
"""``encapsulate(ek) -> (ciphertext, shared_secret)``; injectable so vectors can replay it."""


@dataclass(frozen=True, slots=True, repr=False)
class HopKeys:
    """One hop's symmetric keys: a cipher key and a digest key per direction."""

    forward_key: bytes
    backward_key: bytes
    forward_digest: bytes
    backward_digest: bytes

    def __repr__(self) -> str:
        return "HopKeys(…)"


@dataclass(frozen=True, slots=True, repr=False)
class Schedule:
    """Every intermediate value of one handshake (pinned by the test vectors)."""

    th: bytes
    prk: bytes
    auth: bytes
    keys: HopKeys


def schedule(
    relay_id: NodeId, skin: Onionskin, y_public: bytes, dh_ee: bytes, dh_es: bytes, kem: bytes
) -> Schedule:
    th = sha3_256(
        PROTOCOL_NAME, relay_id, skin.key_id, skin.x25519_public, y_public, skin.mlkem_ciphertext
    )
    prk = hkdf_extract(th, dh_ee + dh_es + kem)
    auth = hmac_sha3_256(hkdf_expand(prk, b"murmur circuit auth", KEY_BYTES), th)
    material = hkdf_expand(prk, b"murmur circuit keys", 4 * KEY_BYTES)
    keys = HopKeys(*(material[i : i + KEY_BYTES] for i in range(0, 4 * KEY_BYTES, KEY_BYTES)))
    return Schedule(th, prk, auth, keys)


@dataclass(frozen=True, slots=True, repr=False)
class ClientPending:
    relay_id: NodeId
    relay_keys: OnionPublicKeys
    x25519: X25519Secret
    skin: Onionskin
    kem_shared: bytes


def client_onionskin(
    relay_id: NodeId,
    relay_keys: OnionPublicKeys,
    *,
    x25519_seed: bytes,
    encapsulate: Encapsulate = mlkem_encapsulate,
) -> tuple[Onionskin, ClientPending]:
    x = X25519Secret(x25519_seed)
    ciphertext, shared = encapsulate(relay_keys.mlkem)
    skin = Onionskin(relay_keys.key_id(), x.public, ciphertext)
    return skin, ClientPending(relay_id, relay_keys, x, skin, shared)


def relay_answer(
    skin: Onionskin, pair: OnionKeyPair, *, node_id: NodeId, y_seed: bytes
) -> tuple[Created, Schedule]:
    """The relay's step; ``pair`` is the ring entry ``skin.key_id`` names."""
    y = X25519Secret(y_seed)
    dh_ee = y.exchange(skin.x25519_public)
    dh_es = pair.x25519.exchange(skin.x25519_public)
    kem = pair.mlkem.decapsulate(skin.mlkem_ciphertext)
    ks = schedule(node_id, skin, y.public, dh_ee, dh_es, kem)
    return Created(y.public, ks.auth), ks


def client_finish(created: Created, pending: ClientPending) -> Schedule:
    dh_ee = pending.x25519.exchange(created.x25519_public)
    dh_es = pending.x25519.exchange(pending.relay_keys.x25519)
    ks = schedule(
        pending.relay_id, pending.skin, created.x25519_public, dh_ee, dh_es, pending.kem_shared
    )
    if not equal(ks.auth, created.auth):
        raise RemoteProtocolError("auth_failed", "circuit handshake")
    return ks
