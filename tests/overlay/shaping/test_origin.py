"""The shaped origin in front of a real circuit client: delays, slots, cover, bounds, failures.

A protocol test on a fake clock: the :class:`ShapedOrigin` drives node 0's
:class:`CircuitClient` in the in-memory circuit network of ``tests/overlay/circuits/harness.py``,
and the tests look at what came out of that client: the payloads its circuits' exits published
(real messages), the COVER cells it sent and the exits dropped as cover (one cover message per
instant, so its cell count tells its padded size), and the ``SendFailed`` it reported. Gossip
is not simulated: a test tells the shaper what gossip delivered with ``published``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from murmur.base.errors import LocalProtocolError
from murmur.overlay.circuits import CircuitClient, ClientConfig, SendFailed
from murmur.overlay.circuits.guards import GuardConfig
from murmur.overlay.circuits.path_bias import PathBiasConfig, PathBiasCounts
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
from murmur.wire.cells import CellCommand, cells_for
from murmur.wire.gossip import message_id
from tests.overlay.circuits.harness import Network, Node

Entry = tuple[str, float, bytes] | tuple[str, float, int] | tuple[str, int, str]
"""("real", time, payload an exit published), ("cover", time, COVER cells the exits dropped),
("failed", send id, reason) for a ``SendFailed`` the client reported."""


@dataclass
class Rig:
    """The shaper, node 0 of ``net`` whose client it drives, and the log of what came out."""

    net: Network
    origin: Node
    shaper: ShapedOrigin
    log: list[Entry] = field(default_factory=list)
    _covers: tuple[int, int, int] = (0, 0, 0)
    _events: int = 0

    @property
    def client(self) -> CircuitClient:
        return self.origin.host.client

    def submit(self, lane: str, topic: str, payload: bytes, now: float) -> int:
        if now > self.net.now:
            self.run(now)
        ref = self.shaper.submit(lane, topic, payload, now)
        self.net.pump()
        self._record(now)
        return ref

    def run(self, until: float) -> None:
        """Runs every timer (the shaper's and every circuit host's) due by ``until``."""
        self.net.run_until(until, timers=[self.shaper], on_step=self._record)

    def entries(self, kind: str) -> list[Entry]:
        return [entry for entry in self.log if entry[0] == kind]

    def _record(self, now: float) -> None:
        for node in self.net.nodes.values():
            self.log += [("real", now, payload) for _, payload in node.published]
            node.published.clear()
        client = self.client.counters
        dropped = sum(
            n.host.relay.counters.get("exit_cover_dropped") for n in self.net.nodes.values()
        )
        covers = (client.get("cover_messages_sent"), client.get("cover_cells_sent"), dropped)
        messages, cells, arrived = (b - a for a, b in zip(self._covers, covers, strict=True))
        self._covers = covers
        assert messages <= 1, "two cover messages at one instant: their sizes would blur"
        assert arrived == cells, "every COVER cell sent reaches an exit, which drops it"
        if messages:
            self.log.append(("cover", now, cells))
        events = self.origin.events[self._events :]
        self._events = len(self.origin.events)
        self.log += [("failed", e.send_id, e.reason) for e in events if isinstance(e, SendFailed)]


def _rig(
    policy: ShapingPolicy,
    *,
    nodes: int = 8,
    config: ClientConfig | None = None,
    refuse_links: bool = False,
) -> Rig:
    """A network whose circuits are built at time 0 (links open at once, unless refused) and a
    shaper with lane "L" in front of node 0's client."""
    net = Network(nodes, seed=3, client_config=config)
    if refuse_links:
        net.refuse_links = set(net.nodes)
    net.run_until(0.0)
    origin = net.node(0)
    shaper = ShapedOrigin(port=origin.host.client, rng=SeededRng(1))
    shaper.open_lane("L", policy, 0.0)
    rig = Rig(net, origin, shaper)
    rig._record(0.0)  # the builds are not the shaper's doing
    rig.log.clear()
    return rig


