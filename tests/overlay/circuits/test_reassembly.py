"""Bounded, in-order reassembly of fragmented messages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import RemoteProtocolError
from murmur.overlay.circuits.reassembly import Reassembly
from murmur.wire.cells import FRAGMENT_CHUNK_BYTES, MAX_ENVELOPE_BYTES, Fragment, split_message


def _r(**kw: float) -> Reassembly:
    return Reassembly(max_pending=int(kw.get("max_pending", 2)), timeout_s=kw.get("timeout", 10))


def test_multi_fragment_message_comes_back_whole_once() -> None:
    r = _r()
    message = bytes(range(256)) * 7
    parts = split_message(7, message)
    assert len(parts) == 4
    results = [r.add(p, 0.0) for p in parts]
    assert results[:-1] == [None] * 3 and results[-1] == message
    assert r.buffered_bytes == 0 and len(r) == 0


def test_largest_message_fits_and_one_byte_more_does_not_split() -> None:
    r = _r()
    parts = split_message(1, b"x" * MAX_ENVELOPE_BYTES)
    out = None
    for p in parts:
        out = r.add(p, 0.0)
    assert out == b"x" * MAX_ENVELOPE_BYTES
    with pytest.raises(ValueError):
        split_message(1, b"x" * (MAX_ENVELOPE_BYTES + 1))


def test_out_of_order_fragment_discards_the_message() -> None:
    r = _r()
    parts = split_message(1, b"y" * (3 * FRAGMENT_CHUNK_BYTES))
    r.add(parts[0], 0.0)
    with pytest.raises(RemoteProtocolError):
        r.add(parts[2], 0.0)
    assert len(r) == 0 and r.buffered_bytes == 0


def test_message_must_start_at_index_zero() -> None:
    with pytest.raises(RemoteProtocolError):
        _r().add(Fragment(1, 1, 2, b"z" * FRAGMENT_CHUNK_BYTES), 0.0)


def test_pending_messages_are_capped() -> None:
    r = _r(max_pending=2)
    for mid in (1, 2):
        r.add(split_message(mid, b"a" * (2 * FRAGMENT_CHUNK_BYTES))[0], 0.0)
    with pytest.raises(RemoteProtocolError) as info:
        r.add(split_message(3, b"a" * (2 * FRAGMENT_CHUNK_BYTES))[0], 0.0)
    assert info.value.reason == "too_many_reassemblies"


def test_size_cap_is_enforced_fragment_by_fragment() -> None:
    r = Reassembly(max_pending=1, timeout_s=1, max_bytes=FRAGMENT_CHUNK_BYTES + 10)
    parts = split_message(1, b"b" * (3 * FRAGMENT_CHUNK_BYTES))
    r.add(parts[0], 0.0)
    with pytest.raises(RemoteProtocolError) as info:
        r.add(parts[1], 0.0)
    assert info.value.reason == "message_too_large"
    assert r.buffered_bytes == 0


def test_stale_messages_expire() -> None:
    r = _r(timeout=10)
    r.add(split_message(1, b"c" * (2 * FRAGMENT_CHUNK_BYTES))[0], 5.0)
    assert r.next_deadline() == 15.0
    assert r.expire(14.9) == 0
    assert r.expire(15.0) == 1
    assert r.next_deadline() is None and r.buffered_bytes == 0


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.binary(min_size=1, max_size=1600), min_size=1, max_size=3), data=st.data()
)
def test_interleaved_messages_come_back_whole(messages: list[bytes], data: st.DataObject) -> None:
    r = _r(max_pending=len(messages))
    queues = [split_message(mid + 1, message) for mid, message in enumerate(messages)]
    done: dict[int, bytes] = {}
    while any(queues):
        queue = data.draw(st.sampled_from([q for q in queues if q]))
        fragment = queue.pop(0)
        message = r.add(fragment, 0.0)
        if message is not None:
            done[fragment.message_id] = message
    assert done == {mid + 1: message for mid, message in enumerate(messages)}
    assert r.buffered_bytes == 0 and len(r) == 0


fragments = st.builds(
    Fragment,
    message_id=st.integers(0, 3),
    index=st.integers(0, 4),
    count=st.integers(1, 4),
    chunk=st.binary(min_size=1, max_size=60),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(fragments, st.floats(0.0, 5.0)), max_size=40))
def test_any_fragment_sequence_stays_within_the_bounds(
    steps: list[tuple[Fragment, float]],
) -> None:
    r = Reassembly(max_pending=2, timeout_s=10.0, max_bytes=100)
    now = 0.0
    for fragment, step in steps:
        now += step
        r.expire(now)
        try:
            message = r.add(fragment, now)
        except RemoteProtocolError:
            message = None
        assert message is None or len(message) <= r.max_bytes
        assert len(r) <= r.max_pending
        assert 0 <= r.buffered_bytes <= r.max_pending * r.max_bytes
