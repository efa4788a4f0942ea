from __future__ import annotations

from murmur.overlay.gossip.mcache import MessageCache


def _cache(**caps: int) -> MessageCache:
    limits = {"max_messages": 1000, "max_bytes": 1 << 20} | caps
    return MessageCache(history_length=3, history_gossip=2, **limits)


def test_messages_live_history_length_heartbeats() -> None:
    mc = _cache()
    mc.put(b"m1", "t", b"record1")
    assert mc.get(b"m1") == b"record1"
    mc.shift()
    mc.shift()
    assert mc.get(b"m1") == b"record1"
    mc.shift()
    assert mc.get(b"m1") is None
    assert len(mc) == 0 and mc.bytes == 0


def test_gossip_ids_cover_the_newest_windows_by_topic() -> None:
    mc = _cache()
    mc.put(b"old", "t", b"x")
    mc.shift()
    mc.put(b"mid", "t", b"x")
    mc.put(b"other", "u", b"x")
    mc.shift()
    mc.put(b"new", "t", b"x")
    mc.put(b"new", "t", b"x")  # a repeat is stored once
    assert mc.gossip_ids() == {"t": [b"new", b"mid"], "u": [b"other"]}


def test_caps_evict_the_oldest_first() -> None:
    mc = _cache(max_messages=3)
    for i in range(5):
        mc.put(bytes([i]), "t", b"r")
        if i == 1:
            mc.shift()
    assert len(mc) == 3
    assert [mc.get(bytes([i])) for i in range(5)] == [None, None, b"r", b"r", b"r"]
    by_bytes = _cache(max_bytes=25)
    for i in range(4):
        by_bytes.put(bytes([i]), "t", bytes(10))
    assert by_bytes.bytes == 20 and len(by_bytes) == 2
    assert by_bytes.get(bytes([3])) is not None and by_bytes.get(bytes([1])) is None
