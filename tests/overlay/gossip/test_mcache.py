from __future__ import annotations

from murmur.overlay.gossip.mcache import MessageCache
from murmur.sim.rng import SeededRng


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
    assert len(mc) == 0 and mc.stored_bytes == 0


def test_gossip_ids_cover_the_newest_windows_by_topic() -> None:
    mc = _cache()
    mc.put(b"old", "t", b"x")
    mc.shift()
    mc.put(b"mid", "t", b"x")
    mc.put(b"other", "u", b"x")
    mc.shift()
    mc.put(b"new", "t", b"x")
    mc.put(b"new", "t", b"x")  # a repeat is stored once
    assert sorted(mc.gossip_topics()) == ["t", "u"]
    rng = SeededRng(1)
    assert mc.gossip_ids("t", 10, rng) == [b"new", b"mid"]
    assert mc.gossip_ids("u", 10, rng) == [b"other"]
    assert mc.gossip_ids("v", 10, rng) == []


def test_gossip_ids_beyond_the_limit_are_a_random_subset() -> None:
    mc = _cache()
    ids = [i.to_bytes(2, "big") for i in range(100)]
    for mid in ids:
        mc.put(mid, "t", b"x")
    first = mc.gossip_ids("t", 10, SeededRng(1))
    second = mc.gossip_ids("t", 10, SeededRng(2))
    assert len(set(first)) == 10 and set(first) <= set(ids)
    assert first != second
    assert first != ids[:10] and first != ids[-10:]


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
    assert by_bytes.stored_bytes == 20 and len(by_bytes) == 2
    assert by_bytes.get(bytes([3])) is not None and by_bytes.get(bytes([1])) is None


def test_eviction_takes_the_oldest_window_first_across_topics() -> None:
    mc = _cache(max_messages=4)
    mc.put(b"t1", "t", b"r")
    mc.put(b"u1", "u", b"r")
    mc.shift()
    mc.put(b"t2", "t", b"r")
    mc.put(b"u2", "u", b"r")
    mc.put(b"t3", "t", b"r")
    mc.put(b"t4", "t", b"r")
    assert [mc.get(m) for m in (b"t1", b"u1")] == [None, None]
    assert all(mc.get(m) for m in (b"t2", b"u2", b"t3", b"t4"))
    assert mc.gossip_topics() == ["t", "u"]
    mc.shift()
    mc.shift()
    mc.put(b"v1", "v", b"r")
    assert mc.gossip_topics() == ["v"]  # history_gossip = 2: the t/u window is too old
    assert len(mc) == 4 and mc.get(b"t2") is None  # the oldest window's first topic went


def test_serve_counts_answers_per_peer_and_forgets_them_with_the_message() -> None:
    mc = _cache()
    mc.put(b"m1", "t", b"record1")
    assert [mc.serve(b"m1", b"p1", 2) for _ in range(3)] == [b"record1", b"record1", None]
    assert mc.serve(b"m1", b"p2", 2) == b"record1"
    assert mc.serve(b"unknown", b"p1", 2) is None
    for _ in range(3):
        mc.shift()
    assert mc.serve(b"m1", b"p1", 2) is None and mc._served == {}
    mc.put(b"m1", "t", b"record1")  # the same message cached again starts afresh
    assert mc.serve(b"m1", b"p1", 2) == b"record1"


def test_serve_counts_go_with_an_evicted_message() -> None:
    mc = _cache(max_messages=1)
    mc.put(b"m1", "t", b"record1")
    assert mc.serve(b"m1", b"p1", 1) == b"record1"
    mc.put(b"m2", "t", b"record2")  # evicts m1
    assert b"m1" not in mc and list(mc._served) == []


def test_retransmission_counts_are_bounded() -> None:
    """Peers asking for every cached message cannot grow the counts past the cap: those of the
    message served first go, and that message may be served again."""
    mc = _cache(max_served_counts=4)
    for m in (b"m1", b"m2"):
        mc.put(m, "t", b"record")
    for peer in (b"p1", b"p2", b"p3"):
        assert mc.serve(b"m1", peer, 1) == b"record"
    assert mc.serve(b"m2", b"p1", 1) == b"record"
    assert mc.serve(b"m1", b"p1", 1) is None  # four counts: all still held
    assert mc.serve(b"m2", b"p2", 1) == b"record"  # a fifth: m1's three go
    assert list(mc._served) == [b"m2"] and mc._served_counts == 2
    assert mc.serve(b"m1", b"p1", 1) == b"record"