def test_without_shaping_a_message_leaves_at_once_padded_as_the_policy_says() -> None:
    rig = _rig(ShapingPolicy(buckets=(1024,)))
    rig.run(3.0)
    cells = rig.client.counters.get("cells_sent")
    rig.submit("L", "transaction", b"tx", 3.0)
    assert rig.log == [("real", 3.0, b"tx")]
    # padded to 1024 bytes: two cells (the default buckets would take one)
    assert rig.client.counters.get("cells_sent") - cells == cells_for(1024) == 2
    assert rig.shaper.next_deadline() == 3.0 + ResendConfig().timeout_s
    rig.shaper.published("transaction", message_id("transaction", b"tx"), 2, 3.0)
    assert rig.shaper.next_deadline() is None


def test_origin_jitter_holds_each_message_within_its_range() -> None:
    rig = _rig(ShapingPolicy(origin_delay=DelayRange(0.05, 0.15), max_pending=200))
    payloads = [bytes([i]) for i in range(200)]
    for payload in payloads:
        rig.submit("L", "transaction", payload, 1.0)
    assert rig.log == []
    rig.run(2.0)
    sent = {entry[2]: entry[1] for entry in rig.log if entry[0] == "real"}
    assert len(rig.log) == 200 and sorted(sent) == payloads
    delays = [t - 1.0 for t in sent.values()]
    assert min(delays) >= 0.05 and max(delays) <= 0.15
    assert max(delays) - min(delays) > 0.08


def test_slots_send_real_messages_first_then_cover_of_the_drawn_sizes() -> None:
    policy = ShapingPolicy(
        rate=RateConfig(rate_per_s=2.0),
        cover_sizes=((2048, 1.0), (8192, 1.0)),
        resend=None,  # no gossip echoes the messages back here
    )
    rig = _rig(policy)
    rig.submit("L", "transaction", b"a", 0.0)
    rig.submit("L", "transaction", b"b", 0.0)
    assert rig.log == []
    rig.run(50.0)
    kinds = [entry[0] for entry in rig.log]
    assert kinds[:2] == ["real", "real"] and set(kinds[2:]) == {"cover"}
    assert [rig.log[0][2], rig.log[1][2]] == [b"a", b"b"]
    times = [entry[1] for entry in rig.log]
    assert all(y - x == pytest.approx(0.5) for x, y in itertools.pairwise(times))
    # the configured mix: no gossip brought the real messages' 512-byte bucket back
    assert {entry[2] for entry in rig.log[2:]} == {cells_for(2048), cells_for(8192)}
    covers = len(rig.log) - 2
    assert rig.shaper.counters.get("cover_sent") == covers
    assert rig.client.counters.get("cover_messages_sent") == covers


def test_without_cover_an_empty_slot_sends_nothing() -> None:
    rig = _rig(ShapingPolicy(rate=RateConfig(rate_per_s=2.0, cover=False)))
    rig.run(10.0)
    assert rig.log == [] and rig.client.counters.get("cover_cells_sent") == 0
    rig.submit("L", "transaction", b"x", 10.0)
    rig.submit("L", "transaction", b"y", 10.0)
    rig.run(12.0)
    # still slot-based: each waits for a slot of its own, one every 0.5 s
    first = rig.log[0][1]
    assert rig.log == [("real", first, b"x"), ("real", first + 0.5, b"y")]
    assert 10.0 < first <= 10.5


def test_with_no_ready_circuit_slots_are_skipped_and_stale_messages_fail() -> None:
    """Every relay refuses links at first: the client keeps failing to build (retrying every
    second), so it has no ready circuit, though one could be built."""
    policy = ShapingPolicy(rate=RateConfig(rate_per_s=2.0, max_wait_s=5.0))
    rig = _rig(policy, config=ClientConfig(retry_backoff_max_s=1.0), refuse_links=True)
    ref = rig.submit("L", "transaction", b"x", 0.0)
    rig.run(4.9)
    assert rig.log == [] and rig.client.ready_circuits() == 0
    assert rig.client.counters.get("circuit_failed_connect_failed") > 0
    rig.run(5.1)
    assert rig.log == [("failed", ref, "queue_timeout")]
    rig.net.refuse_links.clear()
    rig.submit("L", "transaction", b"y", 5.1)
    rig.run(8.0)
    sent_at = rig.log[1][1]
    assert rig.log[1] == ("real", sent_at, b"y") and 5.1 < sent_at < 5.1 + 5.0
    assert {entry[0] for entry in rig.log[2:]} == {"cover"}


