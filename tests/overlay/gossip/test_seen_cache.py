from __future__ import annotations

from murmur.overlay.gossip.seen_cache import SeenCache


def test_add_reports_new_ids_once() -> None:
    seen = SeenCache(ttl_s=10.0, capacity=100)
    assert seen.add(b"a", 0.0)
    assert not seen.add(b"a", 1.0)
    assert b"a" in seen and b"b" not in seen


def test_ids_expire_ttl_after_first_sighting() -> None:
    seen = SeenCache(ttl_s=10.0, capacity=100)
    seen.add(b"a", 0.0)
    seen.add(b"b", 5.0)
    seen.add(b"a", 6.0)  # a duplicate does not extend the first sighting
    assert seen.expire(9.9) == 0
    assert seen.expire(10.0) == 1
    assert b"a" not in seen and b"b" in seen
    assert seen.expire(15.0) == 1
    assert len(seen) == 0
    assert seen.add(b"a", 16.0)


def test_capacity_evicts_the_oldest() -> None:
    seen = SeenCache(ttl_s=100.0, capacity=3)
    for i in range(5):
        seen.add(bytes([i]), float(i))
    assert len(seen) == 3
    assert seen.evicted == 2
    assert bytes([0]) not in seen and bytes([1]) not in seen and bytes([4]) in seen
