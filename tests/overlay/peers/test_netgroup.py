from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.overlay.peers.netgroup import (
    InboundSlot,
    inbound_to_evict,
    netgroup,
    network_prefix,
    site,
)


def test_prefixes() -> None:
    assert network_prefix("10.1.2.3") == network_prefix("10.1.200.9")
    assert network_prefix("10.1.2.3") != network_prefix("10.2.2.3")
    assert network_prefix("::ffff:10.1.9.9") == network_prefix("10.1.0.1")
    assert network_prefix("2001:db8:1::1") == network_prefix("2001:db8:ffff::2")
    assert network_prefix("2001:db8::1") != network_prefix("2001:db9::1")


@pytest.mark.parametrize(
    ("host", "group"),
    [
        ("203.0.113.7", b"4\xcb\x00"),
        ("127.0.0.1", b"4\x7f\x00"),
        ("::ffff:203.0.113.7", b"4\xcb\x00"),
        ("2001:db8:ffff::1%eth0", b"6\x20\x01\x0d\xb8"),
        ("peer.example", b"hpeer.example"),
    ],
)
def test_netgroup_is_the_prefix_or_the_host_itself(host: str, group: bytes) -> None:
    assert netgroup(host) == group


def test_a_site_is_the_ipv4_24_or_the_ipv6_48() -> None:
    assert site("198.51.100.7") == site("198.51.100.200") != site("198.51.101.7")
    assert site("::ffff:198.51.100.7") == site("198.51.100.1")
    assert site("2001:db8:0:1::1") == site("2001:db8:0:ffff::1%eth0") != site("2001:db8:1::1")
    assert site("peer.example") == b"hpeer.example"


def slot(
    conn_id: int,
    group: bytes,
    opened_at: float = 0.0,
    authenticated: bool = True,
    protected: bool = False,
):
    return InboundSlot(conn_id, group, opened_at, authenticated, protected)


def test_a_newcomer_from_a_new_group_evicts_from_the_fullest() -> None:
    slots = [slot(1, b"a", 1.0), slot(2, b"a", 3.0), slot(3, b"a", 2.0), slot(4, b"b", 9.0)]
    assert inbound_to_evict(slots, b"c") == 2  # the youngest of group a


def test_one_that_has_not_finished_its_handshake_goes_first() -> None:
    slots = [slot(1, b"a", 1.0, authenticated=False), slot(2, b"a", 3.0), slot(3, b"b", 9.0)]
    assert inbound_to_evict(slots, b"c") == 1


def test_no_eviction_that_would_only_swap_one_group_for_another() -> None:
    assert inbound_to_evict([slot(1, b"a"), slot(2, b"b")], b"c") is None
    assert inbound_to_evict([slot(1, b"a"), slot(2, b"a"), slot(3, b"c")], b"c") is None
    assert inbound_to_evict([slot(1, b"a"), slot(2, b"a"), slot(3, b"a")], b"a") is None
    assert inbound_to_evict([], b"a") is None


def test_among_equally_full_groups_the_one_with_the_youngest_member_gives_way() -> None:
    slots = [slot(1, b"a", 1.0), slot(2, b"a", 2.0), slot(3, b"b", 5.0), slot(4, b"b", 0.0)]
    assert inbound_to_evict(slots, b"c") == 3
    assert inbound_to_evict(list(reversed(slots)), b"c") == 3


GROUPS = [b"a", b"b", b"c", b"d", b"e"]
def test_protected_slots_count_in_their_group_but_are_never_evicted() -> None:
    slots = [slot(1, b"a", 1.0, protected=True), slot(2, b"a", 2.0, protected=True)]
    slots += [slot(3, b"b", 3.0), slot(4, b"b", 4.0)]
    # Both groups hold two, but only b has an evictable member.
    assert inbound_to_evict(slots, b"c") == 4
    everyone_protected = [slot(k, b"a", float(k), protected=True) for k in range(5)]
    assert inbound_to_evict(everyone_protected, b"c") is None
    # A fuller group that is all protected makes way for the next one still over the floor.
    slots = [slot(k, b"a", float(k), protected=True) for k in range(5)]
    slots += [slot(10, b"b", 1.0), slot(11, b"b", 2.0), slot(12, b"c", 9.0)]
    assert inbound_to_evict(slots, b"d") == 11
    assert inbound_to_evict(slots, b"c") is None  # b holds only one more than c


slots_strategy = st.lists(
    st.tuples(st.sampled_from(GROUPS), st.integers(0, 5), st.booleans(), st.booleans()),
    max_size=24,
).map(
    lambda rows: [
        InboundSlot(i, group, float(t), authenticated, protected)
        for i, (group, t, authenticated, protected) in enumerate(rows)
    ]
)


@given(slots_strategy, st.sampled_from([*GROUPS, b"f"]), st.randoms(use_true_random=False))
def test_an_eviction_always_makes_the_slots_fairer(slots, newcomer, shuffle) -> None:
    victim = inbound_to_evict(slots, newcomer)
    shuffled = list(slots)
    shuffle.shuffle(shuffled)
    assert inbound_to_evict(shuffled, newcomer) == victim
    held = Counter(s.group for s in slots)
    evictable = [s for s in slots if not s.protected]
    if victim is None:
        assert all(held[s.group] < held[newcomer] + 2 for s in evictable)
        return
    [evicted] = [s for s in slots if s.conn_id == victim]
    assert not evicted.protected
    assert held[evicted.group] == max(held[s.group] for s in evictable)
    after = held.copy()
    after[evicted.group] -= 1
    after[newcomer] += 1
    # The evicted group still holds at least as many slots as the newcomer's now does.
    assert after[evicted.group] >= after[newcomer]
