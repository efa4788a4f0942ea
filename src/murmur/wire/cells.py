"""Fixed-size circuit cells and the relay messages they carry (docs/protocol/circuits.md).

Theory of operation. Every cell on a link is exactly :data:`CELL_BYTES` (546) bytes:
``circ_id (u32) || command (u8) || body (541 bytes)``, whatever the command, the hop position or
the payload, so cell sizes tell nobody anything. The circuit id is per link and chosen by the
side that creates the circuit on that link (its top bit says which side, so the two ends never
collide). CREATED and DESTROY bodies are a fixed layout followed by zero padding; a RELAY body
is onion-encrypted and only the hop it is meant for can read it.

A RELAY body, once the right hop has removed its layer, reads
``recognized (u16, 0) || digest (16 B) || relay_command (u8) || length (u16) || data || zeros``.
The digest is a per-hop MAC filled in by :mod:`murmur.overlay.circuits.layers`; this module only
lays the bytes out. Relay messages (EXTEND, EXTENDED, DATA, COVER, REPLY, TRUNCATED) are parsed
from ``data``.

The cell size is derived, not chosen: a DATA cell is cell header + relay header + fragment
header + one chunk, and the chunk is the smallest padding bucket (512 bytes), so the commonest
message (a transaction padded to 512 bytes, and the cover that copies it) is one cell. The
hybrid onionskin (1,632 bytes) no longer fits a cell, so the two handshake messages span cells,
as Tor's proposal 340 lets relay messages do: CREATE is :data:`CREATE_CELLS` CREATE cells whose
bodies are fragments, and EXTEND is :data:`EXTEND_CELLS` EXTEND relay cells whose data are
fragments. Both are zero-padded to a fixed length first (:func:`create_bodies`,
:func:`extend_data`), so their cell counts never depend on the content (an IPv6 next hop takes
as many cells as an IPv4 one). Handshake fragments carry message id 0, which DATA and REPLY
never use; every chunk is full, and the receiver checks the padding is zero.

A message that spans DATA or REPLY cells is padded before it is cut into fragments (seed §2.1):
``length (u32) || message || random padding``, to the smallest size bucket that holds it
(:data:`PADDING_BUCKETS_BYTES`; beyond the largest, to :data:`MAX_ENVELOPE_BYTES`). The padding
lives inside the onion encryption, and the bucket decides how many cells the message takes, so
relays and link observers learn only the bucket. The receiving end checks the length and ignores
the padding.

Every parser here raises :class:`RemoteProtocolError` and nothing else on hostile bytes.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from murmur.base.errors import RemoteProtocolError
from murmur.base.ids import NODE_ID_BYTES, NodeId
from murmur.base.rng import Rng
from murmur.crypto.kem import MLKEM_CIPHERTEXT_BYTES, X25519_BYTES
from murmur.wire.codec import Reader, Writer

PADDING_BUCKETS_BYTES: tuple[int, ...] = (512, 2048, 8192, 32768, 131_072)
"""The seed's size buckets (§2.1): tiny, small (a typical transaction), medium, large, 128 KiB."""
CELL_HEADER = struct.Struct(">IB")
CELL_HEADER_BYTES = CELL_HEADER.size
RELAY_HEADER = struct.Struct(">H16sBH")
RELAY_HEADER_BYTES = RELAY_HEADER.size
FRAGMENT_HEADER = struct.Struct(">IHH")
FRAGMENT_HEADER_BYTES = FRAGMENT_HEADER.size
FRAGMENT_CHUNK_BYTES = PADDING_BUCKETS_BYTES[0]
"""A DATA cell carries one whole smallest-bucket message."""
RELAY_DATA_BYTES = FRAGMENT_HEADER_BYTES + FRAGMENT_CHUNK_BYTES
CELL_BODY_BYTES = RELAY_HEADER_BYTES + RELAY_DATA_BYTES
CELL_BYTES = CELL_HEADER_BYTES + CELL_BODY_BYTES
"""5 + 21 + 8 + 512 = 546 bytes."""
CIRC_ID_SIDE_BIT = 0x8000_0000
"""Set in every circuit id created by the side whose node id sorts lower."""

