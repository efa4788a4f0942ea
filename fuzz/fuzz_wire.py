"""Every decoder of peer bytes, one per input: the first byte picks it, the rest is its input.

A decoder may refuse with ``RemoteProtocolError`` or decode; where an encoder exists the value
must re-encode to the same bytes (or, where padding is free, to bytes that decode the same).
The handshake targets run the real X25519, ML-KEM-1024 and ML-DSA-87 on the fuzzer's keys,
ciphertexts and signatures, so the crypto libraries' own errors are checked to be mapped too.

The order of ``TARGETS`` is part of the corpus format (a seed starts with its target's index):
append new targets, never reorder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from fuzz.contract import canonical, canonical_zero_padded, decoded, stable
from murmur.base.errors import RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.crypto.identity import Identity
from murmur.link.connection import LinkConnection, LinkState
from murmur.node.private_path import decode_sync_response
from murmur.overlay import dandelion, diffusion
from murmur.overlay.announce import PeerAnnouncement
from murmur.overlay.circuits.handshake import client_finish, client_onionskin, relay_answer
from murmur.overlay.circuits.onion_keys import OnionKeyPair, OnionPublicKeys
from murmur.overlay.circuits.selection import RelayCapacity
from murmur.runtime.control_api import parse_request_head
from murmur.sim.rng import SeededRng
from murmur.wire.cells import (
    DIGEST_END,
    Cell,
    Created,
    Envelope,
    Extend,
    Fragment,
    Onionskin,
    decode_cell,
    decode_create_body,
    decode_destroy,
    decode_extend_data,
    decode_extended,
    decode_relay_plaintext,
    decode_truncated,
    encode_reason,
    encode_relay_plaintext,
)
from murmur.wire.codec import Reader
from murmur.wire.envelope import unwrap, wrap
from murmur.wire.gossip import decode_rpc, encode_rpc
from murmur.wire.link import (
    FRAME_HEADER_BYTES,
    Auth,
    Hello,
    Reply,
    decode_frame_plaintext,
    encode_frame_plaintext,
)
from murmur.wire.stem import decode_stem, encode_stem

RELAY_ID = NodeId(b"\x55" * 32)
_ONION_KEYS = OnionKeyPair.generate(SeededRng(42))


def _frame_plaintext(data: bytes) -> None:
    frame = decoded(decode_frame_plaintext, data)
    if frame is not None:
        padding = len(data) - FRAME_HEADER_BYTES - len(frame.payload)
        again = encode_frame_plaintext(frame.type, frame.payload, padding)
        if decode_frame_plaintext(again) != frame:
            raise AssertionError("frame plaintext does not round-trip")


def _relay_plaintext(data: bytes) -> None:
    message = decoded(decode_relay_plaintext, data)
    if message is not None:
        again = encode_relay_plaintext(message.command, message.data)
        if again[DIGEST_END:] != data[DIGEST_END:]:
            raise AssertionError("relay plaintext does not round-trip")


def _sync_response(data: bytes) -> None:
    found = decoded(decode_sync_response, data)
    if found is not None:
        encoded = b"".join(mid + len(v).to_bytes(4, "big") + v for mid, v in found.items())
        if decode_sync_response(encoded) != found:
            raise AssertionError("sync response does not round-trip")


def _announcement(data: bytes) -> None:
    announcement = decoded(PeerAnnouncement.decode, data)
    if announcement is not None:
        if announcement.encode() != data:
            raise AssertionError("announcement is not canonical")
        announcement.verified()  # ML-DSA-87 on the fuzzer's key and signature


def _link(initiator: bool) -> Callable[[bytes], None]:
    def receive(data: bytes) -> None:
        """A fresh link of this side fed the bytes; only a LinkClosed event may come of it."""
        link = LinkConnection(
            initiator=initiator,
            identity=_IDENTITY,
            rng=SeededRng(7),
            now=0.0,
            expected_peer=RELAY_ID if initiator else None,
        )
        link.receive_data(data, 0.0)
        link.data_to_send()
        link.drain_events()
        if link.state is LinkState.ESTABLISHED:
            raise AssertionError("a link authenticated fuzzer bytes")

    return receive


_IDENTITY = Identity.from_seed(b"\x09" * 32)


def _relay_answer(data: bytes) -> None:
    skin = decoded(lambda d: Onionskin.pull(Reader(d)), data)
    if skin is None:
        return
    skin = Onionskin(_ONION_KEYS.public.key_id(), skin.x25519_public, skin.mlkem_ciphertext)
    with contextlib.suppress(RemoteProtocolError):
        relay_answer(skin, _ONION_KEYS, node_id=RELAY_ID, y_seed=b"\x07" * 32)


def _client_finish(data: bytes) -> None:
    created = decoded(decode_extended, data)
    if created is None:
        return
    _, pending = client_onionskin(RELAY_ID, _ONION_KEYS.public, x25519_seed=b"\x08" * 32)
    try:
        client_finish(created, pending)
    except RemoteProtocolError:
        pass
    else:
        raise AssertionError("a forged CREATED passed the circuit handshake")


def _request_head(data: bytes) -> None:
    decoded(parse_request_head, data)


def _unwrap(data: bytes) -> None:
    canonical(unwrap, lambda pair: wrap(*pair), data)


TARGETS: tuple[Callable[[bytes], None], ...] = (
    lambda data: canonical(Hello.decode, Hello.encode, data),
    lambda data: canonical(Reply.decode, Reply.encode, data),
    lambda data: canonical(Auth.decode, Auth.encode, data),
    _frame_plaintext,
    _unwrap,
    lambda data: canonical(decode_rpc, encode_rpc, data),
    lambda data: canonical(decode_stem, encode_stem, data),
    lambda data: canonical(decode_cell, Cell.encode, data),
    lambda data: canonical_zero_padded(Onionskin.decode_body, Onionskin.encode, data),
    lambda data: canonical_zero_padded(Created.decode_body, Created.encode, data),
    lambda data: canonical_zero_padded(decode_destroy, encode_reason, data),
    _relay_plaintext,
    lambda data: canonical_zero_padded(Extend.decode, Extend.encode, data),
    lambda data: canonical(decode_extended, Created.encode, data),
    lambda data: canonical(decode_truncated, encode_reason, data),
    lambda data: canonical(Fragment.decode, Fragment.encode, data),
    lambda data: canonical(decode_create_body, Fragment.encode, data),
    lambda data: canonical(decode_extend_data, Fragment.encode, data),
    lambda data: stable(Envelope.decode, Envelope.encode, data),
    _announcement,
    lambda data: canonical(OnionPublicKeys.decode, OnionPublicKeys.encode, data),
    lambda data: canonical(RelayCapacity.decode, RelayCapacity.encode, data),
    _sync_response,
    lambda data: canonical(diffusion.decode_message, diffusion.encode_message, data),
    lambda data: canonical(dandelion.decode_message, dandelion.encode_message, data),
    _link(initiator=False),
    _link(initiator=True),
    _relay_answer,
    _client_finish,
    _request_head,
)


def one_input(data: bytes) -> None:
    if data:
        TARGETS[data[0] % len(TARGETS)](data[1:])