def test_a_full_queue_is_a_clear_error_and_the_bound_counts_delayed_messages() -> None:
    policy = ShapingPolicy(
        origin_delay=DelayRange(1.0, 1.0), rate=RateConfig(rate_per_s=1.0), max_pending=3
    )
    rig = _rig(policy)
    for i in range(3):
        rig.submit("L", "transaction", bytes([i]), 0.0)
    with pytest.raises(QueueFull, match="at most 3"):
        rig.submit("L", "transaction", b"x", 0.0)
    assert rig.shaper.counters.get("queue_full") == 1
    assert rig.log == []


def test_messages_held_for_a_circuit_count_against_the_bound() -> None:
    """A lane with background cover holds real messages while no circuit is ready: those
    wait at the origin too, so a node with no circuit cannot pile them up without limit."""
    rig = _rig(
        ShapingPolicy(cover=CoverConfig(2.0), max_pending=3, resend=None),
        config=ClientConfig(retry_backoff_max_s=1.0),
        refuse_links=True,
    )
    for i in range(3):
        rig.submit("L", "transaction", bytes([i]), 0.0)
    assert rig.shaper.counters.get("held_for_circuit") == 3
    with pytest.raises(QueueFull, match="at most 3"):
        rig.submit("L", "transaction", b"x", 0.0)
    assert rig.shaper.counters.get("queue_full") == 1


def test_a_delayed_send_that_finds_no_circuit_fails_through_the_client() -> None:
    """No circuit is ready and the client's queue of sends waiting for one is full (one
    place, taken by a send on an unshaped lane): the client refuses the send."""
    rig = _rig(
        ShapingPolicy(origin_delay=DelayRange(0.1, 0.1)),
        config=ClientConfig(max_waiting_sends=1),
        refuse_links=True,
    )
    rig.shaper.open_lane("now", ShapingPolicy(), 0.0)
    rig.submit("now", "transaction", b"waits", 0.0)  # waits for a circuit in the client
    ref = rig.submit("L", "transaction", b"x", 0.0)
    rig.run(1.0)
    assert rig.log == [("failed", ref, "no_circuit")]
    assert rig.shaper.counters.get("sends_failed_after_delay") == 1
    with pytest.raises(NoCircuitAvailable):  # an unshaped lane's send fails at once
        rig.submit("now", "transaction", b"y", 1.0)


def test_when_the_node_stops_every_message_still_held_back_fails_and_none_leaves_later() -> None:
    """One message in each place a lane holds real ones: a jitter delay, a rate queue, and a
    wait for a circuit (a lane with background cover while no circuit is ready)."""
    rig = _rig(
        ShapingPolicy(origin_delay=DelayRange(5.0, 5.0), resend=None),
        config=ClientConfig(retry_backoff_max_s=1.0),
        refuse_links=True,
    )
    rig.shaper.open_lane("slots", ShapingPolicy(rate=RateConfig(rate_per_s=0.1)), 0.0)
    rig.shaper.open_lane("cover", ShapingPolicy(cover=CoverConfig(0.1), resend=None), 0.0)
    delayed = rig.submit("L", "transaction", b"delayed", 0.0)
    queued = rig.submit("slots", "transaction", b"queued", 0.0)
    waiting = rig.submit("cover", "transaction", b"waiting", 0.0)
    assert rig.shaper.counters.get("held_for_circuit") == 1
    rig.shaper.fail_held("node_stopped")
    rig.net.pump()
    rig._record(0.0)
    assert sorted(rig.entries("failed")) == sorted(
        ("failed", ref, "node_stopped") for ref in (delayed, queued, waiting)
    )
    assert rig.shaper.counters.get("held_failed") == 3
    rig.net.refuse_links.clear()
    rig.run(60.0)
    assert rig.entries("real") == [] and len(rig.entries("failed")) == 3


def test_a_message_no_circuit_could_carry_is_refused_at_once_even_if_held_back() -> None:
    """Two relays besides the origin: no three-hop path can be drawn."""
    rig = _rig(ShapingPolicy(origin_delay=DelayRange(0.1, 0.2)), nodes=3)
    assert rig.client.ready_circuits() == 0
    with pytest.raises(NoCircuitAvailable):
        rig.submit("L", "transaction", b"x", 0.0)
    assert rig.shaper.next_deadline() is None
    rig.run(10.0)
    assert rig.log == [] and rig.client.counters.get("cells_sent") == 0


