"""The hybrid post-quantum link handshake, as pure steps (seed pq-mixnet §3.2.1, made sound).

Theory of operation (SIGMA-I over a hybrid KEM; full flow in docs/protocol/handshake.md):

1. ``Hello``: the initiator sends ephemeral X25519 and ML-KEM-1024 public keys.
2. ``Reply``: the responder answers with its ephemeral X25519 key and an ML-KEM ciphertext to
   the initiator's key; both secrets go through HKDF-SHA3-256 salted with the transcript hash.
   Under a handshake key it sends its ML-DSA-87 key, a signature over the transcript and a
   finished MAC (key confirmation).
3. ``Auth``: the initiator checks that the responder's key hashes to the node id it dialled,
   verifies signature and MAC, and answers with its own key, signature and MAC.

What the seed's sketch lacked and this adds: the initiator authenticates too; signatures cover
the whole transcript (not just the responder's message); the expected peer is checked; both
sides prove they hold the keys before any application data; the protocol name is bound into
the first transcript hash (a version byte, not a plaintext name, travels on the wire, so there
is no fixed fingerprint); identities travel encrypted (hidden from passive observers).

Each step takes its randomness as values (ephemeral seeds, the encapsulation result and a
signing function) so that test vectors replay it; :mod:`murmur.link.connection` supplies them
from the injected RNG.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from murmur.base.errors import RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.crypto import identity as sig
from murmur.crypto.aead import Aead, AeadAlgorithm
from murmur.crypto.hashing import equal, hmac_sha3_256, sha3_256
from murmur.crypto.kdf import hkdf_expand, hkdf_extract
from murmur.crypto.kem import MlKemSecret, X25519Secret, mlkem_encapsulate
from murmur.wire.link import Auth, Hello, Reply

PROTOCOL_NAME = b"Murmur_Link_v1_X25519+MLKEM1024_MLDSA87_HKDF-SHA3-256"
RESPONDER_CONTEXT = b"murmur-link-v1/responder"
INITIATOR_CONTEXT = b"murmur-link-v1/initiator"
KEY_BYTES = 32

Signer = Callable[[bytes, bytes], bytes]
"""``sign(message, context) -> signature``; normally ``Identity.sign``."""


class UnexpectedPeer(RemoteProtocolError):
    def __init__(self) -> None:
        super().__init__("unexpected_peer", "responder key does not match the dialled node id")


@dataclass(frozen=True, slots=True, repr=False)
class HandshakeKeys:
    """What both sides hold after a good handshake. ``repr`` hides every key."""

    send_key: bytes
    recv_key: bytes
    session_id: bytes
    peer_public_key: bytes
    peer_id: NodeId

    def __repr__(self) -> str:
        return f"HandshakeKeys(peer_id={self.peer_id.hex()[:16]}…)"


@dataclass(frozen=True, slots=True, repr=False)
class _Schedule:
    prk: bytes
    h2: bytes
    hs_r2i: bytes
    hs_i2r: bytes
    fin_r: bytes
    fin_i: bytes


def transcript_h1(hello: bytes) -> bytes:
    return sha3_256(sha3_256(PROTOCOL_NAME), hello)


def _schedule(h1: bytes, reply_clear: bytes, dh: bytes, kem: bytes) -> _Schedule:
    h2 = sha3_256(h1, reply_clear)
    prk = hkdf_extract(h2, dh + kem)
    return _Schedule(
        prk=prk,
        h2=h2,
        hs_r2i=hkdf_expand(prk, b"murmur hs r2i", KEY_BYTES),
        hs_i2r=hkdf_expand(prk, b"murmur hs i2r", KEY_BYTES),
        fin_r=hkdf_expand(prk, b"murmur fin r", KEY_BYTES),
        fin_i=hkdf_expand(prk, b"murmur fin i", KEY_BYTES),
    )


def _responder_transcript(h2: bytes, public_key: bytes, signature: bytes) -> tuple[bytes, bytes]:
    th_r = sha3_256(h2, public_key)
    return th_r, sha3_256(th_r, signature)


def _initiator_transcript(
    th_r2: bytes, fin_r: bytes, public_key: bytes, signature: bytes
) -> tuple[bytes, bytes]:
    th_i = sha3_256(th_r2, fin_r, public_key)
    return th_i, sha3_256(th_i, signature)


def _application_keys(prk: bytes, th_final: bytes) -> tuple[bytes, bytes, bytes]:
    i2r = hkdf_expand(prk, b"murmur app i2r" + th_final, KEY_BYTES)
    r2i = hkdf_expand(prk, b"murmur app r2i" + th_final, KEY_BYTES)
    session_id = hkdf_expand(prk, b"murmur session id" + th_final, KEY_BYTES)
    return i2r, r2i, session_id


def _seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    return Aead(AeadAlgorithm.CHACHA20_POLY1305, key).seal(0, plaintext, ad)


def _open(key: bytes, sealed: bytes, ad: bytes) -> bytes:
    return Aead(AeadAlgorithm.CHACHA20_POLY1305, key).open(0, sealed, ad)


# --- initiator -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class InitiatorWaiting:
    x25519: X25519Secret
    mlkem: MlKemSecret
    h1: bytes


def initiator_hello(
    x25519_seed: bytes, mlkem_seed: bytes, aead: AeadAlgorithm = AeadAlgorithm.CHACHA20_POLY1305
) -> tuple[bytes, InitiatorWaiting]:
    x, k = X25519Secret(x25519_seed), MlKemSecret(mlkem_seed)
    hello = Hello(int(aead), x.public, k.public).encode()
    return hello, InitiatorWaiting(x, k, transcript_h1(hello))


def initiator_finish(
    reply_bytes: bytes,
    state: InitiatorWaiting,
    *,
    public_key: bytes,
    sign: Signer,
    expected_peer: NodeId | None,
) -> tuple[bytes, HandshakeKeys]:
    """Checks message 2 and returns message 3 plus the session keys."""
    reply = Reply.decode(reply_bytes)
    dh = state.x25519.exchange(reply.x25519_public)
    kem = state.mlkem.decapsulate(reply.mlkem_ciphertext)
    ks = _schedule(state.h1, reply.clear_part(), dh, kem)
    auth_r = Auth.decode(_open(ks.hs_r2i, reply.sealed_auth, ks.h2))
    peer_id = sig.node_id_of(auth_r.public_key)
    if expected_peer is not None and not equal(peer_id, expected_peer):
        raise UnexpectedPeer()
    th_r, th_r2 = _responder_transcript(ks.h2, auth_r.public_key, auth_r.signature)
    if not sig.verify(auth_r.public_key, auth_r.signature, th_r, RESPONDER_CONTEXT):
        raise RemoteProtocolError("auth_failed", "responder signature")
    if not equal(hmac_sha3_256(ks.fin_r, th_r2), auth_r.finished):
        raise RemoteProtocolError("auth_failed", "responder finished")
    th_i = sha3_256(th_r2, auth_r.finished, public_key)
    signature = sign(th_i, INITIATOR_CONTEXT)
    _, th_i2 = _initiator_transcript(th_r2, auth_r.finished, public_key, signature)
    finished = hmac_sha3_256(ks.fin_i, th_i2)
    message3 = _seal(ks.hs_i2r, Auth(public_key, signature, finished).encode(), th_r2)
    i2r, r2i, session_id = _application_keys(ks.prk, sha3_256(th_i2, finished))
    return message3, HandshakeKeys(i2r, r2i, session_id, auth_r.public_key, peer_id)


# --- responder -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class ResponderWaiting:
    aead: AeadAlgorithm
    schedule: _Schedule
    th_r2: bytes
    finished_r: bytes


def responder_reply(
    hello_bytes: bytes,
    *,
    x25519_seed: bytes,
    encapsulate: Callable[[bytes], tuple[bytes, bytes]] = mlkem_encapsulate,
    public_key: bytes,
    sign: Signer,
) -> tuple[bytes, ResponderWaiting]:
    """Answers message 1. ``encapsulate(ek) -> (ciphertext, shared)`` is injectable for vectors."""
    hello = Hello.decode(hello_bytes)
    h1 = transcript_h1(hello_bytes)
    x = X25519Secret(x25519_seed)
    dh = x.exchange(hello.x25519_public)
    ciphertext, kem = encapsulate(hello.mlkem_public)
    clear = x.public + ciphertext
    ks = _schedule(h1, clear, dh, kem)
    th_r = sha3_256(ks.h2, public_key)
    signature = sign(th_r, RESPONDER_CONTEXT)
    _, th_r2 = _responder_transcript(ks.h2, public_key, signature)
    finished = hmac_sha3_256(ks.fin_r, th_r2)
    sealed = _seal(ks.hs_r2i, Auth(public_key, signature, finished).encode(), ks.h2)
    reply = Reply(x.public, ciphertext, sealed).encode()
    return reply, ResponderWaiting(AeadAlgorithm(hello.aead), ks, th_r2, finished)


def responder_finish(auth_bytes: bytes, state: ResponderWaiting) -> HandshakeKeys:
    ks = state.schedule
    auth_i = Auth.decode(_open(ks.hs_i2r, auth_bytes, state.th_r2))
    th_i, th_i2 = _initiator_transcript(
        state.th_r2, state.finished_r, auth_i.public_key, auth_i.signature
    )
    if not sig.verify(auth_i.public_key, auth_i.signature, th_i, INITIATOR_CONTEXT):
        raise RemoteProtocolError("auth_failed", "initiator signature")
    if not equal(hmac_sha3_256(ks.fin_i, th_i2), auth_i.finished):
        raise RemoteProtocolError("auth_failed", "initiator finished")
    i2r, r2i, session_id = _application_keys(ks.prk, sha3_256(th_i2, auth_i.finished))
    return HandshakeKeys(r2i, i2r, session_id, auth_i.public_key, sig.node_id_of(auth_i.public_key))
