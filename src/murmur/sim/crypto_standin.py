"""Keyed stand-ins for ML-DSA-87 and ML-KEM-1024, for large simulations only (off by default).

Theory of operation: a thousand simulated nodes verify a million peer announcements and run
tens of thousands of hybrid handshakes; with OpenSSL's ML-DSA-87 (about 0.3 ms per verification,
1.2 ms per signature) that alone is several minutes of wall time, and it measures nothing the
simulator reports (no figure depends on how long a signature takes to check: the simulated clock
does not advance while a node computes). :func:`standin_crypto` is a context manager that, while
it is open, points :mod:`murmur.crypto.identity` and :mod:`murmur.crypto.kem` at stand-in key
classes with pyca/cryptography's interface, and restores the real backends on exit. Every
Murmur code path still runs (length checks, transcripts, KDFs, AEADs, X25519, error mapping);
only the two post-quantum primitives underneath are replaced, by deterministic hash-based ones of
exactly the same sizes:

* ML-DSA-87: public key = SHAKE-256("pk" || seed), 2,592 bytes; signature = a 32-byte SHA3 tag
  over (public key, context, message) followed by a filler derived from it, 4,627 bytes.
  Verification recomputes the tag from the public key; a wrong signature, message or context
  fails as with the real scheme. It is not unforgeable (anyone holding the public key can sign):
  simulated nodes follow the protocol, and no simulated attacker forges signatures.
* ML-KEM-1024: public key = SHAKE-256("pk" || seed), 1,568 bytes; encapsulation draws a
  1,568-byte ciphertext from a counter (deterministic, unlike OpenSSL's, so runs with the
  stand-in are byte-for-byte reproducible) and the shared secret is SHA3-256(public key ||
  ciphertext), which the holder of the seed recomputes. Confidential against nobody; correct.

The swap is process-wide while the context is open (the simulator runs one simulation per
process, and worker processes open it themselves); it is never used outside :mod:`murmur.sim`,
and results produced with it say so (``crypto: standin`` in the JSON and the report).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

from cryptography.exceptions import InvalidSignature

from murmur.crypto import identity as identity_module
from murmur.crypto import kem as kem_module
from murmur.crypto.identity import PUBLIC_KEY_BYTES, SEED_BYTES, SIGNATURE_BYTES
from murmur.crypto.kem import (
    MLKEM_CIPHERTEXT_BYTES,
    MLKEM_PUBLIC_BYTES,
    MLKEM_SEED_BYTES,
    MLKEM_SHARED_BYTES,
)

_TAG_BYTES = 32


def _shake(label: bytes, data: bytes, size: int) -> bytes:
    return hashlib.shake_256(label + data).digest(size)


# -- ML-DSA-87 ------------------------------------------------------------------------------


def _signature(public: bytes, message: bytes, context: bytes) -> bytes:
    tag = hashlib.sha3_256(
        b"standin-mldsa" + public[:64] + len(context).to_bytes(2, "big") + context + message
    ).digest()
    filler = tag * (SIGNATURE_BYTES // _TAG_BYTES)
    return (tag + filler)[:SIGNATURE_BYTES]


class StandInSigningKey:
    __slots__ = ("_public", "_seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError("ML-DSA-87 seed must be 32 bytes")
        self._seed = seed
        self._public = _shake(b"standin-mldsa-pk", seed, PUBLIC_KEY_BYTES)

    @classmethod
    def from_seed_bytes(cls, seed: bytes) -> StandInSigningKey:
        return cls(seed)

    def public_key(self) -> StandInVerifyingKey:
        return StandInVerifyingKey(self._public)

    def private_bytes_raw(self) -> bytes:
        return self._seed

    def sign(self, message: bytes, context: bytes) -> bytes:
        return _signature(self._public, message, context)


class StandInVerifyingKey:
    __slots__ = ("_public",)

    def __init__(self, public: bytes) -> None:
        self._public = public

    @classmethod
    def from_public_bytes(cls, public: bytes) -> StandInVerifyingKey:
        if len(public) != PUBLIC_KEY_BYTES:
            raise ValueError("bad ML-DSA-87 public key length")
        return cls(bytes(public))

    def public_bytes_raw(self) -> bytes:
        return self._public

    def verify(self, signature: bytes, message: bytes, context: bytes) -> None:
        if signature != _signature(self._public, message, context):
            raise InvalidSignature()


# -- ML-KEM-1024 ----------------------------------------------------------------------------


def _shared(public: bytes, ciphertext: bytes) -> bytes:
    return hashlib.sha3_256(b"standin-mlkem" + public + ciphertext).digest()[:MLKEM_SHARED_BYTES]


class StandInKemKey:
    __slots__ = ("_public", "_seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != MLKEM_SEED_BYTES:
            raise ValueError("ML-KEM-1024 seed must be 64 bytes")
        self._seed = seed
        self._public = _shake(b"standin-mlkem-pk", seed, MLKEM_PUBLIC_BYTES)

    @classmethod
    def from_seed_bytes(cls, seed: bytes) -> StandInKemKey:
        return cls(seed)

    def public_key(self) -> StandInKemPublicKey:
        return StandInKemPublicKey(self._public)

    def private_bytes_raw(self) -> bytes:
        return self._seed

    def decapsulate(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) != MLKEM_CIPHERTEXT_BYTES:
            raise ValueError("bad ML-KEM-1024 ciphertext length")
        return _shared(self._public, ciphertext)


class StandInKemPublicKey:
    __slots__ = ("_public",)

    _counter = itertools.count()
    """Encapsulations in this process, the stand-in's only source of variety (deterministic)."""

    def __init__(self, public: bytes) -> None:
        self._public = public

    @classmethod
    def from_public_bytes(cls, public: bytes) -> StandInKemPublicKey:
        if len(public) != MLKEM_PUBLIC_BYTES:
            raise ValueError("bad ML-KEM-1024 public key length")
        return cls(bytes(public))

    def public_bytes_raw(self) -> bytes:
        return self._public

    def encapsulate(self) -> tuple[bytes, bytes]:
        """``(shared secret, ciphertext)``, in pyca/cryptography's order."""
        counter = next(StandInKemPublicKey._counter).to_bytes(8, "big")
        seed = self._public[:64] + counter
        ciphertext = _shake(b"standin-mlkem-ct", seed, MLKEM_CIPHERTEXT_BYTES)
        return _shared(self._public, ciphertext), ciphertext


STANDIN_MLDSA = SimpleNamespace(
    MLDSA87PrivateKey=StandInSigningKey, MLDSA87PublicKey=StandInVerifyingKey
)
STANDIN_MLKEM = SimpleNamespace(
    MLKEM1024PrivateKey=StandInKemKey, MLKEM1024PublicKey=StandInKemPublicKey
)


@contextmanager
def standin_crypto(enabled: bool = True) -> Iterator[bool]:
    """Runs the block with the stand-in ML-DSA and ML-KEM when ``enabled``; yields ``enabled``.

    Key objects created inside the block (identities, onion keys) belong to the stand-in and
    must not outlive it.
    """
    if not enabled:
        yield False
        return
    saved = identity_module.mldsa, kem_module.mlkem
    StandInKemPublicKey._counter = itertools.count()
    identity_module.mldsa = STANDIN_MLDSA  # type: ignore[assignment]
    kem_module.mlkem = STANDIN_MLKEM  # type: ignore[assignment]
    try:
        yield True
    finally:
        identity_module.mldsa, kem_module.mlkem = saved


def standin_active() -> bool:
    """Whether the stand-in is in place in this process."""
    return identity_module.mldsa is STANDIN_MLDSA