def test_bad_input_is_refused_at_submit_time() -> None:
    rig = _rig(ShapingPolicy(origin_delay=DelayRange(0.1, 0.2)))
    with pytest.raises(LocalProtocolError):
        rig.submit("L", "", b"x", 0.0)
    with pytest.raises(LocalProtocolError):
        rig.submit("L", "transaction", bytes(131_073), 0.0)
    with pytest.raises(LocalProtocolError, match="no shaping lane"):
        rig.submit("other", "transaction", b"x", 0.0)
    rig.run(1.0)
    assert rig.log == []


def test_lanes_are_independent_and_reopening_keeps_a_lane() -> None:
    rig = _rig(ShapingPolicy(rate=RateConfig(rate_per_s=1.0)))
    rig.shaper.open_lane("fast", ShapingPolicy(), 0.0)
    rig.shaper.open_lane("L", ShapingPolicy(), 0.0)  # kept as it was: still rate-limited
    assert rig.shaper.has_lane("fast")
    rig.submit("L", "transaction", b"slow", 0.0)
    rig.submit("fast", "transaction", b"quick", 0.0)
    assert rig.log == [("real", 0.0, b"quick")]
    rig.run(1.0)
    assert [entry[2] for entry in rig.entries("real")] == [b"quick", b"slow"]


def test_cover_sizes_start_from_the_configured_mix_by_weight() -> None:
    policy = ShapingPolicy(cover=CoverConfig(50.0), cover_sizes=((2048, 3.0), (8192, 1.0)))
    rig = _rig(policy)
    rig.run(100.0)
    cells = [entry[2] for entry in rig.log]
    assert set(cells) == {cells_for(2048), cells_for(8192)} and len(cells) > 4000
    assert cells.count(cells_for(2048)) / len(cells) == pytest.approx(0.75, abs=0.03)


