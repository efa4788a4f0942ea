"""The gossip RPC byte format (the fast path's wire format).

Theory of operation: one RPC is one link message. It starts with a version byte and then holds
six sections in a fixed order, each a one-byte count followed by that many records:
subscription changes, published messages, GRAFT, PRUNE, IHAVE and IWANT. Every count and length
has a cap named below, so a hostile RPC can make the decoder allocate at most
:data:`MAX_RPC_BYTES`. The full layout, with a test vector, is in ``docs/protocol/gossip.md``.

Messages are anonymous and content-addressed (gossipsub's *StrictNoSign* mode): no author, no
sequence number, no signature, so a transaction an onion exit publishes looks like any other.
A message's id is :func:`message_id` of its topic and data, computed by whoever receives it and
never read from the wire; ids only travel in IHAVE/IWANT, as fixed 20-byte strings.

:func:`decode_rpc` raises only :class:`RemoteProtocolError`. The dataclasses check themselves
(an invalid one raises :class:`LocalProtocolError`), so :func:`encode_rpc` never writes bytes
its peer would refuse. :class:`RpcBatch` lets a router queue pre-encoded records for one peer and
packs them into several RPCs when one would break a cap; ``encode_rpc`` uses it too, so there
is one encoder.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.crypto.hashing import sha3_256
from murmur.wire.codec import Writer
from murmur.wire.envelope import CHANNEL_BYTES
from murmur.wire.link import MAX_PAYLOAD_BYTES

GOSSIP_RPC_VERSION = 0x01
MESSAGE_ID_BYTES = 20
MAX_TOPIC_BYTES = 64
MAX_MESSAGE_DATA_BYTES = 131_072
"""The largest padding bucket (128 KiB)."""
MAX_RPC_BYTES = MAX_PAYLOAD_BYTES - CHANNEL_BYTES
"""262,143: an RPC travels as one link message, after its channel byte. (It was 262,144, one
byte over: a batch filled exactly to it made ``LinkConnection.send_message`` raise, and two
large messages from a peer arriving in one read could fill it.)"""
MAX_SUBSCRIPTIONS_PER_RPC = 64
MAX_MESSAGES_PER_RPC = 64
MAX_CONTROL_ENTRIES_PER_RPC = 64
"""Per control kind: at most this many GRAFT, PRUNE, IHAVE and IWANT entries each."""
MAX_IDS_PER_CONTROL = 5000
"""Message ids in one IHAVE or one IWANT entry."""
MAX_PRUNE_BACKOFF_S = 0xFFFF

_TOPIC_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789_.-"
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U8_BYTES = [bytes((n,)) for n in range(256)]
_VERSION_BYTE = bytes((GOSSIP_RPC_VERSION,))
_NO_CONTROL = bytes(4)
"""The four control sections' counts when all are empty."""
_EMPTY_RPC = _VERSION_BYTE + bytes(6)


def is_valid_topic(topic: str) -> bool:
    """1 to 64 bytes of ``[a-z0-9_.-]``."""
    return (
        0 < len(topic) <= MAX_TOPIC_BYTES
        and topic.isascii()
        and not topic.encode("ascii").translate(None, _TOPIC_ALPHABET)
    )


def message_id(topic: str, data: bytes) -> bytes:
    """First 20 bytes of SHA3-256(topic || 0x00 || data); the NUL keeps topic and data apart."""
    return sha3_256(topic.encode("ascii") + b"\x00", data)[:MESSAGE_ID_BYTES]


def _check_topic(topic: str) -> None:
    if not is_valid_topic(topic):
        raise LocalProtocolError(f"invalid gossip topic {topic!r}")


