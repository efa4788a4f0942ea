import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.base.ids import NodeId
from murmur.overlay.peers.bans import AddressThrottle, BanList, HostBudget, host_key


def nid(n: int) -> NodeId:
    return NodeId(n.to_bytes(32, "big"))


def test_ban_expires() -> None:
    bans = BanList()
    bans.ban(nid(1), now=100.0, duration_s=60.0, reason="bad_frame")
    assert bans.is_banned(nid(1), 100.0)
    assert bans.is_banned(nid(1), 159.9)
    assert not bans.is_banned(nid(2), 120.0)
    assert not bans.is_banned(nid(1), 160.0)
    assert len(bans) == 0


def test_rebanning_keeps_the_longer_ban() -> None:
    bans = BanList()
    bans.ban(nid(1), 0.0, 100.0, "first")
    bans.ban(nid(1), 10.0, 5.0, "second")
    assert bans.is_banned(nid(1), 50.0)
    bans.ban(nid(1), 50.0, 500.0, "third")
    [ban] = bans.active(60.0)
    assert (ban.until, ban.reason) == (550.0, "third")


def test_bounded_evicts_soonest_expiring() -> None:
    bans = BanList(max_entries=3)
    bans.ban(nid(1), 0.0, 30.0, "r")
    bans.ban(nid(2), 0.0, 10.0, "r")
    bans.ban(nid(3), 0.0, 20.0, "r")
    bans.ban(nid(4), 0.0, 40.0, "r")
    assert len(bans) == 3
    assert not bans.is_banned(nid(2), 1.0)
    assert all(bans.is_banned(nid(n), 1.0) for n in (1, 3, 4))
    # A ban shorter than every held ban does not push one out.
    bans.ban(nid(5), 0.0, 1.0, "r")
    assert not bans.is_banned(nid(5), 0.5)
    # Expired bans make room first.
    bans.ban(nid(6), 35.0, 5.0, "r")
    assert bans.is_banned(nid(6), 36.0) and bans.is_banned(nid(4), 36.0)


@given(st.lists(st.tuples(st.integers(0, 50), st.floats(0.0, 10.0), st.floats(0.1, 100.0))))
def test_ban_list_never_exceeds_bound(ops: list[tuple[int, float, float]]) -> None:
    bans = BanList(max_entries=8)
    now = 0.0
    for n, dt, duration in ops:
        now += dt
        bans.ban(nid(n), now, duration, "r")
        assert len(bans) <= 8
        assert bans.is_banned(nid(n), now) or len(bans) == 8


def test_throttle_escalates_doubling_to_cap() -> None:
    throttle = AddressThrottle()
    backoffs = [throttle.record_failure("198.51.100.7", float(t)) for t in range(8)]
    assert backoffs == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert not throttle.allow("198.51.100.7", 7.0 + 59.0)
    assert throttle.allow("198.51.100.7", 7.0 + 60.0)


def test_throttle_back_off_is_short_and_decays() -> None:
    throttle = AddressThrottle(quiet_s=120.0)
    host = "203.0.113.9"
    assert throttle.record_failure(host, 0.0) == 1.0
    assert not throttle.allow(host, 0.5)
    assert throttle.allow(host, 1.0)
    for t in (2.0, 3.0, 4.0):
        throttle.record_failure(host, t)
    # 8 s now; after 2 quiet periods two doublings are forgiven: 4 s -> next is 4 s, not 16 s.
    assert throttle.record_failure(host, 4.0 + 240.0) == 4.0
    # After a long quiet time the host starts again from the base.
    assert throttle.record_failure(host, 10_000.0) == 1.0


def test_throttle_never_blocks_a_different_host() -> None:
    throttle = AddressThrottle()
    for t in range(20):
        throttle.record_failure("192.0.2.1", float(t))
    assert not throttle.allow("192.0.2.1", 20.0)
    assert throttle.allow("192.0.2.2", 20.0)
    assert throttle.allow("2001:db8:1::1", 20.0)


def test_success_clears_back_off() -> None:
    throttle = AddressThrottle()
    throttle.record_failure("127.0.0.1", 0.0)
    throttle.record_failure("127.0.0.1", 0.1)
    assert not throttle.allow("127.0.0.1", 0.5)
    throttle.record_success("127.0.0.1")
    assert throttle.allow("127.0.0.1", 0.5)
    assert throttle.record_failure("127.0.0.1", 0.6) == 1.0
    throttle.record_success("10.9.9.9")  # unknown host: nothing to clear
    assert len(throttle) == 1


