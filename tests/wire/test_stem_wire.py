"""The stem message format: vectors, round trips, hostile bytes, caps."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.wire.envelope import Channel, unwrap, wrap
from murmur.wire.gossip import MAX_MESSAGE_DATA_BYTES
from murmur.wire.stem import MAX_STEM_BYTES, StemMessage, decode_stem, encode_stem
from tests.damage import refused_or_canonical

REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((REPO / "tests/vectors/stem.json").read_text())

topics = st.from_regex(r"[a-z0-9_.\-]{1,64}", fullmatch=True)
messages = st.builds(StemMessage, topics, st.binary(min_size=1, max_size=300))


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vector(vector: dict) -> None:
    message = StemMessage(vector["topic"], bytes.fromhex(vector["data_hex"]))
    encoded = bytes.fromhex(vector["encoded_hex"])
    assert encode_stem(message) == encoded
    assert decode_stem(encoded) == message
    assert message.message_id.hex() == vector["message_id_hex"]
    envelope = bytes.fromhex(vector["envelope_hex"])
    assert wrap(Channel.STEM, encoded) == envelope
    assert unwrap(envelope) == (Channel.STEM, encoded)


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vector(vector: dict) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        decode_stem(bytes.fromhex(vector["encoded_hex"]))
    assert err.value.reason == vector["reason"]


def test_protocol_doc_carries_the_vector() -> None:
    (vector,) = [v for v in VECTORS["valid"] if v["name"] == "transaction"]
    doc = (REPO / "docs/protocol/dandelion.md").read_text()
    assert vector["envelope_hex"] in doc
    assert vector["message_id_hex"] in doc


@given(messages)
def test_round_trip(message: StemMessage) -> None:
    decoded = decode_stem(encode_stem(message))
    assert decoded == message
    assert decoded.message_id == message.message_id


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_garbage_raises_only_remote_protocol_error(data: bytes) -> None:
    refused_or_canonical(decode_stem, encode_stem, data)


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=64), st.binary(max_size=200))
def test_garbage_after_a_valid_topic_raises_only_remote_protocol_error(
    topic: bytes, tail: bytes
) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_stem(bytes((len(topic),)) + topic + tail)


@settings(max_examples=300)
@given(messages, st.data())
def test_mutated_message_raises_only_remote_protocol_error(
    message: StemMessage, data: st.DataObject
) -> None:
    encoded = bytearray(encode_stem(message))
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_stem(bytes(encoded))
    except RemoteProtocolError:
        return
    assert encode_stem(decoded) == bytes(encoded)


def test_every_truncation_is_refused() -> None:
    encoded = encode_stem(StemMessage("transaction", b"\x01\x02\x03"))
    for cut in range(len(encoded)):
        with pytest.raises(RemoteProtocolError):
            decode_stem(encoded[:cut])


def test_largest_message_fits_and_constructor_refuses_invalid_ones() -> None:
    largest = StemMessage("t" * 64, bytes(MAX_MESSAGE_DATA_BYTES))
    encoded = encode_stem(largest)
    assert len(encoded) == MAX_STEM_BYTES
    assert decode_stem(encoded) == largest
    for topic, data in [("transaction", b""), ("Tx", b"x"), ("", b"x")]:
        with pytest.raises(LocalProtocolError):
            StemMessage(topic, data)
    with pytest.raises(LocalProtocolError):
        StemMessage("transaction", bytes(MAX_MESSAGE_DATA_BYTES + 1))
