"""Link byte formats: round trips, and garbage in → only RemoteProtocolError out."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import RemoteProtocolError
from murmur.crypto.aead import AeadAlgorithm
from murmur.crypto.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from murmur.crypto.kem import MLKEM_CIPHERTEXT_BYTES, MLKEM_PUBLIC_BYTES, X25519_BYTES
from murmur.wire import link
from murmur.wire.envelope import Channel, unwrap, wrap
from murmur.wire.link import (
    MAX_PAYLOAD_BYTES,
    Auth,
    FrameType,
    Hello,
    Reply,
    decode_frame_plaintext,
    encode_frame_plaintext,
)
from tests.damage import damaged, refused_or_canonical


def _exactly(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


handshake_messages = st.one_of(
    st.builds(
        Hello,
        st.sampled_from([int(a) for a in AeadAlgorithm]),
        _exactly(X25519_BYTES),
        _exactly(MLKEM_PUBLIC_BYTES),
    ),
    st.builds(
        Reply,
        _exactly(X25519_BYTES),
        _exactly(MLKEM_CIPHERTEXT_BYTES),
        _exactly(link.AUTH_SEALED_BYTES),
    ),
    st.builds(
        Auth, _exactly(PUBLIC_KEY_BYTES), _exactly(SIGNATURE_BYTES), _exactly(link.FINISHED_BYTES)
    ),
)
frame_plaintexts = st.builds(
    encode_frame_plaintext,
    st.sampled_from(list(FrameType)),
    st.binary(max_size=600),
    st.integers(min_value=0, max_value=64),
)


@given(st.binary(max_size=10_000))
def test_handshake_parsers_reject_garbage_only_with_remote_errors(data: bytes) -> None:
    for parser in (Hello.decode, Reply.decode, Auth.decode):
        with contextlib.suppress(RemoteProtocolError):
            parser(data)


@given(st.binary(max_size=4096))
def test_frame_parser_rejects_garbage_only_with_remote_errors(data: bytes) -> None:
    try:
        frame = decode_frame_plaintext(data)
    except RemoteProtocolError:
        return
    assert len(frame.payload) <= len(data) - link.FRAME_HEADER_BYTES


@given(
    st.sampled_from(list(FrameType)),
    st.binary(max_size=2048),
    st.integers(min_value=0, max_value=4096),
)
def test_frame_round_trip_with_padding(kind: FrameType, payload: bytes, padding: int) -> None:
    plaintext = encode_frame_plaintext(kind, payload, padding)
    assert len(plaintext) == link.FRAME_HEADER_BYTES + len(payload) + padding
    frame = decode_frame_plaintext(plaintext)
    assert (frame.type, frame.payload) == (kind, payload)


@settings(max_examples=200)
@given(handshake_messages)
def test_handshake_messages_round_trip(message: Hello | Reply | Auth) -> None:
    assert type(message).decode(message.encode()) == message


@settings(max_examples=300)
@given(st.data())
def test_damaged_handshake_messages_raise_only_remote_errors(data: st.DataObject) -> None:
    message = data.draw(handshake_messages)
    encoded = data.draw(damaged(st.just(message.encode())))
    refused_or_canonical(type(message).decode, type(message).encode, encoded)


@settings(max_examples=300)
@given(damaged(frame_plaintexts))
def test_damaged_frames_raise_only_remote_errors(plaintext: bytes) -> None:
    try:
        frame = decode_frame_plaintext(plaintext)
    except RemoteProtocolError:
        return
    header = link.FRAME_HEADER_BYTES
    assert plaintext[header : header + len(frame.payload)] == frame.payload


def test_frame_length_beyond_plaintext_is_refused() -> None:
    plaintext = bytearray(encode_frame_plaintext(FrameType.DATA, b"abc"))
    plaintext[1:5] = (4).to_bytes(4, "big")
    with pytest.raises(RemoteProtocolError) as err:
        decode_frame_plaintext(bytes(plaintext))
    assert err.value.reason == "bad_length"


def test_oversized_payload_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode_frame_plaintext(FrameType.DATA, bytes(MAX_PAYLOAD_BYTES + 1))


def test_unknown_version_and_aead_are_refused() -> None:
    hello = bytearray(Hello(1, b"\x01" * 32, b"\x02" * 1568).encode())
    assert len(hello) == link.HELLO_BYTES
    bad_version = bytes([2]) + bytes(hello[1:])
    bad_aead = bytes(hello[:1]) + b"\x09" + bytes(hello[2:])
    for data, reason in ((bad_version, "bad_version"), (bad_aead, "bad_aead")):
        with pytest.raises(RemoteProtocolError) as err:
            Hello.decode(data)
        assert err.value.reason == reason
    with pytest.raises(RemoteProtocolError) as err:
        Hello.decode(bytes(hello) + b"x")
    assert err.value.reason == "trailing_data"


@given(st.sampled_from(list(Channel)), st.binary(max_size=512))
def test_envelope_round_trip(channel: Channel, body: bytes) -> None:
    assert unwrap(wrap(channel, body)) == (channel, body)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_envelope_garbage_raises_only_remote_errors(message: bytes) -> None:
    try:
        channel, body = unwrap(message)
    except RemoteProtocolError:
        return
    assert wrap(channel, body) == message


@pytest.mark.parametrize(
    ("channel", "code"), [(Channel.GOSSIP, 1), (Channel.CIRCUIT, 2), (Channel.STEM, 3)]
)
def test_the_channel_byte_on_the_wire(channel: Channel, code: int) -> None:
    """The codes are the wire format (docs/protocol/dandelion.md gives STEM's, 0x03): a
    round trip alone would pass with any numbering, and peers would misread each other."""
    assert wrap(channel, b"body") == bytes([code]) + b"body"
    assert unwrap(bytes([code]) + b"body") == (channel, b"body")


@pytest.mark.parametrize("message", [b"", b"\x00", b"\x7f rest"])
def test_envelope_rejects_unknown_channels(message: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        unwrap(message)