def _check_ids(ids: tuple[bytes, ...]) -> None:
    if len(ids) > MAX_IDS_PER_CONTROL:
        raise LocalProtocolError(f"{len(ids)} message ids > {MAX_IDS_PER_CONTROL}")
    if any(len(mid) != MESSAGE_ID_BYTES for mid in ids):
        raise LocalProtocolError(f"message ids are {MESSAGE_ID_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class Subscription:
    topic: str
    subscribe: bool
    """True to subscribe, False to unsubscribe."""

    def __post_init__(self) -> None:
        _check_topic(self.topic)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    data: bytes

    def __init__(self, topic: str, data: bytes) -> None:
        # Written out: mypyc compiles this one, the dataclasses module's runs interpreted
        # (about 12 x slower), and one is built for every frame.
        _check_topic(topic)
        if len(data) > MAX_MESSAGE_DATA_BYTES:
            raise LocalProtocolError(f"message data {len(data)} > {MAX_MESSAGE_DATA_BYTES}")
        object.__setattr__(self, "topic", topic)
        object.__setattr__(self, "data", data)


@dataclass(frozen=True, slots=True)
class Graft:
    topic: str

    def __post_init__(self) -> None:
        _check_topic(self.topic)


@dataclass(frozen=True, slots=True)
class Prune:
    topic: str
    backoff_s: int
    """How long the pruned peer must wait before grafting again (whole seconds)."""

    def __post_init__(self) -> None:
        _check_topic(self.topic)
        if not 0 <= self.backoff_s <= MAX_PRUNE_BACKOFF_S:
            raise LocalProtocolError(f"prune backoff {self.backoff_s} s out of range")


@dataclass(frozen=True, slots=True)
class IHave:
    topic: str
    message_ids: tuple[bytes, ...]

    def __init__(self, topic: str, message_ids: tuple[bytes, ...]) -> None:
        # Written out: mypyc compiles this one, the dataclasses module's runs interpreted
        # (about 12 x slower), and one is built for every gossip offer.
        _check_topic(topic)
        _check_ids(message_ids)
        object.__setattr__(self, "topic", topic)
        object.__setattr__(self, "message_ids", message_ids)


@dataclass(frozen=True, slots=True)
class IWant:
    message_ids: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_ids(self.message_ids)


@dataclass(frozen=True, slots=True)
class Rpc:
    subscriptions: tuple[Subscription, ...] = ()
    messages: tuple[Message, ...] = ()
    graft: tuple[Graft, ...] = ()
    prune: tuple[Prune, ...] = ()
    ihave: tuple[IHave, ...] = ()
    iwant: tuple[IWant, ...] = ()

    def __init__(
        self,
        subscriptions: tuple[Subscription, ...] = (),
        messages: tuple[Message, ...] = (),
        graft: tuple[Graft, ...] = (),
        prune: tuple[Prune, ...] = (),
        ihave: tuple[IHave, ...] = (),
        iwant: tuple[IWant, ...] = (),
    ) -> None:
        # Written out: mypyc compiles this one, the dataclasses module's runs interpreted
        # (about 12 x slower), and one is built for every frame.
        if len(subscriptions) > MAX_SUBSCRIPTIONS_PER_RPC:
            raise LocalProtocolError(f"more than {MAX_SUBSCRIPTIONS_PER_RPC} subscriptions")
        if len(messages) > MAX_MESSAGES_PER_RPC:
            raise LocalProtocolError(f"more than {MAX_MESSAGES_PER_RPC} messages")
        for entries in (graft, prune, ihave, iwant):
            if len(entries) > MAX_CONTROL_ENTRIES_PER_RPC:
                raise LocalProtocolError(f"more than {MAX_CONTROL_ENTRIES_PER_RPC} entries")
        object.__setattr__(self, "subscriptions", subscriptions)
        object.__setattr__(self, "messages", messages)
        object.__setattr__(self, "graft", graft)
        object.__setattr__(self, "prune", prune)
        object.__setattr__(self, "ihave", ihave)
        object.__setattr__(self, "iwant", iwant)


# --- records: the encoding of one section entry -------------------------------------------------


class Section(enum.IntEnum):
    """The six sections of an RPC, in wire order."""

    SUBSCRIPTIONS = 0
    MESSAGES = 1
    GRAFT = 2
    PRUNE = 3
    IHAVE = 4
    IWANT = 5


_SECTION_CAPS = (
    MAX_SUBSCRIPTIONS_PER_RPC,
    MAX_MESSAGES_PER_RPC,
    MAX_CONTROL_ENTRIES_PER_RPC,
    MAX_CONTROL_ENTRIES_PER_RPC,
    MAX_CONTROL_ENTRIES_PER_RPC,
    MAX_CONTROL_ENTRIES_PER_RPC,
)
RPC_HEADER_BYTES = 1 + len(_SECTION_CAPS)
"""The version byte and one count byte per section."""


def _push_topic(w: Writer, topic: str) -> None:
    w.push_vbytes(topic.encode("ascii"), width=1)


def encode_subscription(sub: Subscription) -> bytes:
    w = Writer().push_u8(1 if sub.subscribe else 0)
    _push_topic(w, sub.topic)
    return w.getvalue()


def encode_message(msg: Message) -> bytes:
    """u8 topic length, topic, u32 data length, data (the hot path, so one join)."""
    topic = msg.topic.encode("ascii")
    data = msg.data
    return b"".join((_U8_BYTES[len(topic)], topic, _U32.pack(len(data)), data))


def encode_graft(graft: Graft) -> bytes:
    w = Writer()
    _push_topic(w, graft.topic)
    return w.getvalue()


def encode_prune(prune: Prune) -> bytes:
    w = Writer()
    _push_topic(w, prune.topic)
    return w.push_u16(prune.backoff_s).getvalue()


def encode_ihave(ihave: IHave) -> bytes:
    w = Writer()
    _push_topic(w, ihave.topic)
    return w.push_u16(len(ihave.message_ids)).push_bytes(b"".join(ihave.message_ids)).getvalue()


def encode_iwant(iwant: IWant) -> bytes:
    w = Writer().push_u16(len(iwant.message_ids))
    return w.push_bytes(b"".join(iwant.message_ids)).getvalue()


class RpcBatch:
    """Encoded records queued for one peer, packed into as few RPCs as the caps allow.

    :meth:`add` appends a record to the open RPC, sealing it and opening the next one when the
    record would break a count or byte cap; :meth:`take` returns every RPC, encoded, and
    leaves the batch empty. ``max_queued_bytes`` bounds the record bytes queued in between.
    """

    __slots__ = ("_max_queued", "_queued", "_sealed", "_sections", "_size")

    def __init__(self, *, max_queued_bytes: int) -> None:
        self._max_queued = max_queued_bytes
        self._queued = 0
        self._sealed: list[bytes] = []
        self._sections: tuple[list[bytes], ...] = ([], [], [], [], [], [])
        self._size = RPC_HEADER_BYTES

    @property
    def queued_bytes(self) -> int:
        """Record bytes queued since the last :meth:`take`."""
        return self._queued

    def add(self, section: Section, record: bytes) -> bool:
        """Queue ``record``; ``False`` (and nothing queued) if ``max_queued_bytes`` is reached."""
        n = len(record)
        queued = self._queued + n
        if queued > self._max_queued:
            return False
        records = self._sections[section]
        size = self._size + n
        if size > MAX_RPC_BYTES or len(records) >= _SECTION_CAPS[section]:
            if n > MAX_RPC_BYTES - RPC_HEADER_BYTES:
                raise LocalProtocolError(f"a {n}-byte record does not fit in one RPC")
            self._seal()
            size = RPC_HEADER_BYTES + n
        records.append(record)
        self._size = size
        self._queued = queued
        return True

    def take(self) -> list[bytes]:
        if self._size > RPC_HEADER_BYTES:
            self._seal()
        sealed = self._sealed
        self._sealed = []
        self._queued = 0
        return sealed

    def _seal(self) -> None:
        s0, s1, s2, s3, s4, s5 = self._sections
        u8 = _U8_BYTES
        if s0 or s2 or s3 or s4 or s5:
            rpc = b"".join(
                [
                    _VERSION_BYTE,
                    u8[len(s0)], *s0,
                    u8[len(s1)], *s1,
                    u8[len(s2)], *s2,
                    u8[len(s3)], *s3,
                    u8[len(s4)], *s4,
                    u8[len(s5)], *s5,
                ]
            )  # fmt: skip
            for records in self._sections:
                records.clear()
        else:  # only messages: the relay path's usual RPC
            rpc = b"".join([_VERSION_BYTE, b"\x00", u8[len(s1)], *s1, _NO_CONTROL])
            s1.clear()
        self._sealed.append(rpc)
        self._size = RPC_HEADER_BYTES


def encode_rpc(rpc: Rpc) -> bytes:
    """One RPC; :class:`LocalProtocolError` if it would exceed :data:`MAX_RPC_BYTES`."""
    batch = RpcBatch(max_queued_bytes=MAX_RPC_BYTES - RPC_HEADER_BYTES)
    sections = (
        (Section.SUBSCRIPTIONS, [encode_subscription(s) for s in rpc.subscriptions]),
        (Section.MESSAGES, [encode_message(m) for m in rpc.messages]),
        (Section.GRAFT, [encode_graft(g) for g in rpc.graft]),
        (Section.PRUNE, [encode_prune(p) for p in rpc.prune]),
        (Section.IHAVE, [encode_ihave(i) for i in rpc.ihave]),
        (Section.IWANT, [encode_iwant(i) for i in rpc.iwant]),
    )
    for section, records in sections:
        for record in records:
            if not batch.add(section, record):
                raise LocalProtocolError(f"RPC larger than {MAX_RPC_BYTES} bytes")
    (encoded,) = batch.take() or [_EMPTY_RPC]
    return encoded


# --- decoding ------------------------------------------------------------------------------------
#
# The decoder walks the buffer by index instead of through ``codec.Reader``: a Reader call costs
# about a microsecond, and a one-message RPC has eleven fields, which alone would be a third of the
# per-message budget of the relay path. Every read is bounds-checked by hand and fails with the
# same reason tokens the Reader uses (``truncated``, ``bad_length``, ``trailing_data``).
#
# The values it builds still run their ``__post_init__`` checks (a second look at what the walk
# already enforced): skipping them by setting slots on a bare ``object.__new__`` saved about a
# microsecond per RPC, but a compiled build (mypyc, see the README) refuses bare instances.

_Control = tuple[tuple[Graft, ...], tuple[Prune, ...], tuple[IHave, ...], tuple[IWant, ...]]
_NO_CONTROL_SECTIONS: _Control = ((), (), (), ())


def _truncated(need: int, have: int) -> RemoteProtocolError:
    return RemoteProtocolError("truncated", f"need {need} bytes, have {have}")


def _pull_count(data: bytes, pos: int, cap: int, what: str) -> int:
    if pos >= len(data):
        raise _truncated(1, 0)
    n = data[pos]
    if n > cap:
        raise RemoteProtocolError("too_many", f"{n} {what} > {cap}")
    return n


def _pull_topic(data: bytes, pos: int) -> tuple[str, int]:
    """The topic starting at ``pos`` and the position after it."""
    if pos >= len(data):
        raise _truncated(1, 0)
    n = data[pos]
    if not 0 < n <= MAX_TOPIC_BYTES:
        raise RemoteProtocolError("bad_topic", f"topic length {n}")
    pos += 1
    end = pos + n
    if end > len(data):
        raise _truncated(n, len(data) - pos)
    raw = data[pos:end]
    if raw.translate(None, _TOPIC_ALPHABET):
        raise RemoteProtocolError("bad_topic", "character outside [a-z0-9_.-]")
    return raw.decode("ascii"), end


def _pull_u16(data: bytes, pos: int) -> int:
    if pos + 2 > len(data):
        raise _truncated(2, len(data) - pos)
    return (data[pos] << 8) | data[pos + 1]


def _pull_ids(data: bytes, pos: int) -> tuple[tuple[bytes, ...], int]:
    n = _pull_u16(data, pos)
    if n > MAX_IDS_PER_CONTROL:
        raise RemoteProtocolError("too_many", f"{n} message ids > {MAX_IDS_PER_CONTROL}")
    pos += 2
    end = pos + n * MESSAGE_ID_BYTES
    if end > len(data):
        raise _truncated(end - pos, len(data) - pos)
    return tuple(data[i : i + MESSAGE_ID_BYTES] for i in range(pos, end, MESSAGE_ID_BYTES)), end


def _pull_messages(data: bytes, pos: int, n: int) -> tuple[tuple[Message, ...], int]:
    messages = []
    for _ in range(n):
        topic, pos = _pull_topic(data, pos)
        if pos + 4 > len(data):
            raise _truncated(4, len(data) - pos)
        size = _U32.unpack_from(data, pos)[0]
        if size > MAX_MESSAGE_DATA_BYTES:
            raise RemoteProtocolError(
                "bad_length", f"message data {size} > {MAX_MESSAGE_DATA_BYTES}"
            )
        pos += 4
        end = pos + size
        if end > len(data):
            raise _truncated(size, len(data) - pos)
        messages.append(Message(topic, data[pos:end]))
        pos = end
    return tuple(messages), pos


def _pull_control(data: bytes, pos: int) -> tuple[_Control, int]:
    """The four control sections (rare next to messages, so written for clarity)."""
    graft: list[Graft] = []
    prune: list[Prune] = []
    ihave: list[IHave] = []
    iwant: list[IWant] = []
    n = _pull_count(data, pos, MAX_CONTROL_ENTRIES_PER_RPC, "grafts")
    pos += 1
    for _ in range(n):
        topic, pos = _pull_topic(data, pos)
        graft.append(Graft(topic))
    n = _pull_count(data, pos, MAX_CONTROL_ENTRIES_PER_RPC, "prunes")
    pos += 1
    for _ in range(n):
        topic, pos = _pull_topic(data, pos)
        prune.append(Prune(topic, _pull_u16(data, pos)))
        pos += 2
    n = _pull_count(data, pos, MAX_CONTROL_ENTRIES_PER_RPC, "ihaves")
    pos += 1
    for _ in range(n):
        topic, pos = _pull_topic(data, pos)
        ids, pos = _pull_ids(data, pos)
        ihave.append(IHave(topic, ids))
    n = _pull_count(data, pos, MAX_CONTROL_ENTRIES_PER_RPC, "iwants")
    pos += 1
    for _ in range(n):
        ids, pos = _pull_ids(data, pos)
        iwant.append(IWant(ids))
    return (tuple(graft), tuple(prune), tuple(ihave), tuple(iwant)), pos


def decode_rpc(received: bytes | bytearray | memoryview) -> Rpc:
    """Parse one RPC; any defect raises :class:`RemoteProtocolError` and nothing else."""
    if len(received) > MAX_RPC_BYTES:
        raise RemoteProtocolError("too_large", f"RPC of {len(received)} bytes > {MAX_RPC_BYTES}")
    data = bytes(received)
    if not data:
        raise _truncated(1, 0)
    if data[0] != GOSSIP_RPC_VERSION:
        raise RemoteProtocolError("bad_version", f"gossip RPC version {data[0]}")
    n = _pull_count(data, 1, MAX_SUBSCRIPTIONS_PER_RPC, "subscriptions")
    pos = 2
    subscriptions = []
    for _ in range(n):
        if pos >= len(data):
            raise _truncated(1, 0)
        flag = data[pos]
        if flag > 1:
            raise RemoteProtocolError("bad_flag", f"subscription flag {flag}")
        topic, pos = _pull_topic(data, pos + 1)
        subscriptions.append(Subscription(topic, flag == 1))
    n = _pull_count(data, pos, MAX_MESSAGES_PER_RPC, "messages")
    messages, pos = _pull_messages(data, pos + 1, n)
    if data.startswith(_NO_CONTROL, pos):
        pos += len(_NO_CONTROL)
        control = _NO_CONTROL_SECTIONS
    else:
        control, pos = _pull_control(data, pos)
    if pos != len(data):
        raise RemoteProtocolError("trailing_data", f"{len(data) - pos} extra bytes")
    graft, prune, ihave, iwant = control
    return Rpc(tuple(subscriptions), messages, graft, prune, ihave, iwant)
