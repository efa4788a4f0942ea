"""Fixed-size cells and relay messages: layouts, round trips, and garbage in → only
RemoteProtocolError out (h11's fuzz invariant)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.sim.rng import SeededRng
from murmur.wire.cells import (
    CELL_BODY_BYTES,
    CELL_BYTES,
    CREATE_BYTES,
    CREATE_CELLS,
    CREATE_CHUNK_BYTES,
    EXTEND_BYTES,
    EXTEND_CELLS,
    EXTEND_PADDED_BYTES,
    FRAGMENT_CHUNK_BYTES,
    MAX_ENVELOPE_BYTES,
    MAX_FRAGMENTS,
    MAX_MESSAGE_BYTES,
    ONIONSKIN_BYTES,
    PADDING_BUCKETS_BYTES,
    RELAY_DATA_BYTES,
    Cell,
    CellCommand,
    Created,
    DestroyReason,
    Envelope,
    Extend,
    Fragment,
    MessageKind,
    Onionskin,
    RelayAddress,
    RelayCommand,
    RelayMessage,
    TruncateReason,
    cells_for,
    check_buckets,
    create_bodies,
    decode_cell,
    decode_create_body,
    decode_destroy,
    decode_extend_data,
    decode_extended,
    decode_relay_plaintext,
    decode_truncated,
    encode_cell,
    encode_reason,
    encode_relay_plaintext,
    envelope_size,
    extend_data,
    pad_message,
    pad_to_bucket,
    padded_size,
    split_message,
    unpad_message,
)
from tests.damage import damaged

SKIN = Onionskin(b"k" * 32, b"x" * 32, b"c" * 1568)


def test_the_smallest_bucket_fits_one_cell_and_handshakes_span_four() -> None:
    assert CELL_BYTES == 5 + 21 + 8 + 512 == 546 and CELL_BODY_BYTES == 541
    assert PADDING_BUCKETS_BYTES[0] == FRAGMENT_CHUNK_BYTES and RELAY_DATA_BYTES == 520
    assert cells_for(PADDING_BUCKETS_BYTES[0]) == 1
    extend = Extend(NodeId(b"n" * 32), RelayAddress("2001:db8::1", 443), SKIN).encode()
    assert len(extend) == EXTEND_BYTES == 1683
    assert (CREATE_CHUNK_BYTES, CREATE_CELLS, EXTEND_CELLS) == (533, 4, 4)
    assert CREATE_BYTES >= ONIONSKIN_BYTES and EXTEND_PADDED_BYTES >= EXTEND_BYTES
    assert MAX_FRAGMENTS * FRAGMENT_CHUNK_BYTES >= MAX_ENVELOPE_BYTES


@pytest.mark.parametrize("command", list(CellCommand))
@pytest.mark.parametrize("body", [b"", b"\x01", bytes(range(256)) * 2, b"\xff" * CELL_BODY_BYTES])
def test_every_cell_is_cell_bytes_long(command: CellCommand, body: bytes) -> None:
    data = encode_cell(0x8000_0001, command, body)
    assert len(data) == CELL_BYTES
    cell = decode_cell(data)
    assert (cell.circ_id, cell.command) == (0x8000_0001, command)
    assert cell.body[: len(body)] == body and not any(cell.body[len(body) :])
    assert Cell(cell.circ_id, command, body).encode() == data


def test_cell_rejections() -> None:
    good = encode_cell(5, CellCommand.RELAY, b"")
    for bad, reason in [
        (good[:-1], "bad_cell_size"),
        (good + b"\0", "bad_cell_size"),
        (b"\0\0\0\0" + good[4:], "bad_circ_id"),
        (good[:4] + b"\x09" + good[5:], "bad_cell_command"),
    ]:
        with pytest.raises(RemoteProtocolError) as info:
            decode_cell(bad)
        assert info.value.reason == reason
    for circ_id, body in [(0, b""), (2**32, b""), (1, bytes(CELL_BODY_BYTES + 1))]:
        with pytest.raises(ValueError):
            encode_cell(circ_id, CellCommand.RELAY, body)


def test_create_created_destroy_bodies() -> None:
    cells = [encode_cell(1, CellCommand.CREATE, body) for body in create_bodies(SKIN)]
    assert len(cells) == CREATE_CELLS and {len(c) for c in cells} == {CELL_BYTES}
    parts = [decode_create_body(decode_cell(c).body) for c in cells]
    assert [(p.message_id, p.index, p.count) for p in parts] == [(0, i, 4) for i in range(4)]
    message = b"".join(p.chunk for p in parts)
    assert len(message) == CREATE_BYTES and Onionskin.decode_body(message) == SKIN
    created = Created(b"y" * 32, b"a" * 32)
    assert Created.decode_body(encode_cell(1, CellCommand.CREATED, created.encode())[5:]) == created
    body = encode_cell(1, CellCommand.DESTROY, encode_reason(DestroyReason.TIMEOUT))[5:]
    assert decode_destroy(body) is DestroyReason.TIMEOUT
    with pytest.raises(RemoteProtocolError):
        Onionskin.decode_body(SKIN.encode() + b"\x01" + bytes(CREATE_BYTES - ONIONSKIN_BYTES - 1))
    with pytest.raises(RemoteProtocolError):
        decode_destroy(bytes(CELL_BODY_BYTES))


def test_relay_plaintext_round_trip_and_padding_check() -> None:
    body = encode_relay_plaintext(RelayCommand.DATA, b"hello")
    assert len(body) == CELL_BODY_BYTES
    message = decode_relay_plaintext(bytes(body))
    assert (message.command, message.data) == (RelayCommand.DATA, b"hello")
    body[-1] = 1
    with pytest.raises(RemoteProtocolError):
        decode_relay_plaintext(bytes(body))
    with pytest.raises(ValueError):
        encode_relay_plaintext(RelayCommand.DATA, bytes(RELAY_DATA_BYTES + 1))


@pytest.mark.parametrize("host", ["10.1.2.3", "2001:db8::7", "::ffff:1.2.3.4"])
def test_extend_round_trip(host: str) -> None:
    extend = Extend(NodeId(b"n" * 32), RelayAddress(host, 9000), SKIN)
    assert Extend.decode(extend.encode()) == extend
    data = extend_data(extend)
    assert len(data) == EXTEND_CELLS and {len(d) for d in data} == {RELAY_DATA_BYTES}
    message = b"".join(decode_extend_data(d).chunk for d in data)
    assert len(message) == EXTEND_PADDED_BYTES and Extend.decode(message) == extend
    with pytest.raises(RemoteProtocolError):
        Extend.decode(message[:-1] + b"\x01")


def test_handshake_fragment_rejections() -> None:
    body = create_bodies(SKIN)[1]
    data = extend_data(Extend(NodeId(b"n" * 32), RelayAddress("10.0.0.1", 1), SKIN))[1]
    for bad in [
        Fragment(1, 1, CREATE_CELLS, body[8:]).encode(),  # not message id 0
        Fragment(0, 1, CREATE_CELLS + 1, body[8:]).encode(),  # another cell count
        body[:-1],  # short chunk
        Fragment(0, 3, 4, b"x").encode(),  # a short last chunk: handshakes are zero-padded
    ]:
        with pytest.raises(RemoteProtocolError, match="bad_fragment"):
            decode_create_body(bad)
    for bad in [Fragment(7, 1, EXTEND_CELLS, data[8:]).encode(), data[:-1], data + b"\0"]:
        with pytest.raises(RemoteProtocolError, match="bad_fragment"):
            decode_extend_data(bad)


def test_address_validation() -> None:
    for host, port in [("example.org", 1), ("10.0.0.1", 0), ("10.0.0.1", 70000)]:
        with pytest.raises(ValueError):
            RelayAddress(host, port)


def test_truncated_and_extended() -> None:
    assert decode_truncated(encode_reason(TruncateReason.LOOP)) is TruncateReason.LOOP
    assert decode_extended(b"y" * 32 + b"a" * 32) == Created(b"y" * 32, b"a" * 32)
    for bad in (b"", b"\x63", b"\x01\x00"):
        with pytest.raises(RemoteProtocolError):
            decode_truncated(bad)


def test_split_message_into_fragments() -> None:
    message = b"m" * (2 * FRAGMENT_CHUNK_BYTES + 5)
    parts = split_message(3, message)
    assert [(p.index, p.count, len(p.chunk)) for p in parts] == [
        (0, 3, FRAGMENT_CHUNK_BYTES),
        (1, 3, FRAGMENT_CHUNK_BYTES),
        (2, 3, 5),
    ]
    assert all(Fragment.decode(p.encode()) == p for p in parts)
    assert max(len(p.encode()) for p in parts) == RELAY_DATA_BYTES
    for bad in (b"", b"m" * (MAX_ENVELOPE_BYTES + 1)):
        with pytest.raises(ValueError):
            split_message(1, bad)


def test_fragment_rejections() -> None:
    for bad in [
        Fragment(1, 0, 0, b"x").encode(),
        Fragment(1, 2, 2, b"x").encode(),
        Fragment(1, 0, MAX_FRAGMENTS + 1, b"x" * FRAGMENT_CHUNK_BYTES).encode(),
        Fragment(1, 0, 2, b"short").encode(),
        Fragment(1, 0, 1, b"").encode(),
        b"\0\0\0",
    ]:
        with pytest.raises(RemoteProtocolError):
            Fragment.decode(bad)


def test_envelope_round_trip_and_rejections() -> None:
    env = Envelope(MessageKind.REQUEST, "sync_request", b"\x00\x01")
    assert Envelope.decode(env.encode()) == env
    assert len(env.encode()) == env.framed_size
    for bad in [b"\x03\x01a", b"\x01\x00", b"\x01\x02\xff\xfe", b"\x01" + bytes([65]) + b"a" * 65]:
        with pytest.raises(RemoteProtocolError):
            Envelope.decode(pad_message(bad, b"padding"))
    with pytest.raises(ValueError):
        Envelope(MessageKind.PUBLISH, "", b"")


def test_an_envelope_whose_payload_is_too_long_is_a_remote_error() -> None:
    """The exit reads hostile bytes: an oversized payload is ``bad_length``, never the
    ``ValueError`` the constructor would raise."""
    body = bytes([MessageKind.PUBLISH, 11]) + b"transaction" + bytes(MAX_MESSAGE_BYTES + 1)
    with pytest.raises(RemoteProtocolError, match="bad_length"):
        Envelope.decode(pad_message(body))


def test_envelope_size_counts_the_topic_in_bytes() -> None:
    """Cover sizes are learnt from ``envelope_size``: it must be what the encoding takes."""
    env = Envelope(MessageKind.PUBLISH, "tränsaction", b"x" * 100)
    assert len(env.encode()) == env.framed_size == envelope_size("tränsaction", 100) == 118


def test_padded_envelope_fills_its_bucket_with_random_bytes() -> None:
    env = Envelope(MessageKind.PUBLISH, "transaction", b"t" * 600)
    padded = env.encode_padded(PADDING_BUCKETS_BYTES, SeededRng(1))
    assert len(padded) == 2048
    assert Envelope.decode(padded) == env
    assert padded[env.framed_size :] != bytes(2048 - env.framed_size)  # random, not zeros
    assert env.encode_padded((), SeededRng(1)) == env.encode()


@pytest.mark.parametrize(
    ("size", "expected"),
    [(1, 512), (512, 512), (513, 2048), (131_072, 131_072), (131_073, MAX_ENVELOPE_BYTES)],
)
def test_padded_size_picks_the_smallest_bucket_that_holds_the_message(
    size: int, expected: int
) -> None:
    assert padded_size(size, PADDING_BUCKETS_BYTES) == expected
    assert padded_size(size, ()) == size


def test_cells_per_bucket() -> None:
    assert [cells_for(b) for b in PADDING_BUCKETS_BYTES] == [1, 4, 16, 64, 256]
    assert cells_for(0) == 1 and cells_for(MAX_ENVELOPE_BYTES) == MAX_FRAGMENTS


def test_bucket_lists_must_rise_within_the_largest_message() -> None:
    check_buckets(PADDING_BUCKETS_BYTES)
    check_buckets(())
    for bad in [(2048, 2048), (4,), (512, MAX_ENVELOPE_BYTES + 1)]:
        with pytest.raises(ValueError):
            check_buckets(bad)


def test_unpad_rejects_lengths_past_the_end() -> None:
    assert unpad_message(pad_message(b"abc", b"xyz")) == b"abc"
    for bad in [b"", b"\x00\x00\x00", b"\x00\x00\x00\x04abc", b"\xff\xff\xff\xff"]:
        with pytest.raises(RemoteProtocolError, match="bad_padding_length"):
            unpad_message(bad)


@settings(max_examples=200, deadline=None)
@given(message=st.binary(max_size=3000), buckets=st.sampled_from([PADDING_BUCKETS_BYTES, ()]))
def test_pad_to_bucket_round_trips(message: bytes, buckets: tuple[int, ...]) -> None:
    padded = pad_to_bucket(message, buckets, SeededRng(len(message)))
    assert unpad_message(padded) == message
    assert len(padded) == padded_size(4 + len(message), buckets)
    padding = padded[4 + len(message) :]
    assert len(padding) < 8 or padding != bytes(len(padding))  # random bytes, not zeros


DECODERS: list[Callable[[bytes], object]] = [
    decode_cell,
    Onionskin.decode_body,
    Created.decode_body,
    decode_destroy,
    decode_relay_plaintext,
    Extend.decode,
    decode_extended,
    decode_truncated,
    Fragment.decode,
    decode_create_body,
    decode_extend_data,
    Envelope.decode,
    unpad_message,
]


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=2200),
        st.binary(min_size=CELL_BYTES, max_size=CELL_BYTES),
        st.binary(min_size=CELL_BODY_BYTES, max_size=CELL_BODY_BYTES),
        st.builds(lambda head: head + bytes(CELL_BODY_BYTES - len(head)), st.binary(max_size=40)),
        st.builds(lambda head: head + bytes(CREATE_BYTES - len(head)), st.binary(max_size=80)),
        st.builds(lambda head: head + bytes(RELAY_DATA_BYTES - len(head)), st.binary(max_size=12)),
    ),
    which=st.sampled_from(DECODERS),
)
def test_garbage_in_only_remote_protocol_error_out(
    data: bytes, which: Callable[[bytes], object]
) -> None:
    with contextlib.suppress(RemoteProtocolError):
        which(data)


@settings(max_examples=200, deadline=None)
@given(
    circ_id=st.integers(1, 2**32 - 1),
    command=st.sampled_from(list(CellCommand)),
    body=st.binary(max_size=CELL_BODY_BYTES),
    flip=st.integers(0, CELL_BYTES * 8 - 1),
)
def test_cell_round_trip_and_bit_flips(
    circ_id: int, command: CellCommand, body: bytes, flip: int
) -> None:
    data = encode_cell(circ_id, command, body)
    assert decode_cell(data).circ_id == circ_id
    mutated = bytearray(data)
    mutated[flip // 8] ^= 1 << (flip % 8)
    with contextlib.suppress(RemoteProtocolError):
        decode_cell(bytes(mutated))


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(list(MessageKind)),
    topic=st.text(min_size=1, max_size=16),
    payload=st.binary(max_size=5000),
)
def test_envelope_fragments_round_trip(kind: MessageKind, topic: str, payload: bytes) -> None:
    env = Envelope(kind, topic, payload)
    parts = split_message(9, env.encode())
    decoded = [Fragment.decode(p.encode()) for p in parts]
    assert Envelope.decode(b"".join(p.chunk for p in decoded)) == env


Decoder = Callable[[bytes], object]


def _exactly(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


def _encoded_by(
    decoder: Decoder, encode: Callable[[Any], bytes], values: st.SearchStrategy[Any]
) -> st.SearchStrategy[tuple[Decoder, object, bytes]]:
    return values.map(lambda value: (decoder, value, encode(value)))


def _zero_padded(data: bytes, size: int) -> bytes:
    return data + bytes(size - len(data))


skins = st.builds(Onionskin, _exactly(32), _exactly(32), _exactly(1568))
createds = st.builds(Created, _exactly(32), _exactly(32))
addresses = st.builds(
    RelayAddress,
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str),
    st.integers(1, 0xFFFF),
)
extends = st.builds(Extend, _exactly(32).map(NodeId), addresses, skins)
envelopes = st.builds(
    Envelope,
    st.sampled_from(MessageKind),
    st.text(min_size=1, max_size=16),
    st.binary(max_size=600),
)
codec_cases = st.one_of(
    _encoded_by(
        decode_cell,
        Cell.encode,
        st.builds(
            Cell, st.integers(1, 2**32 - 1), st.sampled_from(CellCommand), _exactly(CELL_BODY_BYTES)
        ),
    ),
    _encoded_by(
        Onionskin.decode_body, lambda skin: _zero_padded(skin.encode(), CREATE_BYTES), skins
    ),
    _encoded_by(Created.decode_body, lambda c: _zero_padded(c.encode(), CELL_BODY_BYTES), createds),
    _encoded_by(
        decode_destroy,
        lambda reason: _zero_padded(encode_reason(reason), CELL_BODY_BYTES),
        st.sampled_from(DestroyReason),
    ),
    _encoded_by(
        decode_relay_plaintext,
        lambda message: bytes(encode_relay_plaintext(message.command, message.data)),
        st.builds(
            RelayMessage, st.sampled_from(RelayCommand), st.binary(max_size=RELAY_DATA_BYTES)
        ),
    ),
    _encoded_by(Extend.decode, lambda e: _zero_padded(e.encode(), EXTEND_PADDED_BYTES), extends),
    _encoded_by(decode_extended, Created.encode, createds),
    _encoded_by(decode_truncated, encode_reason, st.sampled_from(TruncateReason)),
    _encoded_by(
        Fragment.decode,
        Fragment.encode,
        st.builds(
            split_message, st.integers(0, 2**32 - 1), st.binary(min_size=1, max_size=1500)
        ).flatmap(st.sampled_from),
    ),
    st.builds(
        lambda env, padding: (Envelope.decode, env, env.encode(padding)),
        envelopes,
        st.binary(max_size=64),
    ),
    st.builds(
        lambda message, padding: (unpad_message, message, pad_message(message, padding)),
        st.binary(max_size=600),
        st.binary(max_size=64),
    ),
)
valid_encodings = st.one_of(
    codec_cases.map(lambda case: (case[0], case[2])),
    skins.flatmap(lambda skin: st.sampled_from(create_bodies(skin))).map(
        lambda body: (decode_create_body, body)
    ),
    extends.flatmap(lambda extend: st.sampled_from(extend_data(extend))).map(
        lambda data: (decode_extend_data, data)
    ),
)


@settings(max_examples=300, deadline=None)
@given(codec_cases)
def test_every_decoder_reads_back_what_its_encoder_wrote(
    case: tuple[Decoder, object, bytes],
) -> None:
    decoder, value, encoded = case
    assert decoder(encoded) == value


@settings(max_examples=100, deadline=None)
@given(skin=skins, extend=extends)
def test_handshakes_read_back_through_their_cells(skin: Onionskin, extend: Extend) -> None:
    create = b"".join(decode_create_body(body).chunk for body in create_bodies(skin))
    assert Onionskin.decode_body(create) == skin
    message = b"".join(decode_extend_data(data).chunk for data in extend_data(extend))
    assert Extend.decode(message) == extend


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_damaged_encodings_raise_only_remote_protocol_error(data: st.DataObject) -> None:
    decoder, encoded = data.draw(valid_encodings)
    with contextlib.suppress(RemoteProtocolError):
        decoder(data.draw(damaged(st.just(encoded))))
