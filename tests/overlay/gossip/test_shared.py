from __future__ import annotations

import pytest

from murmur.overlay.gossip.shared import SharedMessages
from murmur.wire.gossip import Message, encode_message, message_id


def test_shares_one_copy_with_the_routers_own_id_and_record() -> None:
    shared = SharedMessages()
    first = shared.share("transaction", bytes(b"x" * 900))
    again = shared.share("transaction", bytes(b"x" * 900))
    assert all(a is b for a, b in zip(again, first, strict=True))  # the same three objects
    data, mid, record = first
    assert mid == message_id("transaction", data)
    assert record == encode_message(Message("transaction", data))
    assert shared.share("block_header", data)[1] != mid
    assert (shared.hits, shared.misses) == (1, 2)


def test_keeps_only_the_newest_messages() -> None:
    shared = SharedMessages(capacity=3)
    for i in range(10):
        shared.share("transaction", b"%d" % i)
    assert len(shared) == 3
    shared.share("transaction", b"7")  # a hit keeps its place: "7" is still the oldest
    shared.share("transaction", b"10")
    shared.share("transaction", b"7")
    assert (shared.hits, shared.misses) == (1, 12)
    with pytest.raises(ValueError):
        SharedMessages(capacity=0)
