"""AEAD ciphers with 96-bit nonces built from a 64-bit counter.

ChaCha20-Poly1305 is the default; AES-256-GCM is selectable (fast where AES-NI exists).
The nonce is ``4 zero bytes || counter (big-endian u64)``: callers pass counters, never raw
nonces, so a nonce can only repeat if a counter does, and the link layer forbids that.
"""

from __future__ import annotations

import enum
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from murmur.base.errors import CryptoError

KEY_BYTES = 32
TAG_BYTES = 16

_NONCE = struct.Struct(">4xQ")


class AeadAlgorithm(enum.IntEnum):
    CHACHA20_POLY1305 = 1
    AES_256_GCM = 2


class Aead:
    """One key, one algorithm. Encrypt/decrypt by counter."""

    __slots__ = ("_cipher",)

    def __init__(self, algorithm: AeadAlgorithm, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("AEAD key must be 32 bytes")
        if algorithm is AeadAlgorithm.CHACHA20_POLY1305:
            self._cipher: ChaCha20Poly1305 | AESGCM = ChaCha20Poly1305(key)
        else:
            self._cipher = AESGCM(key)

    def seal(self, counter: int, plaintext: bytes, associated_data: bytes | None = None) -> bytes:
        return self._cipher.encrypt(_NONCE.pack(counter), plaintext, associated_data)

    def open(
        self,
        counter: int,
        ciphertext: bytes | memoryview,
        associated_data: bytes | memoryview | None = None,
    ) -> bytes:
        try:
            return self._cipher.decrypt(_NONCE.pack(counter), ciphertext, associated_data)
        except InvalidTag:
            raise CryptoError() from None
