"""Relay crypto: one ChaCha20 layer per hop and a per-hop digest only the target hop accepts.

Theory of operation (Tor's relay crypto, docs/protocol/circuits.md §4). Each hop shares four keys
with the origin (:class:`~murmur.overlay.circuits.handshake.HopKeys`). Each direction of each hop
is one continuous ChaCha20 keystream (fresh key per circuit, zero nonce, block counter from 0):
every cell a hop handles moves its keystream on by one body, so counters are implicit and the
cells of a circuit must be processed in order, which links guarantee.

Forward: the origin writes a plaintext body for hop ``t`` (``recognized = 0``, the digest is
``HMAC-SHA3-256(D_f[t], n || body[18:])[:16]`` with ``n`` the number of cells hop ``t`` has
recognized so far), then applies the forward streams of hops ``t, t-1, …, 0``. Each relay removes
its layer; if ``recognized`` is zero and the digest checks out, the cell is for it, otherwise it
forwards the cell. A middle hop therefore learns nothing from a cell except "not mine".
Backward: the hop that speaks writes a body with its backward digest and applies its backward
stream; each earlier hop adds its own layer; the origin peels layers from hop 0 outwards and
stops at the first layer whose digest checks out (that tells it which hop spoke).

Streams are never reused: a circuit lives under an hour at every relay, and the per-peer rate
limits keep its cells far below ChaCha20's 2^32-block counter.
"""

from __future__ import annotations

import struct

from murmur.base.errors import RemoteProtocolError
from murmur.crypto.hashing import equal, hmac_sha3_256
from murmur.crypto.stream import KeyStream
from murmur.overlay.circuits.handshake import HopKeys
from murmur.wire.cells import (
    DIGEST_BYTES,
    DIGEST_END,
    DIGEST_OFFSET,
    RelayCommand,
    RelayMessage,
    decode_relay_plaintext,
    encode_relay_plaintext,
)

_U64 = struct.Struct(">Q")


class Digest:
    """The per-hop, per-direction MAC that makes a body 'recognized' by exactly one hop."""

    __slots__ = ("_key", "count")

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.count = 0

    def _tag(self, body: bytes | bytearray) -> bytes:
        return hmac_sha3_256(self._key, _U64.pack(self.count), body[DIGEST_END:])[:DIGEST_BYTES]

    def seal(self, body: bytearray) -> bytes:
        body[DIGEST_OFFSET:DIGEST_END] = self._tag(body)
        self.count += 1
        return bytes(body)

    def check(self, body: bytes) -> bool:
        if body[0] or body[1]:
            return False
        if not equal(self._tag(body), body[DIGEST_OFFSET:DIGEST_END]):
            return False
        self.count += 1
        return True


class RelayLayer:
    """What a relay holds for one circuit: its own layer, nothing about the other hops."""

    __slots__ = ("_backward", "_backward_digest", "_forward", "_forward_digest")

    def __init__(self, keys: HopKeys) -> None:
        self._forward = KeyStream(keys.forward_key)
        self._backward = KeyStream(keys.backward_key)
        self._forward_digest = Digest(keys.forward_digest)
        self._backward_digest = Digest(keys.backward_digest)

    def unwrap_forward(self, body: bytes) -> tuple[bytes, bool]:
        """Removes this hop's layer; True when the cell is addressed to this hop."""
        plain = self._forward.apply(body)
        return plain, self._forward_digest.check(plain)

    def wrap_backward(self, body: bytes) -> bytes:
        return self._backward.apply(body)

    def originate_backward(self, command: RelayCommand, data: bytes) -> bytes:
        body = encode_relay_plaintext(command, data)
        return self._backward.apply(self._backward_digest.seal(body))


class OriginLayers:
    """The origin's view of a circuit: every hop's layer, in path order."""

    __slots__ = ("_hops",)

    def __init__(self) -> None:
        self._hops: list[tuple[KeyStream, KeyStream, Digest, Digest]] = []

    def __len__(self) -> int:
        return len(self._hops)

    def add_hop(self, keys: HopKeys) -> None:
        self._hops.append(
            (
                KeyStream(keys.forward_key),
                KeyStream(keys.backward_key),
                Digest(keys.forward_digest),
                Digest(keys.backward_digest),
            )
        )

    def wrap_forward(self, target: int, command: RelayCommand, data: bytes) -> bytes:
        """A body only hop ``target`` (0-based) will recognize."""
        body = self._hops[target][2].seal(encode_relay_plaintext(command, data))
        for forward, _, _, _ in reversed(self._hops[: target + 1]):
            body = forward.apply(body)
        return body

    def unwrap_backward(self, body: bytes) -> tuple[int, RelayMessage]:
        """Peels layers until one hop's digest matches; returns that hop and its message."""
        for index, (_, backward, _, digest) in enumerate(self._hops):
            body = backward.apply(body)
            if digest.check(body):
                return index, decode_relay_plaintext(body)
        raise RemoteProtocolError("unrecognized", "backward cell matched no hop")
