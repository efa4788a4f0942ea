"""The shaped origin against a fake circuit client: delays, slots, cover, bounds, failures."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from murmur.base.errors import LocalProtocolError
from murmur.overlay.circuits.selection import NoCircuitAvailable
from murmur.overlay.shaping import (
    CoverConfig,
    DelayRange,
    QueueFull,
    RateConfig,
    ResendConfig,
    ShapedOrigin,
    ShapingPolicy,
)
from murmur.sim.rng import SeededRng
from murmur.wire.gossip import message_id


@dataclass
class FakePort:
    ready: int = 3
    raise_on_send: bool = False
    buildable: bool = True
    next_ref: int = 1
    log: list[tuple] = field(default_factory=list)

    def allocate_ref(self) -> int:
        ref, self.next_ref = self.next_ref, self.next_ref + 1
        return ref

    def ready_circuits(self) -> int:
        return self.ready

    def check_available(self) -> None:
        if not self.buildable:
            raise NoCircuitAvailable("no path")

    def send(
        self, topic: str, payload: bytes, now: float, *, buckets: tuple[int, ...], ref: int
    ) -> int:
        if self.raise_on_send:
            raise NoCircuitAvailable("none")
        self.log.append(("real", now, ref, payload, buckets))
        return ref

    def send_cover(self, now: float, *, padded_bytes: int) -> bool:
        self.log.append(("cover", now, padded_bytes))
        return self.ready > 0

    def fail_send(self, ref: int, reason: str) -> None:
        self.log.append(("failed", ref, reason))


def _origin(policy: ShapingPolicy, port: FakePort | None = None) -> tuple[ShapedOrigin, FakePort]:
    port = port or FakePort()
    origin = ShapedOrigin(port=port, rng=SeededRng(1))
    origin.open_lane("L", policy, 0.0)
    return origin, port


def _run(origin: ShapedOrigin, until: float) -> None:
    while (t := origin.next_deadline()) is not None and t <= until:
        origin.handle_timer(t)


def test_without_shaping_a_message_leaves_at_once_padded_as_the_policy_says() -> None:
    origin, port = _origin(ShapingPolicy(buckets=(1024,)))
    ref = origin.submit("L", "transaction", b"tx", 3.0)
    assert port.log == [("real", 3.0, ref, b"tx", (1024,))]
    assert origin.next_deadline() == 3.0 + ResendConfig().timeout_s
    origin.published("transaction", message_id("transaction", b"tx"), 2)
    assert origin.next_deadline() is None


def test_origin_jitter_holds_each_message_within_its_range() -> None:
    origin, port = _origin(ShapingPolicy(origin_delay=DelayRange(0.05, 0.15), max_pending=200))
    refs = [origin.submit("L", "transaction", bytes([i]), 1.0) for i in range(200)]
    assert port.log == []
    _run(origin, 2.0)
    sent = {entry[2]: entry[1] for entry in port.log}
    assert sorted(sent) == refs
    delays = [t - 1.0 for t in sent.values()]
    assert min(delays) >= 0.05 and max(delays) <= 0.15
    assert max(delays) - min(delays) > 0.08


def test_slots_send_real_messages_first_then_cover_of_the_drawn_sizes() -> None:
    policy = ShapingPolicy(
        rate=RateConfig(rate_per_s=2.0),
        cover_sizes=((2048, 1.0), (8192, 1.0)),
        resend=None,  # no gossip echoes the messages back here
    )
    origin, port = _origin(policy)
    a = origin.submit("L", "transaction", b"a", 0.0)
    b = origin.submit("L", "transaction", b"b", 0.0)
    assert port.log == []
    _run(origin, 50.0)
    kinds = [entry[0] for entry in port.log]
    assert kinds[:2] == ["real", "real"] and set(kinds[2:]) == {"cover"}
    assert [port.log[0][2], port.log[1][2]] == [a, b]
    times = [entry[1] for entry in port.log]
    assert all(y - x == pytest.approx(0.5) for x, y in itertools.pairwise(times))
    # the configured mix: no gossip brought the real messages' 512-byte bucket back
    assert {entry[2] for entry in port.log[2:]} == {2048, 8192}
    assert origin.counters.get("cover_sent") == len(port.log) - 2


def test_without_cover_an_empty_slot_sends_nothing() -> None:
    origin, port = _origin(ShapingPolicy(rate=RateConfig(rate_per_s=2.0, cover=False)))
    _run(origin, 10.0)
    assert port.log == []
    origin.submit("L", "transaction", b"x", 10.0)
    _run(origin, 11.0)
    assert [entry[0] for entry in port.log] == ["real"]


def test_with_no_ready_circuit_slots_are_skipped_and_stale_messages_fail() -> None:
    port = FakePort(ready=0)
    origin, port = _origin(ShapingPolicy(rate=RateConfig(rate_per_s=2.0, max_wait_s=5.0)), port)
    ref = origin.submit("L", "transaction", b"x", 0.0)
    _run(origin, 4.9)
    assert port.log == []
    _run(origin, 5.1)
    assert port.log == [("failed", ref, "queue_timeout")]
    port.ready = 3
    later = origin.submit("L", "transaction", b"y", 5.1)
    _run(origin, 6.0)
    assert port.log[1][:3] == ("real", port.log[1][1], later)


def test_a_full_queue_is_a_clear_error_and_the_bound_counts_delayed_messages() -> None:
    policy = ShapingPolicy(
        origin_delay=DelayRange(1.0, 1.0), rate=RateConfig(rate_per_s=1.0), max_pending=3
    )
    origin, _ = _origin(policy)
    for i in range(3):
        origin.submit("L", "transaction", bytes([i]), 0.0)
    with pytest.raises(QueueFull, match="at most 3"):
        origin.submit("L", "transaction", b"x", 0.0)
    assert origin.counters.get("queue_full") == 1


def test_a_delayed_send_that_finds_no_circuit_fails_through_the_client() -> None:
    port = FakePort(raise_on_send=True)
    origin, port = _origin(ShapingPolicy(origin_delay=DelayRange(0.1, 0.1)), port)
    ref = origin.submit("L", "transaction", b"x", 0.0)
    _run(origin, 1.0)
    assert port.log == [("failed", ref, "no_circuit")]
    immediate, _ = _origin(ShapingPolicy(), FakePort(raise_on_send=True))
    with pytest.raises(NoCircuitAvailable):
        immediate.submit("L", "transaction", b"x", 0.0)


def test_a_message_no_circuit_could_carry_is_refused_at_once_even_if_held_back() -> None:
    port = FakePort(ready=0, buildable=False)
    origin, port = _origin(ShapingPolicy(origin_delay=DelayRange(0.1, 0.2)), port)
    with pytest.raises(NoCircuitAvailable):
        origin.submit("L", "transaction", b"x", 0.0)
    assert origin.next_deadline() is None and port.log == []


def test_bad_input_is_refused_at_submit_time() -> None:
    origin, _ = _origin(ShapingPolicy(origin_delay=DelayRange(0.1, 0.2)))
    with pytest.raises(LocalProtocolError):
        origin.submit("L", "", b"x", 0.0)
    with pytest.raises(LocalProtocolError):
        origin.submit("L", "transaction", bytes(131_073), 0.0)
    with pytest.raises(LocalProtocolError, match="no shaping lane"):
        origin.submit("other", "transaction", b"x", 0.0)


def test_lanes_are_independent_and_reopening_keeps_a_lane() -> None:
    origin, port = _origin(ShapingPolicy(rate=RateConfig(rate_per_s=1.0)))
    origin.open_lane("fast", ShapingPolicy(), 0.0)
    origin.open_lane("L", ShapingPolicy(), 0.0)  # kept as it was: still rate-limited
    assert origin.has_lane("fast")
    origin.submit("L", "transaction", b"slow", 0.0)
    origin.submit("fast", "transaction", b"quick", 0.0)
    assert [entry[3] for entry in port.log] == [b"quick"]
    _run(origin, 1.0)
    assert [entry[3] for entry in port.log if entry[0] == "real"] == [b"quick", b"slow"]


def test_cover_sizes_start_from_the_configured_mix_by_weight() -> None:
    policy = ShapingPolicy(cover=CoverConfig(50.0), cover_sizes=((2048, 3.0), (8192, 1.0)))
    origin, port = _origin(policy)
    _run(origin, 100.0)
    sizes = [entry[2] for entry in port.log]
    assert set(sizes) == {2048, 8192} and len(sizes) > 4000
    assert sizes.count(2048) / len(sizes) == pytest.approx(0.75, abs=0.03)


def test_background_cover_is_poisson_and_real_messages_leave_at_once() -> None:
    origin, port = _origin(ShapingPolicy(cover=CoverConfig(2.0)))
    _run(origin, 2000.0)
    times = [entry[1] for entry in port.log if entry[0] == "cover"]
    assert len(times) == pytest.approx(4000, rel=0.05)
    gaps = [y - x for x, y in itertools.pairwise(times)]
    mean = sum(gaps) / len(gaps)
    assert mean == pytest.approx(0.5, rel=0.05)
    # exponential: the standard deviation equals the mean (a constant clock would give 0)
    assert (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5 == pytest.approx(mean, rel=0.1)
    ref = origin.submit("L", "transaction", b"tx", 2000.25)
    assert port.log[-1][:3] == ("real", 2000.25, ref)


def test_cover_sizes_learn_the_buckets_published_messages_fill() -> None:
    """Whoever sent them: cover copies the network's sizes, not what this node sends."""
    policy = ShapingPolicy(cover=CoverConfig(20.0), cover_sizes=((8192, 1.0),))
    origin, port = _origin(policy)
    for i in range(200):
        origin.submit("L", "transaction", bytes(3000), float(i))  # padded to 8192: not learnt
        payload = bytes([i % 256]) * 300  # someone's transaction, padded to 512
        origin.published("transaction", message_id("transaction", payload), len(payload))
        _run(origin, float(i) + 1.0)
    late = [entry[2] for entry in port.log if entry[0] == "cover" and entry[1] > 150.0]
    assert late and late.count(512) / len(late) > 0.9
    assert set(late) <= {512, 8192}


