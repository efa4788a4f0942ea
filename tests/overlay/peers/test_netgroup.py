from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.overlay.peers.netgroup import InboundSlot, inbound_to_evict, netgroup


@pytest.mark.parametrize(
    ("host", "group"),
    [
        ("203.0.113.7", "203.0.0.0/16"),
        ("203.0.9.1", "203.0.0.0/16"),
        ("127.0.0.1", "127.0.0.0/16"),
        ("::ffff:203.0.113.7", "203.0.0.0/16"),
        ("2001:db8:1:2::5", "2001:db8::/32"),
        ("2001:db8:ffff::1%eth0", "2001:db8::/32"),
        ("peer.example", "peer.example"),
    ],
)
def test_netgroup_is_the_ipv4_16_or_the_ipv6_32(host: str, group: str) -> None:
    assert netgroup(host) == group


def slot(conn_id: int, group: str, opened_at: float = 0.0, authenticated: bool = True):
    return InboundSlot(conn_id, group, opened_at, authenticated)


def test_a_newcomer_from_a_new_group_evicts_from_the_fullest() -> None:
    slots = [slot(1, "a", 1.0), slot(2, "a", 3.0), slot(3, "a", 2.0), slot(4, "b", 9.0)]
    assert inbound_to_evict(slots, "c") == 2  # the youngest of group a


def test_one_that_has_not_finished_its_handshake_goes_first() -> None:
    slots = [slot(1, "a", 1.0, authenticated=False), slot(2, "a", 3.0), slot(3, "b", 9.0)]
    assert inbound_to_evict(slots, "c") == 1


def test_no_eviction_that_would_only_swap_one_group_for_another() -> None:
    assert inbound_to_evict([slot(1, "a"), slot(2, "b")], "c") is None
    assert inbound_to_evict([slot(1, "a"), slot(2, "a"), slot(3, "c")], "c") is None
    assert inbound_to_evict([slot(1, "a"), slot(2, "a"), slot(3, "a")], "a") is None
    assert inbound_to_evict([], "a") is None


def test_among_equally_full_groups_the_one_with_the_youngest_member_gives_way() -> None:
    slots = [slot(1, "a", 1.0), slot(2, "a", 2.0), slot(3, "b", 5.0), slot(4, "b", 0.0)]
    assert inbound_to_evict(slots, "c") == 3
    assert inbound_to_evict(list(reversed(slots)), "c") == 3


slots_strategy = st.lists(
    st.tuples(st.sampled_from("abcde"), st.integers(0, 5), st.booleans()), max_size=24
).map(
    lambda rows: [
        InboundSlot(i, group, float(t), authenticated)
        for i, (group, t, authenticated) in enumerate(rows)
    ]
)


@given(slots_strategy, st.sampled_from("abcdef"), st.randoms(use_true_random=False))
def test_an_eviction_always_makes_the_slots_fairer(slots, newcomer, shuffle) -> None:
    victim = inbound_to_evict(slots, newcomer)
    shuffled = list(slots)
    shuffle.shuffle(shuffled)
    assert inbound_to_evict(shuffled, newcomer) == victim
    held = Counter(s.group for s in slots)
    if victim is None:
        assert not held or max(held.values()) < held[newcomer] + 2
        return
    [evicted] = [s for s in slots if s.conn_id == victim]
    assert held[evicted.group] == max(held.values())
    after = held.copy()
    after[evicted.group] -= 1
    after[newcomer] += 1
    # The evicted group still holds at least as many slots as the newcomer's now does.
    assert after[evicted.group] >= after[newcomer]
