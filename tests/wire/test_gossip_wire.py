"""The gossip RPC format: vectors, round trips, hostile bytes, caps."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.wire.gossip import (
    MAX_IDS_PER_CONTROL,
    MAX_MESSAGE_DATA_BYTES,
    MAX_MESSAGES_PER_RPC,
    MAX_RPC_BYTES,
    RPC_HEADER_BYTES,
    Graft,
    IHave,
    IWant,
    Message,
    Prune,
    Rpc,
    RpcBatch,
    Section,
    Subscription,
    decode_rpc,
    encode_message,
    encode_rpc,
    is_valid_topic,
    message_id,
)

REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((REPO / "tests/vectors/gossip_rpc.json").read_text())

topics = st.from_regex(r"[a-z0-9_.\-]{1,64}", fullmatch=True)
ids = st.binary(min_size=20, max_size=20)
id_tuples = st.lists(ids, max_size=8).map(tuple)
rpcs = st.builds(
    Rpc,
    subscriptions=st.lists(st.builds(Subscription, topics, st.booleans()), max_size=4).map(tuple),
    messages=st.lists(st.builds(Message, topics, st.binary(max_size=300)), max_size=4).map(tuple),
    graft=st.lists(st.builds(Graft, topics), max_size=3).map(tuple),
    prune=st.lists(st.builds(Prune, topics, st.integers(0, 0xFFFF)), max_size=3).map(tuple),
    ihave=st.lists(st.builds(IHave, topics, id_tuples), max_size=3).map(tuple),
    iwant=st.lists(st.builds(IWant, id_tuples), max_size=3).map(tuple),
)


def _sha3_id(topic: str, data: bytes) -> bytes:
    return hashlib.sha3_256(topic.encode() + b"\x00" + data).digest()[:20]


def _rpc_from_json(obj: dict) -> Rpc:
    return Rpc(
        subscriptions=tuple(Subscription(s["topic"], s["subscribe"]) for s in obj["subscriptions"]),
        messages=tuple(Message(m["topic"], bytes.fromhex(m["data_hex"])) for m in obj["messages"]),
        graft=tuple(Graft(g["topic"]) for g in obj["graft"]),
        prune=tuple(Prune(p["topic"], p["backoff_s"]) for p in obj["prune"]),
        ihave=tuple(
            IHave(i["topic"], tuple(bytes.fromhex(x) for x in i["message_ids_hex"]))
            for i in obj["ihave"]
        ),
        iwant=tuple(
            IWant(tuple(bytes.fromhex(x) for x in i["message_ids_hex"])) for i in obj["iwant"]
        ),
    )


# --- vectors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vector(vector: dict) -> None:
    rpc = _rpc_from_json(vector["rpc"])
    encoded = bytes.fromhex(vector["encoded_hex"])
    assert encode_rpc(rpc) == encoded
    assert decode_rpc(encoded) == rpc
    for msg in vector["rpc"]["messages"]:
        data = bytes.fromhex(msg["data_hex"])
        assert message_id(msg["topic"], data).hex() == msg["message_id_hex"]
        assert _sha3_id(msg["topic"], data).hex() == msg["message_id_hex"]


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vector(vector: dict) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        decode_rpc(bytes.fromhex(vector["encoded_hex"]))
    assert err.value.reason == vector["reason"]


def test_protocol_doc_carries_the_full_vector() -> None:
    (full,) = [v for v in VECTORS["valid"] if v["name"] == "full"]
    doc = (REPO / "docs/protocol/gossip.md").read_text()
    assert full["encoded_hex"] in doc
    assert full["rpc"]["messages"][0]["message_id_hex"] in doc


# --- properties --------------------------------------------------------------------------------


@given(rpcs)
def test_round_trip(rpc: Rpc) -> None:
    encoded = encode_rpc(rpc)
    assert decode_rpc(encoded) == rpc
    assert len(encoded) <= MAX_RPC_BYTES


@given(st.binary(max_size=512))
def test_garbage_raises_only_remote_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_rpc(data)


@given(st.binary(max_size=64))
def test_garbage_after_a_valid_header_raises_only_remote_protocol_error(tail: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_rpc(b"\x01" + tail)


@settings(max_examples=200)
@given(rpcs, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1))
def test_mutated_rpc_raises_only_remote_protocol_error(
    rpc: Rpc, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(encode_rpc(rpc))
    for pos, value in edits:
        data[pos % len(data)] = value
    with contextlib.suppress(RemoteProtocolError):
        decode_rpc(bytes(data))


def _rich_rpc() -> Rpc:
    (full,) = [v for v in VECTORS["valid"] if v["name"] == "full"]
    return _rpc_from_json(full["rpc"])


def test_every_truncation_is_refused() -> None:
    encoded = encode_rpc(_rich_rpc())
    for cut in range(len(encoded)):
        with pytest.raises(RemoteProtocolError) as err:
            decode_rpc(encoded[:cut])
        assert err.value.reason == "truncated", cut


@pytest.mark.parametrize("extra", [b"\x00", b"\x01", b"\x00" * 7])
def test_trailing_data_is_refused(extra: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        decode_rpc(encode_rpc(_rich_rpc()) + extra)
    assert err.value.reason == "trailing_data"


def test_decode_accepts_any_bytes_like_and_returns_bytes() -> None:
    encoded = encode_rpc(Rpc(messages=(Message("a", b"xyz"),)))
    rpc = decode_rpc(memoryview(bytearray(encoded)))
    assert type(rpc.messages[0].data) is bytes
    assert rpc.messages[0].data == b"xyz"


# --- caps ---------------------------------------------------------------------------------------


def test_largest_message_fits_and_one_byte_more_does_not() -> None:
    big = Message("block_body", b"\x07" * MAX_MESSAGE_DATA_BYTES)
    assert decode_rpc(encode_rpc(Rpc(messages=(big,)))).messages == (big,)
    with pytest.raises(LocalProtocolError):
        Message("block_body", b"\x07" * (MAX_MESSAGE_DATA_BYTES + 1))


def test_rpc_byte_cap() -> None:
    big = Message("block_body", b"\x07" * MAX_MESSAGE_DATA_BYTES)
    with pytest.raises(LocalProtocolError):
        encode_rpc(Rpc(messages=(big, big)))
    with pytest.raises(RemoteProtocolError) as err:
        decode_rpc(b"\x01" + bytes(MAX_RPC_BYTES))
    assert err.value.reason == "too_large"


def test_count_caps_on_both_sides() -> None:
    with pytest.raises(LocalProtocolError):
        Rpc(messages=tuple(Message("a", b"") for _ in range(MAX_MESSAGES_PER_RPC + 1)))
    with pytest.raises(LocalProtocolError):
        Rpc(graft=tuple(Graft("a") for _ in range(65)))
    with pytest.raises(LocalProtocolError):
        IWant(tuple(bytes(20) for _ in range(MAX_IDS_PER_CONTROL + 1)))
    with pytest.raises(RemoteProtocolError) as err:
        decode_rpc(b"\x01\x41")  # 65 subscriptions
    assert err.value.reason == "too_many"
    most_ids = IWant(tuple(i.to_bytes(20, "big") for i in range(MAX_IDS_PER_CONTROL)))
    assert decode_rpc(encode_rpc(Rpc(iwant=(most_ids,)))).iwant == (most_ids,)


@pytest.mark.parametrize("topic", ["", "A", "a b", "a" * 65, "é", "topic/x", "a\x00"])
def test_invalid_topics_are_refused(topic: str) -> None:
    assert not is_valid_topic(topic)
    with pytest.raises(LocalProtocolError):
        Graft(topic)


@pytest.mark.parametrize("topic", ["a", "block_header", "v1.tx-pool_2", "z" * 64])
def test_valid_topics(topic: str) -> None:
    assert is_valid_topic(topic)


def test_control_fields_are_checked() -> None:
    with pytest.raises(LocalProtocolError):
        IHave("a", (b"short",))
    with pytest.raises(LocalProtocolError):
        Prune("a", 0x10000)
    with pytest.raises(LocalProtocolError):
        Prune("a", -1)


def test_message_id_separates_topic_from_data() -> None:
    assert message_id("ab", b"c") != message_id("a", b"bc")
    assert message_id("a", b"x") == _sha3_id("a", b"x")
    assert len(message_id("a", b"")) == 20


# --- batching -------------------------------------------------------------------------------------


def test_batch_splits_on_the_message_count_cap() -> None:
    batch = RpcBatch(max_queued_bytes=10 * MAX_RPC_BYTES)
    messages = [Message("t", i.to_bytes(4, "big")) for i in range(MAX_MESSAGES_PER_RPC + 6)]
    batch.add(Section.GRAFT, b"\x01t")
    for msg in messages:
        assert batch.add(Section.MESSAGES, encode_message(msg))
    rpcs = [decode_rpc(data) for data in batch.take()]
    assert [len(r.messages) for r in rpcs] == [MAX_MESSAGES_PER_RPC, 6]
    assert [m for r in rpcs for m in r.messages] == messages
    assert rpcs[0].graft == (Graft("t"),)
    assert batch.take() == []


def test_batch_splits_on_the_byte_cap() -> None:
    batch = RpcBatch(max_queued_bytes=10 * MAX_RPC_BYTES)
    record = encode_message(Message("t", bytes(100_000)))
    for _ in range(5):
        batch.add(Section.MESSAGES, record)
    sizes = [len(data) for data in batch.take()]
    assert sizes == [RPC_HEADER_BYTES + 2 * len(record)] * 2 + [RPC_HEADER_BYTES + len(record)]


def test_batch_refuses_past_its_queue_cap() -> None:
    record = encode_message(Message("t", bytes(1000)))
    batch = RpcBatch(max_queued_bytes=3 * len(record))
    assert [batch.add(Section.MESSAGES, record) for _ in range(4)] == [True, True, True, False]
    assert batch.queued_bytes == 3 * len(record)
    assert len(decode_rpc(batch.take()[0]).messages) == 3
    assert batch.queued_bytes == 0
    assert batch.add(Section.MESSAGES, record)


def test_batch_refuses_a_record_larger_than_an_rpc() -> None:
    batch = RpcBatch(max_queued_bytes=4 * MAX_RPC_BYTES)
    batch.add(Section.MESSAGES, b"x")
    with pytest.raises(LocalProtocolError):
        batch.add(Section.MESSAGES, bytes(MAX_RPC_BYTES))