def test_background_cover_does_not_combine_with_slots() -> None:
    with pytest.raises(ValueError, match="slot-based"):
        ShapingPolicy(rate=RateConfig(rate_per_s=2.0), cover=CoverConfig(1.0))


def test_a_message_gossip_does_not_echo_back_is_resent_with_its_id_then_fails() -> None:
    origin, port = _origin(ShapingPolicy(resend=ResendConfig(timeout_s=10.0, attempts=2)))
    ref = origin.submit("L", "transaction", b"lost", 0.0)
    _run(origin, 100.0)
    assert [entry[:3] for entry in port.log] == [
        ("real", 0.0, ref),
        ("real", 10.0, ref),
        ("real", 20.0, ref),
        ("failed", ref, "unconfirmed"),
    ]
    assert origin.counters.get("resent") == 2 and origin.counters.get("unconfirmed") == 1
    assert origin.next_deadline() is None


def test_an_echoed_message_is_not_resent_and_a_late_echo_stops_the_resends() -> None:
    origin, port = _origin(ShapingPolicy())
    origin.submit("L", "transaction", b"seen", 0.0)
    origin.published("transaction", message_id("transaction", b"seen"), 4)
    slow = origin.submit("L", "transaction", b"slow", 1.0)
    _run(origin, 11.5)
    origin.published("transaction", message_id("transaction", b"slow"), 4)
    origin.published("transaction", message_id("transaction", b"not ours"), 8)
    _run(origin, 100.0)
    assert [entry[:3] for entry in port.log if entry[2] == slow] == [
        ("real", 1.0, slow),
        ("real", 11.0, slow),
    ]
    assert len(port.log) == 3 and origin.counters.get("confirmed") == 2


