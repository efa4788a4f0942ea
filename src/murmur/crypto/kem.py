"""The two key agreements the hybrid handshakes combine: X25519 and ML-KEM-1024.

Secrets are created from injected seed bytes (``from_seed``), so the core stays deterministic
under a seeded RNG. ML-KEM encapsulation draws its own randomness inside OpenSSL
(pyca/cryptography offers no derandomized ``encapsulate``); the handshakes therefore take the
encapsulation result as a value, and test vectors pin the ciphertext and shared secret.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from murmur.base.errors import CryptoError

X25519_BYTES = 32
MLKEM_SEED_BYTES = 64
MLKEM_PUBLIC_BYTES = 1568
MLKEM_CIPHERTEXT_BYTES = 1568
MLKEM_SHARED_BYTES = 32


class X25519Secret:
    __slots__ = ("_key", "public")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != X25519_BYTES:
            raise ValueError("X25519 secret must be 32 bytes")
        self._key = x25519.X25519PrivateKey.from_private_bytes(seed)
        self.public = self._key.public_key().public_bytes_raw()

    def exchange(self, peer_public: bytes) -> bytes:
        """X25519 with an all-zero check (a low-order peer key is an attack)."""
        if len(peer_public) != X25519_BYTES:
            raise CryptoError()
        try:
            shared = self._key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
        except ValueError:
            raise CryptoError() from None
        return shared


class MlKemSecret:
    __slots__ = ("_key", "public")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != MLKEM_SEED_BYTES:
            raise ValueError("ML-KEM-1024 seed must be 64 bytes")
        self._key = mlkem.MLKEM1024PrivateKey.from_seed_bytes(seed)
        self.public = self._key.public_key().public_bytes_raw()

    def decapsulate(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) != MLKEM_CIPHERTEXT_BYTES:
            raise CryptoError()
        try:
            return self._key.decapsulate(ciphertext)
        except ValueError:
            raise CryptoError() from None


def mlkem_encapsulate(peer_public: bytes) -> tuple[bytes, bytes]:
    """Returns ``(ciphertext, shared_secret)`` for a peer's ML-KEM-1024 public key."""
    if len(peer_public) != MLKEM_PUBLIC_BYTES:
        raise CryptoError()
    try:
        key = mlkem.MLKEM1024PublicKey.from_public_bytes(peer_public)
    except ValueError:
        raise CryptoError() from None
    shared, ciphertext = key.encapsulate()
    return ciphertext, shared
