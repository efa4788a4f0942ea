"""However the transport chunks the byte stream, the link sees the same events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.crypto.identity import Identity
from murmur.link.connection import LinkClosed, LinkConnection
from murmur.sim.rng import SeededRng
from murmur.wire.link import MAX_RECORD_BODY_BYTES

A, B = Identity.from_seed(b"A" * 32), Identity.from_seed(b"B" * 32)


def _pair() -> tuple[LinkConnection, LinkConnection]:
    rng = SeededRng(3)
    a = LinkConnection(initiator=True, identity=A, rng=rng, now=0.0, expected_peer=B.node_id)
    b = LinkConnection(initiator=False, identity=B, rng=rng, now=0.0)
    for _ in range(3):
        b.receive_data(a.data_to_send(), 0.0)
        a.receive_data(b.data_to_send(), 0.0)
    a.drain_events()
    b.drain_events()
    return a, b


def _stream(sizes: list[int], close: bool, corrupt_at: int) -> tuple[LinkConnection, bytes]:
    a, b = _pair()
    for i, n in enumerate(sizes):
        a.send_message(bytes([i]) * n, 0.0)
    if close:
        a.close(0.0)
    stream = bytearray(a.data_to_send())
    if corrupt_at < len(stream) and corrupt_at % 3 == 0:
        stream[corrupt_at] ^= 1
    # Garbage after the real records, long enough to complete any record a corrupted length
    # field may announce, so that every stream ends in an error.
    return b, bytes(stream + b"\x00\x00\x00\x20" + bytes(MAX_RECORD_BODY_BYTES + 4))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 3000), min_size=1, max_size=6),
    st.lists(st.integers(1, 5000), max_size=30),
    st.booleans(),
    st.integers(0, 20000),
)
def test_chunking_is_invisible(
    sizes: list[int], cuts: list[int], close: bool, corrupt_at: int
) -> None:
    reference, stream = _stream(sizes, close, corrupt_at)
    reference.receive_data(stream, 0.0)
    expected = reference.drain_events()
    chunked, stream = _stream(sizes, close, corrupt_at)
    pos = 0
    for cut in cuts:
        chunked.receive_data(stream[pos : pos + cut], 0.0)
        pos += cut
    chunked.receive_data(stream[pos:], 0.0)
    got = chunked.drain_events()
    assert got == expected
    assert isinstance(got[-1], LinkClosed)
