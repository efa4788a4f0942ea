import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.overlay.peers.token_bucket import TokenBucket


def test_starts_full_and_empties() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=3.0)
    assert [bucket.consume(100.0) for _ in range(4)] == [True, True, True, False]


def test_refills_at_rate_up_to_burst() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=5.0)
    assert bucket.consume(0.0, 5.0)
    assert bucket.available(0.25) == pytest.approx(2.5)
    assert not bucket.consume(0.25, 3.0)
    assert bucket.consume(0.3, 3.0)
    assert bucket.available(0.3) == pytest.approx(0.0)
    assert bucket.available(1000.0) == 5.0


def test_refused_consume_takes_nothing() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=2.0)
    assert not bucket.consume(0.0, 2.5)
    assert bucket.available(0.0) == 2.0


def test_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=2.0)
    assert bucket.consume(10.0, 2.0)
    assert bucket.available(5.0) == 0.0
    assert bucket.available(10.5) == pytest.approx(0.5)


def test_wait_s() -> None:
    bucket = TokenBucket(rate_per_s=4.0, burst=8.0)
    assert bucket.wait_s(0.0, 8.0) == 0.0
    assert bucket.consume(0.0, 8.0)
    assert bucket.wait_s(0.0, 2.0) == pytest.approx(0.5)
    assert bucket.wait_s(0.0, 9.0) == math.inf


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0), (math.inf, 1)])
def test_rejects_bad_parameters(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


@given(
    rate=st.floats(0.1, 1000.0),
    burst=st.floats(1.0, 1000.0),
    steps=st.lists(st.tuples(st.floats(0.0, 5.0), st.floats(0.0, 50.0)), max_size=50),
)
def test_never_negative_and_never_above_rate(
    rate: float, burst: float, steps: list[tuple[float, float]]
) -> None:
    bucket = TokenBucket(rate, burst)
    now = 0.0
    spent = 0.0
    for dt, cost in steps:
        now += dt
        if bucket.consume(now, cost):
            spent += cost
        assert 0.0 <= bucket.available(now) <= burst
    assert spent <= burst + rate * now + 1e-6


def test_full_at_is_when_a_bucket_left_alone_is_full_again() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=10.0)
    assert bucket.full_at() == -math.inf  # new
    assert bucket.consume(5.0, 4.0)
    assert bucket.full_at() == 7.0
    assert bucket.available(6.0) == 8.0
    assert bucket.full_at() == 7.0  # refilling does not move it
    assert bucket.available(7.5) == 10.0
    assert bucket.full_at() == -math.inf