DIGEST_OFFSET = 2
DIGEST_BYTES = 16
DIGEST_END = DIGEST_OFFSET + DIGEST_BYTES

KEY_ID_BYTES = 32
ONIONSKIN_BYTES = KEY_ID_BYTES + X25519_BYTES + MLKEM_CIPHERTEXT_BYTES
AUTH_BYTES = 32
MAX_ADDRESS_BYTES = 1 + 16 + 2
"""An IPv6 relay address: family, IP, port."""
EXTEND_BYTES = NODE_ID_BYTES + MAX_ADDRESS_BYTES + ONIONSKIN_BYTES
"""An EXTEND with an IPv6 address; shorter ones are zero-padded to this length."""

HANDSHAKE_MESSAGE_ID = 0
"""Message id of CREATE and EXTEND fragments (DATA and REPLY ids start at 1)."""
CREATE_CHUNK_BYTES = CELL_BODY_BYTES - FRAGMENT_HEADER_BYTES
"""A CREATE body is a fragment header and a full chunk, with no relay header."""
CREATE_CELLS = -(-ONIONSKIN_BYTES // CREATE_CHUNK_BYTES)
EXTEND_CELLS = -(-EXTEND_BYTES // FRAGMENT_CHUNK_BYTES)
CREATE_BYTES = CREATE_CELLS * CREATE_CHUNK_BYTES
"""A reassembled CREATE: the onionskin and zero padding."""
EXTEND_PADDED_BYTES = EXTEND_CELLS * FRAGMENT_CHUNK_BYTES
"""A reassembled EXTEND: its fields and zero padding."""

MAX_MESSAGE_BYTES = 131_072
"""Largest payload one circuit message carries (a transaction, a sync request or response)."""
MAX_TOPIC_BYTES = 64
PADDING_LENGTH = struct.Struct(">I")
PADDING_LENGTH_BYTES = PADDING_LENGTH.size
MAX_ENVELOPE_BYTES = PADDING_LENGTH_BYTES + 2 + MAX_TOPIC_BYTES + MAX_MESSAGE_BYTES
"""Largest padded message (length, envelope header, topic, payload): also the padding ceiling."""
MAX_FRAGMENTS = -(-MAX_ENVELOPE_BYTES // FRAGMENT_CHUNK_BYTES)

_ZERO_BODY = bytes(CELL_BODY_BYTES)

E = TypeVar("E", bound=enum.IntEnum)


class CellCommand(enum.IntEnum):
    CREATE = 1
    CREATED = 2
    RELAY = 3
    DESTROY = 4


class RelayCommand(enum.IntEnum):
    EXTEND = 1
    EXTENDED = 2
    DATA = 3
    COVER = 4
    REPLY = 5
    TRUNCATED = 6


class DestroyReason(enum.IntEnum):
    """Why a circuit is torn down, hop by hop (visible to the two ends of one link only)."""

    REQUESTED = 1
    """The origin closed it (rotation, failure handling)."""
    PROTOCOL = 2
    RESOURCE = 3
    HOP_GONE = 4
    """A link further along (or back) went away, or a DESTROY arrived from there."""
    TIMEOUT = 5
    UNKNOWN_KEY = 6
    RATE_LIMITED = 7


class TruncateReason(enum.IntEnum):
    """Why an EXTEND failed, told to the origin only (inside the onion)."""

    CONNECT_FAILED = 1
    REFUSED = 2
    LOOP = 3
    RATE_LIMITED = 4
    TIMEOUT = 5


class MessageKind(enum.IntEnum):
    PUBLISH = 1
    """The exit validates the payload and publishes it to gossip as its own."""
    REQUEST = 2
    """The exit answers; the answer travels back as REPLY cells."""


def _enum(kind: type[E], value: int, reason: str) -> E:
    try:
        return kind(value)
    except ValueError:
        raise RemoteProtocolError(reason, str(value)) from None


# --- the link-level cell -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    circ_id: int
    command: CellCommand
    body: bytes = field(repr=False)

    def __init__(self, circ_id: int, command: CellCommand, body: bytes) -> None:
        # Written out: mypyc compiles this one, the dataclasses module's runs interpreted
        # (about 12 x slower), and one is built for every cell.
        object.__setattr__(self, "circ_id", circ_id)
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "body", body)

    def encode(self) -> bytes:
        return encode_cell(self.circ_id, self.command, self.body)


def encode_cell(circ_id: int, command: CellCommand, body: bytes) -> bytes:
    """``header || body || zero padding`` to exactly :data:`CELL_BYTES`."""
    if not 0 < circ_id <= 0xFFFF_FFFF:
        raise ValueError("circuit id out of range")
    if len(body) > CELL_BODY_BYTES:
        raise ValueError("cell body too long")
    return CELL_HEADER.pack(circ_id, command) + body + _ZERO_BODY[len(body) :]


def decode_cell(data: bytes) -> Cell:
    if len(data) != CELL_BYTES:
        raise RemoteProtocolError("bad_cell_size", f"{len(data)} bytes")
    circ_id, code = CELL_HEADER.unpack_from(data)
    if circ_id == 0:
        raise RemoteProtocolError("bad_circ_id", "zero")
    command = _enum(CellCommand, code, "bad_cell_command")
    return Cell(circ_id, command, bytes(data[CELL_HEADER_BYTES:]))


def _expect_zeros(r: Reader) -> None:
    if any(r.pull_rest()):
        raise RemoteProtocolError("bad_padding", "non-zero padding")


# --- CREATE / CREATED / DESTROY bodies ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Onionskin:
    """The client's half of the circuit handshake (CREATE cells, EXTEND payload)."""

    key_id: bytes
    x25519_public: bytes
    mlkem_ciphertext: bytes

    def encode(self) -> bytes:
        return self.key_id + self.x25519_public + self.mlkem_ciphertext

    @classmethod
    def pull(cls, r: Reader) -> Onionskin:
        return cls(
            r.pull_bytes(KEY_ID_BYTES),
            r.pull_bytes(X25519_BYTES),
            r.pull_bytes(MLKEM_CIPHERTEXT_BYTES),
        )

    @classmethod
    def decode_body(cls, body: bytes) -> Onionskin:
        r = Reader(body)
        skin = cls.pull(r)
        _expect_zeros(r)
        return skin


@dataclass(frozen=True, slots=True)
class Created:
    """The relay's half: its ephemeral X25519 key and the auth MAC (CREATED body, EXTENDED)."""

    x25519_public: bytes
    auth: bytes

    def encode(self) -> bytes:
        return self.x25519_public + self.auth

    @classmethod
    def decode_body(cls, body: bytes) -> Created:
        r = Reader(body)
        msg = cls(r.pull_bytes(X25519_BYTES), r.pull_bytes(AUTH_BYTES))
        _expect_zeros(r)
        return msg


def encode_reason(reason: enum.IntEnum) -> bytes:
    return bytes((reason,))


def decode_destroy(body: bytes) -> DestroyReason:
    r = Reader(body)
    reason = _enum(DestroyReason, r.pull_u8(), "bad_destroy_reason")
    _expect_zeros(r)
    return reason


# --- the decrypted RELAY body ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayMessage:
    command: RelayCommand
    data: bytes


def encode_relay_plaintext(command: RelayCommand, data: bytes) -> bytearray:
    """The body before the digest is filled in and the layers are applied (digest all zero)."""
    if len(data) > RELAY_DATA_BYTES:
        raise ValueError("relay data too long")
    body = bytearray(CELL_BODY_BYTES)
    RELAY_HEADER.pack_into(body, 0, 0, bytes(DIGEST_BYTES), command, len(data))
    body[RELAY_HEADER_BYTES : RELAY_HEADER_BYTES + len(data)] = data
    return body


def decode_relay_plaintext(body: bytes) -> RelayMessage:
    """Parses a body its hop has recognized (the digest was checked by the caller)."""
    if len(body) != CELL_BODY_BYTES:
        raise RemoteProtocolError("bad_cell_size", "relay body")
    _, _, code, length = RELAY_HEADER.unpack_from(body)
    command = _enum(RelayCommand, code, "bad_relay_command")
    if length > RELAY_DATA_BYTES:
        raise RemoteProtocolError("bad_length", f"relay length {length}")
    end = RELAY_HEADER_BYTES + length
    if any(body[end:]):
        raise RemoteProtocolError("bad_padding", "non-zero relay padding")
    return RelayMessage(command, bytes(body[RELAY_HEADER_BYTES:end]))


# --- relay message payloads --------------------------------------------------------------------


@functools.lru_cache(maxsize=65_536)
def _packed_ip(host: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(host)
    return ip.version, ip.packed


@dataclass(frozen=True, slots=True)
class RelayAddress:
    """Where a relay listens: an IP literal (IPv4 or IPv6, kept canonical) and a TCP port."""

    host: str
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", str(ipaddress.ip_address(self.host)))
        if not 0 < self.port <= 0xFFFF:
            raise ValueError("port out of range")

    def push(self, w: Writer) -> None:
        version, packed = _packed_ip(self.host)
        w.push_u8(version).push_bytes(packed).push_u16(self.port)

    @classmethod
    def pull(cls, r: Reader) -> RelayAddress:
        version = r.pull_u8()
        if version == 4:
            host = str(ipaddress.IPv4Address(r.pull_bytes(4)))
        elif version == 6:
            host = str(ipaddress.IPv6Address(r.pull_bytes(16)))
        else:
            raise RemoteProtocolError("bad_address", f"family {version}")
        port = r.pull_u16()
        if port == 0:
            raise RemoteProtocolError("bad_address", "port 0")
        return cls(host, port)


@dataclass(frozen=True, slots=True)
class Extend:
    """Origin → hop: open the next leg to ``next_node`` at ``address`` with this onionskin."""

    next_node: NodeId
    address: RelayAddress
    onionskin: Onionskin

    def encode(self) -> bytes:
        w = Writer().push_bytes(self.next_node)
        self.address.push(w)
        return w.push_bytes(self.onionskin.encode()).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Extend:
        """Parses a reassembled EXTEND: the fields, then zero padding (see :func:`extend_data`)."""
        r = Reader(data)
        msg = cls(NodeId(r.pull_bytes(NODE_ID_BYTES)), RelayAddress.pull(r), Onionskin.pull(r))
        _expect_zeros(r)
        return msg


def decode_extended(data: bytes) -> Created:
    r = Reader(data)
    msg = Created(r.pull_bytes(X25519_BYTES), r.pull_bytes(AUTH_BYTES))
    r.expect_end()
    return msg


def decode_truncated(data: bytes) -> TruncateReason:
    r = Reader(data)
    reason = _enum(TruncateReason, r.pull_u8(), "bad_truncate_reason")
    r.expect_end()
    return reason


@dataclass(frozen=True, slots=True)
class Fragment:
    """One DATA or REPLY cell's share of a message: ``message_id, index/count, chunk``."""

    message_id: int
    index: int
    count: int
    chunk: bytes

    def encode(self) -> bytes:
        return FRAGMENT_HEADER.pack(self.message_id, self.index, self.count) + self.chunk

    @classmethod
    def decode(cls, data: bytes, *, chunk_bytes: int = FRAGMENT_CHUNK_BYTES) -> Fragment:
        """A fragment whose chunk is the rest of ``data``: at most ``chunk_bytes``, exactly that
        unless it is the last."""
        if len(data) < FRAGMENT_HEADER_BYTES:
            raise RemoteProtocolError("truncated", "fragment header")
        message_id, index, count = FRAGMENT_HEADER.unpack_from(data)
        if not 0 < count <= MAX_FRAGMENTS or index >= count:
            raise RemoteProtocolError("bad_fragment", f"{index}/{count}")
        chunk = bytes(data[FRAGMENT_HEADER_BYTES:])
        if (
            not chunk
            or len(chunk) > chunk_bytes
            or (index < count - 1 and len(chunk) != chunk_bytes)
        ):
            raise RemoteProtocolError("bad_fragment", "chunk size")
        return cls(message_id, index, count, chunk)


# --- handshakes that span cells ----------------------------------------------------------------


def _handshake_fragments(message: bytes, cells: int, chunk_bytes: int) -> list[Fragment]:
    """``message`` zero-padded to ``cells`` full chunks, cut into fragments of message id 0."""
    size = cells * chunk_bytes
    if len(message) > size:
        raise ValueError("handshake message too long")
    padded = message + bytes(size - len(message))
    return [
        Fragment(HANDSHAKE_MESSAGE_ID, i, cells, padded[i * chunk_bytes : (i + 1) * chunk_bytes])
        for i in range(cells)
    ]


def _decode_handshake_fragment(data: bytes, cells: int, chunk_bytes: int) -> Fragment:
    fragment = Fragment.decode(data, chunk_bytes=chunk_bytes)
    if fragment.message_id != HANDSHAKE_MESSAGE_ID:
        raise RemoteProtocolError("bad_fragment", "handshake message id")
    if fragment.count != cells or len(fragment.chunk) != chunk_bytes:
        raise RemoteProtocolError("bad_fragment", "handshake fragment size")
    return fragment


def create_bodies(onionskin: Onionskin) -> list[bytes]:
    """The bodies of the :data:`CREATE_CELLS` CREATE cells that carry ``onionskin``."""
    parts = _handshake_fragments(onionskin.encode(), CREATE_CELLS, CREATE_CHUNK_BYTES)
    return [part.encode() for part in parts]


def decode_create_body(body: bytes) -> Fragment:
    """One CREATE cell's fragment; reassembled in order, they give :data:`CREATE_BYTES` bytes
    for :meth:`Onionskin.decode_body`."""
    return _decode_handshake_fragment(body, CREATE_CELLS, CREATE_CHUNK_BYTES)


def extend_data(extend: Extend) -> list[bytes]:
    """The data of the :data:`EXTEND_CELLS` EXTEND relay cells that carry ``extend``."""
    parts = _handshake_fragments(extend.encode(), EXTEND_CELLS, FRAGMENT_CHUNK_BYTES)
    return [part.encode() for part in parts]


def decode_extend_data(data: bytes) -> Fragment:
    """One EXTEND relay cell's fragment; reassembled in order, they give :data:`EXTEND_PADDED_BYTES`
    bytes for :meth:`Extend.decode`."""
    return _decode_handshake_fragment(data, EXTEND_CELLS, FRAGMENT_CHUNK_BYTES)


def check_buckets(buckets: Sequence[int]) -> None:
    """Buckets must rise strictly and lie in (length prefix, :data:`MAX_ENVELOPE_BYTES`]."""
    previous = PADDING_LENGTH_BYTES
    for size in buckets:
        if not previous < size <= MAX_ENVELOPE_BYTES:
            raise ValueError(f"padding buckets must rise within {MAX_ENVELOPE_BYTES} bytes")
        previous = size


def padded_size(size: int, buckets: Sequence[int]) -> int:
    """What a framed message of ``size`` bytes is padded to: the smallest bucket that holds it,
    :data:`MAX_ENVELOPE_BYTES` beyond the largest, or ``size`` itself when there are no buckets
    (padding switched off)."""
    if not buckets:
        return size
    for bucket in buckets:
        if bucket >= size:
            return bucket
    return max(size, MAX_ENVELOPE_BYTES)


def cells_for(padded_bytes: int) -> int:
    """DATA (or COVER) cells a padded message of this size takes (at least one)."""
    return max(1, -(-padded_bytes // FRAGMENT_CHUNK_BYTES))


def envelope_size(topic: str, payload_bytes: int) -> int:
    """Bytes of an :class:`Envelope` carrying ``payload_bytes`` on ``topic``, before padding."""
    return PADDING_LENGTH_BYTES + 2 + len(topic.encode()) + payload_bytes


def pad_message(message: bytes, padding: bytes = b"") -> bytes:
    """``length (u32) || message || padding``."""
    return PADDING_LENGTH.pack(len(message)) + message + padding


def pad_to_bucket(message: bytes, buckets: Sequence[int], rng: Rng) -> bytes:
    """``message`` framed, then random bytes up to its bucket (see :func:`padded_size`)."""
    framed = PADDING_LENGTH_BYTES + len(message)
    return pad_message(message, rng.random_bytes(padded_size(framed, buckets) - framed))


def unpad_message(data: bytes) -> bytes:
    """The message inside a padded one; a length past the end is ``bad_padding_length``."""
    if len(data) < PADDING_LENGTH_BYTES:
        raise RemoteProtocolError("bad_padding_length", "no length prefix")
    (length,) = PADDING_LENGTH.unpack_from(data)
    if length > len(data) - PADDING_LENGTH_BYTES:
        raise RemoteProtocolError("bad_padding_length", f"{length} > {len(data)} bytes")
    return bytes(data[PADDING_LENGTH_BYTES : PADDING_LENGTH_BYTES + length])


def split_message(message_id: int, message: bytes) -> list[Fragment]:
    """Cuts a message into full chunks and one last, shorter or equal, non-empty chunk."""
    if not message or len(message) > MAX_ENVELOPE_BYTES:
        raise ValueError("message size out of range")
    chunks = [
        message[i : i + FRAGMENT_CHUNK_BYTES] for i in range(0, len(message), FRAGMENT_CHUNK_BYTES)
    ]
    return [Fragment(message_id, i, len(chunks), c) for i, c in enumerate(chunks)]


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a reassembled DATA message says to the exit: publish or request, on which topic.

    On the wire it is always padded (:func:`pad_message`): ``length (u32) || kind (u8) ||
    topic (u8 length, UTF-8) || payload || padding``; with no padding bytes it is the exact size.
    """

    kind: MessageKind
    topic: str
    payload: bytes

    def __post_init__(self) -> None:
        if not 0 < len(self.topic.encode()) <= MAX_TOPIC_BYTES:
            raise ValueError("topic length out of range")
        if len(self.payload) > MAX_MESSAGE_BYTES:
            raise ValueError("payload too long")

    @property
    def framed_size(self) -> int:
        """Bytes of the encoding before any padding."""
        return envelope_size(self.topic, len(self.payload))

    def encode(self, padding: bytes = b"") -> bytes:
        return pad_message(
            Writer()
            .push_u8(self.kind)
            .push_vbytes(self.topic.encode(), width=1)
            .push_bytes(self.payload)
            .getvalue(),
            padding,
        )

    def encode_padded(self, buckets: Sequence[int], rng: Rng) -> bytes:
        """The encoding filled with random bytes up to its bucket."""
        size = self.framed_size
        return self.encode(rng.random_bytes(padded_size(size, buckets) - size))

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Checks the length prefix, drops the padding, parses the rest."""
        r = Reader(unpad_message(data))
        kind = _enum(MessageKind, r.pull_u8(), "bad_message_kind")
        raw_topic = r.pull_vbytes(MAX_TOPIC_BYTES, width=1)
        try:
            topic = raw_topic.decode()
        except UnicodeDecodeError:
            raise RemoteProtocolError("bad_topic", "not UTF-8") from None
        if not topic:
            raise RemoteProtocolError("bad_topic", "empty")
        payload = r.pull_rest()
        if len(payload) > MAX_MESSAGE_BYTES:
            raise RemoteProtocolError("bad_length", "payload too long")
        return cls(kind, topic, payload)
