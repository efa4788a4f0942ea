from murmur.overlay.peers.backoff import ReconnectBackoff
from murmur.sim.rng import SeededRng


def test_ceiling_doubles_to_max_and_resets() -> None:
    backoff = ReconnectBackoff(base_s=1.0, max_s=10.0)
    rng = SeededRng(1)
    ceilings = []
    for _ in range(6):
        ceilings.append(backoff.ceiling_s())
        delay = backoff.next_delay(rng)
        assert 0.0 <= delay <= ceilings[-1]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.ceiling_s() == 1.0


def test_full_jitter_spreads_delays() -> None:
    rng = SeededRng(7)
    delays = []
    for _ in range(200):
        backoff = ReconnectBackoff(base_s=1.0, max_s=60.0)
        for _ in range(10):
            delay = backoff.next_delay(rng)
        delays.append(delay)
    assert min(delays) < 10.0 < 50.0 < max(delays) <= 60.0


def test_many_failures_stay_bounded() -> None:
    backoff = ReconnectBackoff(base_s=0.5, max_s=30.0)
    rng = SeededRng(3)
    for _ in range(10_000):
        assert backoff.next_delay(rng) <= 30.0
