"""Encrypted framing after the handshake (seed pq-mixnet §3.2.2, made sound).

Theory of operation. Each direction has its own key and its own 64-bit frame counter, which is
the AEAD nonce and is never sent: the receiver uses the counter it expects, so a replayed,
dropped or reordered record fails its tag and closes the link. The record length header is the
associated data, so it cannot be altered either. After ``REKEY_AFTER_FRAMES`` frames or
``REKEY_AFTER_BYTES`` bytes the sender emits a REKEY frame under the old key and ratchets
``key' = HKDF-Expand(key, "murmur rekey")``, resetting its counter; the receiver ratchets when it
opens that frame. Counters therefore stay below 2**21 and can never wrap, and an old key cannot
be recomputed from a new one.
"""

from __future__ import annotations

from murmur.base.errors import LocalProtocolError
from murmur.crypto.aead import TAG_BYTES, Aead, AeadAlgorithm
from murmur.crypto.kdf import hkdf_expand
from murmur.wire.link import (
    RECORD_HEADER,
    Frame,
    FrameType,
    decode_frame_plaintext,
    encode_frame_plaintext,
)

REKEY_AFTER_FRAMES = 1 << 20
REKEY_AFTER_BYTES = 1 << 32
HARD_FRAME_LIMIT = 1 << 21
"""A direction refuses to seal past this without a rekey: nonce reuse is impossible."""


def ratchet(key: bytes) -> bytes:
    return hkdf_expand(key, b"murmur rekey", 32)


class SendChannel:
    __slots__ = ("_aead", "_algorithm", "_bytes", "_counter", "_key")

    def __init__(self, algorithm: AeadAlgorithm, key: bytes) -> None:
        self._algorithm = algorithm
        self._install(key)

    def _install(self, key: bytes) -> None:
        self._key = key
        self._aead = Aead(self._algorithm, key)
        self._counter = 0
        self._bytes = 0

    def seal(self, frame_type: FrameType, payload: bytes, padding: int = 0) -> bytes:
        """One record; a REKEY record is prepended first when the key is due."""
        prefix = b""
        if self._counter >= REKEY_AFTER_FRAMES or self._bytes >= REKEY_AFTER_BYTES:
            prefix = self._seal_one(encode_frame_plaintext(FrameType.REKEY, b""))
            self._install(ratchet(self._key))
        return prefix + self._seal_one(encode_frame_plaintext(frame_type, payload, padding))

    def _seal_one(self, plaintext: bytes) -> bytes:
        if self._counter >= HARD_FRAME_LIMIT:
            raise LocalProtocolError("frame counter limit reached without rekey")
        header = RECORD_HEADER.pack(len(plaintext) + TAG_BYTES)
        sealed = self._aead.seal(self._counter, plaintext, header)
        self._counter += 1
        self._bytes += len(plaintext)
        return header + sealed


class ReceiveChannel:
    __slots__ = ("_aead", "_algorithm", "_counter", "_key")

    def __init__(self, algorithm: AeadAlgorithm, key: bytes) -> None:
        self._algorithm = algorithm
        self._install(key)

    def _install(self, key: bytes) -> None:
        self._key = key
        self._aead = Aead(algorithm=self._algorithm, key=key)
        self._counter = 0

    def open(self, header: bytes | memoryview, body: bytes | memoryview) -> Frame | None:
        """The frame in one record, or ``None`` for a REKEY (handled here)."""
        plaintext = self._aead.open(self._counter, body, header)
        self._counter += 1
        frame = decode_frame_plaintext(plaintext)
        if frame.type is FrameType.REKEY:
            self._install(ratchet(self._key))
            return None
        return frame