def test_a_resend_waits_for_a_slot_of_its_lane() -> None:
    policy = ShapingPolicy(rate=RateConfig(rate_per_s=1.0, cover=False))
    origin, port = _origin(policy)
    ref = origin.submit("L", "transaction", b"x", 0.2)
    _run(origin, 15.0)
    sent = [entry[1] for entry in port.log if entry[0] == "real"]
    assert len(sent) == 2 and sent[1] - sent[0] >= 10.0
    assert sent[1] - round(sent[1]) == pytest.approx(sent[0] - round(sent[0]))  # same phase
    origin.abandon(ref)
    _run(origin, 100.0)
    assert len(port.log) == 2


def test_the_watch_is_bounded() -> None:
    origin, port = _origin(ShapingPolicy(resend=ResendConfig(max_tracked=2), max_pending=10))
    for i in range(3):
        origin.submit("L", "transaction", bytes([i]), 0.0)
    assert origin.counters.get("resend_unwatched") == 1
    _run(origin, 10.0)
    assert [entry[3] for entry in port.log[3:]] == [b"\x01", b"\x02"]


def test_resend_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="attempts"):
        ResendConfig(attempts=-1)
    with pytest.raises(ValueError, match="timeout_s"):
        ResendConfig(timeout_s=0.0)
