"""A ChaCha20 keystream applied to consecutive buffers (relay-cell onion layers).

One object is one continuous keystream (fresh key per circuit and direction, zero nonce, block
counter from 0), so counters are implicit: callers must apply it to cells in order, which links
guarantee. Never reuse a key for two streams.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

_ZERO_NONCE = bytes(16)


class KeyStream:
    __slots__ = ("_ctx",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("ChaCha20 key must be 32 bytes")
        self._ctx = Cipher(algorithms.ChaCha20(key, _ZERO_NONCE), mode=None).encryptor()

    def apply(self, body: bytes) -> bytes:
        return self._ctx.update(body)