def test_background_cover_is_poisson_and_real_messages_leave_at_once() -> None:
    rig = _rig(ShapingPolicy(cover=CoverConfig(2.0)))
    rig.run(2000.0)
    times = [entry[1] for entry in rig.entries("cover")]
    assert len(times) == pytest.approx(4000, rel=0.05)
    gaps = [y - x for x, y in itertools.pairwise(times)]
    mean = sum(gaps) / len(gaps)
    assert mean == pytest.approx(0.5, rel=0.05)
    # exponential: the standard deviation equals the mean (a constant clock would give 0)
    assert (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5 == pytest.approx(mean, rel=0.1)
    rig.submit("L", "transaction", b"tx", 2000.25)
    assert rig.log[-1] == ("real", 2000.25, b"tx")


def test_with_no_ready_circuit_a_real_message_takes_the_place_of_a_later_cover_message() -> None:
    """A node that has just started (its links refused at first, so no circuit is ready) and
    is asked to send: the message does not leave the moment the first circuit is built, which
    would mark the first cells on it as real, but at a cover departure after that, in place of
    the cover message; so does a second one held with it."""
    rig = _rig(
        ShapingPolicy(cover=CoverConfig(2.0), resend=None),
        config=ClientConfig(retry_backoff_min_s=30.0, retry_backoff_max_s=30.0),
        refuse_links=True,
    )
    rig.run(1.0)
    assert rig.client.ready_circuits() == 0
    first = rig.submit("L", "transaction", b"first", 1.0)  # its build fails: links refused
    rig.net.refuse_links.clear()
    second = rig.submit("L", "transaction", b"second", 1.5)
    assert rig.shaper.counters.get("held_for_circuit") == 2
    built_at = None
    while built_at is None:
        rig.run(rig.net.now + 0.01)
        if rig.client.ready_circuits():
            built_at = rig.net.now
    # Built before the pool's 30 s back-off ended: the held message asked for a circuit.
    assert built_at < 30.0
    rig.run(built_at + 30.0)
    real = rig.entries("real")
    assert [entry[2] for entry in real] == [b"first", b"second"]
    departures = [entry[1] for entry in rig.log if entry[0] in ("real", "cover")]
    # Each left at a departure of the cover clock: nothing else left at its instant, and the
    # first departure after the build was the clock's, not the build's.
    assert departures[0] > built_at and departures[0] == real[0][1]
    assert departures[1] == real[1][1]
    assert rig.shaper.counters.get("held_released") == 2
    assert first != second and not rig.entries("failed")


def test_once_a_circuit_is_ready_a_busy_lane_is_not_held_to_the_cover_rate() -> None:
    """Real messages at twice the cover rate after a moment without circuits: the held ones
    leave at cover departures or, overdue, on a ready circuit; later ones leave as they come.
    None fails while circuits are ready."""
    rig = _rig(
        ShapingPolicy(cover=CoverConfig(1.0, max_hold_s=5.0), resend=None),
        config=ClientConfig(retry_backoff_max_s=1.0),
        refuse_links=True,
    )
    for k in range(4):  # submitted with no circuit ready
        rig.submit("L", "transaction", b"early %d" % k, 0.1 * k)
    rig.net.refuse_links.clear()
    t = 0.5
    for k in range(120):
        t += 0.5
        rig.submit("L", "transaction", b"tx %d" % k, t)
    rig.run(t + 10.0)
    assert not rig.entries("failed")
    assert len(rig.entries("real")) == 124
    assert rig.shaper.counters.get("held_for_circuit") <= 4 + 10


def test_a_held_message_that_finds_no_circuit_in_time_fails() -> None:
    rig = _rig(
        ShapingPolicy(cover=CoverConfig(2.0, max_hold_s=3.0)),
        config=ClientConfig(retry_backoff_max_s=1.0),
        refuse_links=True,
    )
    ref = rig.submit("L", "transaction", b"x", 0.0)
    rig.run(2.9)
    assert rig.log == []
    rig.run(3.1)
    assert rig.log == [("failed", ref, "no_circuit")]
    assert rig.shaper.counters.get("held_timeouts") == 1


def test_a_held_message_fails_at_its_deadline_even_with_no_cover_departure_near() -> None:
    """The shaper wakes for the hold's end itself, not only at cover departures: with cover
    at one message per 100 s the failure still comes at max_hold_s."""
    rig = _rig(
        ShapingPolicy(cover=CoverConfig(0.01, max_hold_s=3.0), resend=None),
        config=ClientConfig(retry_backoff_max_s=1.0),
        refuse_links=True,
    )
    ref = rig.submit("L", "transaction", b"x", 0.0)
    assert rig.shaper.next_deadline() == 3.0
    rig.run(2.999)
    assert rig.log == []
    rig.run(3.0)
    assert rig.log == [("failed", ref, "no_circuit")] and not rig.entries("cover")


def test_cover_sizes_learn_the_buckets_published_messages_fill() -> None:
    """Whoever sent them: cover copies the network's sizes, not what this node sends."""
    policy = ShapingPolicy(cover=CoverConfig(20.0), cover_sizes=((8192, 1.0),))
    rig = _rig(policy)
    for i in range(200):
        rig.submit("L", "transaction", bytes(3000), float(i))  # padded to 8192: not learnt
        payload = bytes([i % 256]) * 300  # someone's transaction, padded to 512
        rig.shaper.published(
            "transaction", message_id("transaction", payload), len(payload), float(i)
        )
        rig.run(float(i) + 1.0)
    late = [entry[2] for entry in rig.entries("cover") if entry[1] > 150.0]
    assert late and late.count(cells_for(512)) / len(late) > 0.9
    assert set(late) <= {cells_for(512), cells_for(8192)}


def test_cover_sizes_learn_the_size_a_published_message_pads_to_under_the_lanes_buckets() -> None:
    """A 300-byte transaction fills 317 bytes framed, one cell unpadded or under the default
    buckets, but two cells under this lane's 1,024-byte bucket: cover must copy that, as a
    real message sent on this lane would take two cells."""
    policy = ShapingPolicy(
        buckets=(1024, 8192), cover=CoverConfig(20.0), cover_sizes=((8192, 1.0),), resend=None
    )
    assert cells_for(1024) == 2 != cells_for(317) == cells_for(512)
    rig = _rig(policy)
    for i in range(100):
        payload = bytes([i % 256]) * 300
        rig.shaper.published(
            "transaction", message_id("transaction", payload), len(payload), float(i)
        )
        rig.run(float(i) + 1.0)
    late = [entry[2] for entry in rig.entries("cover") if entry[1] > 50.0]
    assert len(late) > 500 and late.count(cells_for(1024)) / len(late) > 0.95


def test_cover_sizes_follow_the_recent_mix_and_old_sizes_fade() -> None:
    """600 small transactions, then 600 of 8 kB: cover follows the newer sizes (exponential
    memory of about ``COVER_MEMORY`` messages), not the whole history half and half."""
    rig = _rig(ShapingPolicy(cover=CoverConfig(50.0), cover_sizes=((2048, 1.0),), resend=None))
    for size, fill in ((300, 1), (6000, 2)):  # padded to 512 (one cell), then 8,192 (16)
        for i in range(600):
            payload = bytes([fill]) + i.to_bytes(2, "big") * (size // 2)
            mid = message_id("transaction", payload)
            rig.shaper.published("transaction", mid, len(payload), 0.0)
    rig.run(100.0)
    cells = [entry[2] for entry in rig.entries("cover")]
    assert len(cells) > 4000 and set(cells) <= {cells_for(512), cells_for(8192), cells_for(2048)}
    small = cells.count(cells_for(512)) / len(cells)
    # weights 256 (1 - d^600) d^600 and 256 (1 - d^600), d = 1 - 1/256: about 9 % small
    assert 0.05 < small < 0.13


def test_cover_sizes_do_not_learn_fast_path_messages() -> None:
    """Blocks and consensus messages never leave through a circuit: cover of their sizes would
    be a departure no transaction could be, which a spy sets aside."""
    policy = ShapingPolicy(cover=CoverConfig(20.0), cover_sizes=((512, 1.0),))
    rig = _rig(policy)
    for i in range(200):
        block = bytes([i % 256]) * 60_000  # a block body, padded to 65,536 under the buckets
        rig.shaper.published("block_body", message_id("block_body", block), len(block), float(i))
        rig.run(float(i) + 1.0)
    covers = [entry[2] for entry in rig.entries("cover")]
    assert covers and set(covers) == {cells_for(512)}


def test_background_cover_does_not_combine_with_slots() -> None:
    with pytest.raises(ValueError, match="slot-based"):
        ShapingPolicy(rate=RateConfig(rate_per_s=2.0), cover=CoverConfig(1.0))


def test_a_message_gossip_does_not_echo_back_is_resent_with_its_id_then_fails() -> None:
    rig = _rig(ShapingPolicy(resend=ResendConfig(timeout_s=10.0, attempts=2)))
    ref = rig.submit("L", "transaction", b"lost", 0.0)
    rig.run(100.0)
    assert rig.log == [
        ("real", 0.0, b"lost"),
        ("real", 10.0, b"lost"),  # the same payload: the same gossip message id
        ("real", 20.0, b"lost"),
        ("failed", ref, "unconfirmed"),
    ]
    assert rig.shaper.counters.get("resent") == 2
    assert rig.shaper.counters.get("unconfirmed") == 1
    assert rig.shaper.next_deadline() is None


def test_an_echoed_message_is_not_resent_and_a_late_echo_stops_the_resends() -> None:
    rig = _rig(ShapingPolicy())
    rig.submit("L", "transaction", b"seen", 0.0)
    rig.shaper.published("transaction", message_id("transaction", b"seen"), 4, 0.0)
    rig.submit("L", "transaction", b"slow", 1.0)
    rig.run(11.5)
    rig.shaper.published("transaction", message_id("transaction", b"slow"), 4, 11.5)
    rig.shaper.published("transaction", message_id("transaction", b"not ours"), 8, 11.5)
    rig.run(100.0)
    assert [entry for entry in rig.log if entry[2] == b"slow"] == [
        ("real", 1.0, b"slow"),
        ("real", 11.0, b"slow"),
    ]
    assert len(rig.log) == 3 and rig.shaper.counters.get("confirmed") == 2


def test_a_resend_waits_for_a_slot_of_its_lane() -> None:
    policy = ShapingPolicy(rate=RateConfig(rate_per_s=1.0, cover=False))
    rig = _rig(policy)
    ref = rig.submit("L", "transaction", b"x", 0.2)
    rig.run(15.0)
    sent = [entry[1] for entry in rig.log if entry[0] == "real"]
    assert len(rig.log) == len(sent) == 2 and sent[1] - sent[0] >= 10.0
    assert sent[1] - round(sent[1]) == pytest.approx(sent[0] - round(sent[0]))  # same phase
    rig.shaper.abandon(ref)
    rig.run(100.0)
    assert len(rig.log) == 2


def test_a_transaction_sent_twice_is_watched_once() -> None:
    """Both copies have the same gossip id: one echo confirms it, and the caller may still
    abandon either send id afterwards."""
    rig = _rig(ShapingPolicy(resend=ResendConfig(timeout_s=10.0, attempts=2)))
    first = rig.submit("L", "transaction", b"twice", 0.0)
    second = rig.submit("L", "transaction", b"twice", 1.0)
    assert first != second
    assert rig.shaper.published("transaction", message_id("transaction", b"twice"), 5, 2.0)
    assert rig.shaper.next_deadline() is None  # nothing left to resend
    rig.shaper.abandon(first)
    rig.shaper.abandon(second)
    rig.run(100.0)
    assert [entry[1] for entry in rig.entries("real")] == [0.0, 1.0]
    assert rig.shaper.counters.get("confirmed") == 1 and not rig.entries("failed")


def test_the_watch_is_bounded() -> None:
    rig = _rig(ShapingPolicy(resend=ResendConfig(max_tracked=2), max_pending=10))
    for i in range(3):
        rig.submit("L", "transaction", bytes([i]), 0.0)
    assert rig.shaper.counters.get("resend_unwatched") == 1
    rig.run(10.0)
    # both resends leave at 10 s (in no particular order: their deadlines tie)
    assert sorted(rig.log[3:]) == [("real", 10.0, b"\x01"), ("real", 10.0, b"\x02")]


def test_resend_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="attempts"):
        ResendConfig(attempts=-1)
    with pytest.raises(ValueError, match="timeout_s"):
        ResendConfig(timeout_s=0.0)


def test_a_guard_that_loses_our_messages_is_disabled_and_the_next_one_carries_them() -> None:
    """Use bias: a spy guard lets circuits be built and drops what they carry (it would spare
    the circuits whose hop 2 is a fellow spy). Our messages never come back through gossip;
    each counts once, when its last resend times out, and after enough of them the guard is
    disabled, its circuits closed, and the next message leaves through the next guard."""
    bias = PathBiasConfig(min_messages=4)
    config = ClientConfig(guards=GuardConfig(count=1, settle_s=0.0, path_bias=bias))
    rig = _rig(ShapingPolicy(resend=ResendConfig(timeout_s=10.0, attempts=2)), config=config)
    (guard,) = rig.client.guards.records()
    net = rig.net
    net.lost |= {
        (guard.node_id, n, CellCommand.RELAY) for n in net.nodes if n != rig.origin.node_id
    }
    lost = [rig.submit("L", "transaction", bytes([i]) * 100, float(i)) for i in range(4)]
    rig.run(33.5)  # sent, resent at +10 and +20, given up at +30
    assert rig.log == [("failed", ref, "unconfirmed") for ref in lost]
    assert rig.client.counters.get("guard_disabled_path_bias") == 1
    assert rig.client.counters.get("circuits_closed_guard_disabled") == 3
    rig.submit("L", "transaction", b"later", 40.0)
    rig.shaper.published("transaction", message_id("transaction", b"later"), 5, 40.0)
    disabled, carrier = rig.client.guards.records()
    assert disabled.node_id == guard.node_id and disabled.disabled_at == 33.0
    assert disabled.use_bias == PathBiasCounts(4.0, 0.0)
    assert rig.entries("real") == [("real", 40.0, b"later")]
    assert carrier.use_bias == PathBiasCounts(1.0, 1.0)
    assert all(path[0] == carrier.node_id for path in rig.client.circuit_paths())


def test_a_message_that_cannot_come_back_is_neither_resent_nor_held_against_the_guard() -> None:
    config = ClientConfig(guards=GuardConfig(count=1, settle_s=0.0))
    rig = _rig(ShapingPolicy(resend=ResendConfig(timeout_s=10.0, attempts=2)), config=config)
    rig.shaper.submit("L", "transaction", b"already public", 0.0, watch=False)
    rig.run(100.0)
    assert [entry[2] for entry in rig.entries("real")] == [b"already public"]  # sent once
    assert rig.shaper.counters.get("resent") == rig.shaper.counters.get("unconfirmed") == 0
    (guard,) = rig.client.guards.records()
    assert guard.use_bias == PathBiasCounts()
