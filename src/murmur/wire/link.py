"""Link-layer byte formats: records, handshake messages, frames.

Theory of operation. A link is a byte stream of *records*: ``length (u32 BE) || body``. The
length is checked against a cap before a single body byte is buffered, so a hostile length can
never make the receiver allocate more than ``MAX_RECORD_BODY_BYTES``. The three handshake records
carry the messages below in the clear part and AEAD-sealed parts; every later record is one
AEAD-sealed *frame* whose plaintext is ``type (u8) || payload_len (u32) || payload || padding``,
so padding hides payload sizes inside the encryption. See docs/protocol/handshake.md.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from murmur.base.errors import RemoteProtocolError
from murmur.crypto.aead import TAG_BYTES, AeadAlgorithm
from murmur.crypto.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from murmur.crypto.kem import MLKEM_CIPHERTEXT_BYTES, MLKEM_PUBLIC_BYTES, X25519_BYTES
from murmur.wire.cells import CELL_BYTES
from murmur.wire.codec import Reader, Writer
from murmur.wire.envelope import CHANNEL_BYTES

LINK_VERSION = 1
AEAD_CODES = frozenset(int(a) for a in AeadAlgorithm)
RECORD_HEADER = struct.Struct(">I")
RECORD_HEADER_BYTES = RECORD_HEADER.size
MAX_PAYLOAD_BYTES = 262_144
"""Largest application message one frame carries (the largest gossip RPC)."""
MAX_RECORD_BODY_BYTES = 327_680
"""Largest sealed frame: payload, its header, padding and the tag must fit."""
MAX_HANDSHAKE_RECORD_BYTES = 16_384
FRAME_HEADER = struct.Struct(">BI")
FRAME_HEADER_BYTES = FRAME_HEADER.size
CELL_RECORD_BYTES = (
    RECORD_HEADER_BYTES + FRAME_HEADER_BYTES + CHANNEL_BYTES + CELL_BYTES + TAG_BYTES
)
"""A link record carrying one circuit cell: record header, frame header, channel byte, cell,
AEAD tag. Every circuit cell, whatever it carries, has this size on the wire, and a link
padding frame is padded to it."""
MAX_FRAME_PLAINTEXT_BYTES = MAX_RECORD_BODY_BYTES - TAG_BYTES
FINISHED_BYTES = 32

HELLO_BYTES = 2 + X25519_BYTES + MLKEM_PUBLIC_BYTES
AUTH_PLAINTEXT_BYTES = PUBLIC_KEY_BYTES + SIGNATURE_BYTES + FINISHED_BYTES
AUTH_SEALED_BYTES = AUTH_PLAINTEXT_BYTES + TAG_BYTES


class FrameType(enum.IntEnum):
    DATA = 1
    PING = 2
    PONG = 3
    PADDING = 4
    REKEY = 5
    CLOSE = 6


PING_PAYLOAD_BYTES = 8
_FRAME_TYPES = {int(t): t for t in FrameType}


def encode_record(body: bytes) -> bytes:
    return RECORD_HEADER.pack(len(body)) + body


@dataclass(frozen=True, slots=True)
class Hello:
    """Message 1, initiator → responder: version, AEAD choice, the two ephemeral public keys."""

    aead: int
    x25519_public: bytes
    mlkem_public: bytes

    def encode(self) -> bytes:
        return (
            Writer()
            .push_u8(LINK_VERSION)
            .push_u8(self.aead)
            .push_bytes(self.x25519_public)
            .push_bytes(self.mlkem_public)
            .getvalue()
        )

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        r = Reader(data)
        version = r.pull_u8()
        if version != LINK_VERSION:
            raise RemoteProtocolError("bad_version", f"link version {version}")
        aead = r.pull_u8()
        if aead not in AEAD_CODES:
            raise RemoteProtocolError("bad_aead", f"aead {aead}")
        msg = cls(aead, r.pull_bytes(X25519_BYTES), r.pull_bytes(MLKEM_PUBLIC_BYTES))
        r.expect_end()
        return msg


@dataclass(frozen=True, slots=True)
class Reply:
    """Message 2, responder → initiator: ephemeral X25519, ML-KEM ciphertext, sealed auth."""

    x25519_public: bytes
    mlkem_ciphertext: bytes
    sealed_auth: bytes

    def clear_part(self) -> bytes:
        return self.x25519_public + self.mlkem_ciphertext

    def encode(self) -> bytes:
        return self.clear_part() + self.sealed_auth

    @classmethod
    def decode(cls, data: bytes) -> Reply:
        r = Reader(data)
        msg = cls(
            r.pull_bytes(X25519_BYTES),
            r.pull_bytes(MLKEM_CIPHERTEXT_BYTES),
            r.pull_bytes(AUTH_SEALED_BYTES),
        )
        r.expect_end()
        return msg


@dataclass(frozen=True, slots=True)
class Auth:
    """The sealed part of messages 2 and 3: identity key, signature, finished MAC."""

    public_key: bytes
    signature: bytes
    finished: bytes

    def encode(self) -> bytes:
        return self.public_key + self.signature + self.finished

    @classmethod
    def decode(cls, data: bytes) -> Auth:
        r = Reader(data)
        msg = cls(
            r.pull_bytes(PUBLIC_KEY_BYTES),
            r.pull_bytes(SIGNATURE_BYTES),
            r.pull_bytes(FINISHED_BYTES),
        )
        r.expect_end()
        return msg


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    payload: bytes

    def __init__(self, type: FrameType, payload: bytes) -> None:
        # Written out: mypyc compiles this one, the dataclasses module's runs interpreted
        # (about 12 x slower), and one is built for every frame.
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "payload", payload)


def encode_frame_plaintext(frame_type: FrameType, payload: bytes, padding: int = 0) -> bytes:
    """``type || len || payload || zero padding`` (zeros: the AEAD hides them)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    size = FRAME_HEADER_BYTES + len(payload) + padding
    if padding < 0 or size > MAX_FRAME_PLAINTEXT_BYTES:
        raise ValueError("padding out of range")
    return FRAME_HEADER.pack(frame_type, len(payload)) + payload + bytes(padding)


def decode_frame_plaintext(plaintext: bytes) -> Frame:
    if len(plaintext) < FRAME_HEADER_BYTES:
        raise RemoteProtocolError("truncated", "frame header")
    type_code, length = FRAME_HEADER.unpack_from(plaintext)
    if length > MAX_PAYLOAD_BYTES or FRAME_HEADER_BYTES + length > len(plaintext):
        raise RemoteProtocolError("bad_length", "frame payload length")
    frame_type = _FRAME_TYPES.get(type_code)
    if frame_type is None:
        raise RemoteProtocolError("bad_frame_type", str(type_code))
    end = FRAME_HEADER_BYTES + length
    return Frame(frame_type, plaintext[FRAME_HEADER_BYTES:end])