def test_attempt_rate_limit_per_host() -> None:
    throttle = AddressThrottle(attempts_per_s=2.0, attempts_burst=5.0)
    assert [throttle.allow("127.0.0.1", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert throttle.allow("127.0.0.2", 0.0)
    assert throttle.allow("127.0.0.1", 0.5)
    assert not throttle.allow("127.0.0.1", 0.5)


def test_throttle_is_a_bounded_lru() -> None:
    throttle = AddressThrottle(max_entries=3, attempts_per_s=1.0, attempts_burst=1.0)
    assert throttle.allow("10.1.0.1", 0.0)
    for n in range(2, 5):
        throttle.allow(f"10.{n}.0.1", 0.0)
    assert len(throttle) == 3
    # 10.1.0.1 was evicted as least recently seen: it comes back with a fresh budget.
    assert throttle.allow("10.1.0.1", 0.0)
    # 10.4.0.1 is still tracked and has spent its single token.
    assert not throttle.allow("10.4.0.1", 0.0)


def test_hosts_of_one_site_share_one_more_budget() -> None:
    throttle = AddressThrottle(
        attempts_per_s=1.0, attempts_burst=2.0, site_attempts_per_s=2.0, site_attempts_burst=5.0
    )
    # Five /64s of one /48 (which holds 65,536 of them): five attempts, not ten.
    hosts = [f"2001:db8:0:{n}::1" for n in range(5)]
    allowed = [throttle.allow(host, 0.0) for host in hosts for _ in range(2)]
    assert allowed.count(True) == 5
    # A refusal spends neither budget: the host's own tokens wait for when the site refills.
    assert throttle.allow("2001:db8:0:4::1", 0.5)
    # Another /48 of the same /32 (the same ISP) is untouched, and so is an IPv4 site.
    assert throttle.allow("2001:db8:1::1", 0.5) and throttle.allow("203.0.113.1", 0.5)
    assert throttle.allow("2001:db8:1::1", 0.5)
    # IPv4: hosts of one /24 share a site; the next /24 does not.
    ipv4 = AddressThrottle(
        attempts_per_s=1.0, attempts_burst=1.0, site_attempts_per_s=1.0, site_attempts_burst=2.0
    )
    assert [ipv4.allow(f"198.51.100.{n}", 0.0) for n in range(3)] == [True, True, False]
    assert ipv4.allow("198.51.101.1", 0.0)


def test_a_site_budget_below_a_host_s_is_refused() -> None:
    with pytest.raises(ValueError):
        AddressThrottle(attempts_burst=8.0, site_attempts_burst=4.0)


def test_host_key() -> None:
    assert host_key("127.0.0.1") == "127.0.0.1"
    assert host_key("::ffff:192.0.2.5") == "192.0.2.5"
    assert (
        host_key("2001:db8:1:2:aaaa::1") == host_key("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    )
    assert host_key("2001:db8:1:3::1") != host_key("2001:db8:1:2::1")
    assert host_key("fe80::1%eth0") == "fe80::/64"
    assert host_key("example.org") == "example.org"


def test_a_host_budget_allows_its_burst_then_its_rate_and_a_site_four_hosts_worth() -> None:
    budget = HostBudget(1 / 600, 2, site_rate_per_s=4 / 600, site_burst=8)
    assert [budget.consume("8.8.8.8", 0.0) for _ in range(3)] == [True, True, False]
    assert budget.consume("8.8.8.8", 599.0) is False
    assert budget.consume("8.8.8.8", 600.0) is True
    # the same /24: each new host has its own two, until the site's eight are spent
    hosts = [f"9.9.9.{i}" for i in range(1, 6)]
    allowed = [budget.consume(host, 0.0) for host in hosts for _ in range(2)]
    assert allowed == [True] * 8 + [False] * 2
    assert budget.consume("9.9.10.1", 0.0) is True  # another site


def test_a_host_budget_forgets_the_least_recent_host_beyond_its_bound() -> None:
    budget = HostBudget(1 / 600, 1, site_rate_per_s=1 / 600, site_burst=1, max_entries=2)
    assert budget.consume("1.0.0.1", 0.0) and budget.consume("2.0.0.1", 0.0)
    assert budget.consume("3.0.0.1", 0.0)  # pushes 1.0.0.1 out
    assert budget.consume("1.0.0.1", 0.0)  # a fresh budget, as for a host never seen
    with pytest.raises(ValueError):
        HostBudget(0.0, 1, site_rate_per_s=1.0, site_burst=1)
    with pytest.raises(ValueError):
        HostBudget(1.0, 1, site_rate_per_s=1.0, site_burst=1, max_entries=0)
