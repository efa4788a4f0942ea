from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from murmur.sim.engine import TIMER_SPIN_DELAY_S, Engine, SimNode
from murmur.sim.network import UniformLatency, ZeroLatency
from murmur.sim.rng import SeededRng


@dataclass(frozen=True, slots=True)
class Out:
    peer: int
    message: str
    delay_s: float
    size: int = 100


class Toy:
    """A minimal sans-I/O object: logs inputs, sends what it is told, keeps a deadline list."""

    def __init__(self) -> None:
        self.received: list[tuple[float, int, str]] = []
        self.timers: list[float] = []
        self.deadlines: list[float] = []
        self.outbox: list[Out] = []

    def receive_message(self, peer: int, message: str, now: float) -> None:
        self.received.append((now, peer, message))
        if message == "ping":
            self.outbox.append(Out(peer, "pong", 0.0))

    def handle_timer(self, now: float) -> None:
        self.timers.append(now)
        self.deadlines = [d for d in self.deadlines if d > now]

    def next_deadline(self) -> float | None:
        return min(self.deadlines) if self.deadlines else None

    def drain_actions(self) -> list[Any]:
        out, self.outbox = self.outbox, []
        return out


def make(n: int, *, latency_s: float = 0.05, bps: float | None = 8000.0, jitter: float = 0.0):
    engine = Engine(
        latency=UniformLatency(latency_s, latency_s, seed=1),
        rng=SeededRng(1),
        uplink_bps=bps,
        jitter_fraction=jitter,
    )
    toys = [Toy() for _ in range(n)]
    for toy in toys:
        engine.add_node(toy, toy.receive_message)

    def send(node: SimNode, action: Out, now: float) -> None:
        engine.transmit(node, action.peer, action.message, action.size, action.delay_s)

    engine.on_action(Out, send)
    return engine, toys


def command(engine: Engine, index: int, *actions: Out) -> None:
    engine.nodes[index].protocol.outbox.extend(actions)
    engine.pump(engine.nodes[index])


def test_arrival_is_delay_plus_serialisation_plus_latency() -> None:
    engine, toys = make(2)
    command(engine, 0, Out(1, "a", 0.5))
    engine.run()
    ((when, sender, message),) = toys[1].received
    assert sender == 0 and message == "a"
    assert when == pytest.approx(0.5 + 0.1 + 0.05)  # 100 bytes at 8 kbit/s = 0.1 s


def test_a_burst_serialises_in_order_and_delayed_sends_do_not_hold_the_uplink() -> None:
    engine, toys = make(2)
    command(engine, 0, Out(1, "late", 5.0), Out(1, "a", 0.0), Out(1, "b", 0.0), Out(1, "c", 0.0))
    engine.run()
    times = {m: t for t, _, m in toys[1].received}
    assert times["a"] == pytest.approx(0.15)
    assert times["b"] == pytest.approx(0.25)
    assert times["c"] == pytest.approx(0.35)
    assert times["late"] == pytest.approx(5.15)
    assert engine.nodes[0].bytes_sent == 400 and engine.nodes[0].messages_sent == 4


def test_replies_flow_back() -> None:
    engine, toys = make(2, bps=None)
    command(engine, 0, Out(1, "ping", 0.0))
    engine.run()
    assert toys[0].received == [(pytest.approx(0.1), 1, "pong")]
    assert engine.events == 2


def test_jitter_never_reorders_a_link() -> None:
    engine, toys = make(2, latency_s=0.1, bps=None, jitter=1.0)
    command(engine, 0, *(Out(1, str(i), 0.001 * i) for i in range(200)))
    engine.run()
    assert [m for _, _, m in toys[1].received] == [str(i) for i in range(200)]
    delays = [t - 0.001 * int(m) - 0.1 for t, _, m in toys[1].received]
    assert all(d >= -1e-12 for d in delays) and max(delays) > 0.05  # jitter did delay them


def test_timers_fire_at_deadlines_and_stale_ones_are_skipped() -> None:
    engine, toys = make(1)
    toy = toys[0]
    toy.deadlines = [10.0]
    engine.pump(engine.nodes[0])
    toy.deadlines = [4.0, 10.0]  # an earlier deadline appears: re-armed
    engine.pump(engine.nodes[0])
    engine.run(until=20.0)
    assert toy.timers == [4.0, 10.0]
    assert engine.now == 20.0


def test_run_stops_at_until_and_resumes() -> None:
    engine, _ = make(1)
    fired: list[float] = []
    for t in (1.0, 2.0, 3.0):
        engine.at(t, fired.append)
    engine.run(until=2.0)
    assert fired == [1.0, 2.0] and engine.pending == 1
    engine.run()
    assert fired == [1.0, 2.0, 3.0]


def test_simultaneous_events_run_in_scheduling_order() -> None:
    engine, _ = make(1)
    order: list[str] = []
    for name in "abc":
        engine.at(1.0, lambda now, name=name: order.append(name))
    engine.run()
    assert order == ["a", "b", "c"]


def test_hooks_see_spy_deliveries_and_tapped_links_and_filters_drop() -> None:
    engine = Engine(latency=ZeroLatency(), rng=SeededRng(1))
    toys = [Toy() for _ in range(3)]
    for toy in toys:
        engine.add_node(toy, toy.receive_message)
    engine.on_action(Out, lambda node, a, now: engine.transmit(node, a.peer, a.message, 7, 0.0))
    spied: list[tuple[float, int, int, Any]] = []
    tapped: list[tuple[float, float, int, int, int]] = []
    engine.nodes[1].spy = True
    engine.spy_hook = lambda *args: spied.append(args)
    engine.tapped = {(0, 2)}
    engine.tap_hook = lambda *args: tapped.append(args)
    engine.drop_filter = lambda message: message == "drop me"
    command(engine, 0, Out(1, "x", 0.0), Out(2, "y", 0.0), Out(2, "drop me", 0.0))
    engine.run()
    assert spied == [(0.0, 1, 0, "x")]
    assert tapped == [(0.0, 0.0, 0, 2, 7), (0.0, 0.0, 0, 2, 7)]
    assert [m for _, _, m in toys[2].received] == ["y"]


def test_a_node_that_is_down_receives_nothing() -> None:
    engine, toys = make(2, bps=None)
    engine.nodes[1].up = False
    command(engine, 0, Out(1, "x", 0.0))
    engine.run()
    assert toys[1].received == []


def test_transmit_each_takes_the_link_model_exactly_as_one_transmit_per_copy() -> None:
    pairs = [(1, 0.3), (2, 0.0), (1, 0.0), (3, 0.25), (2, 0.0), (1, 0.0001)]
    runs = []
    for batched in (False, True):
        engine, toys = make(4, latency_s=0.05, bps=8000.0, jitter=0.5)
        taps: list[tuple[float, float, int, int, int]] = []
        engine.tapped_nodes = {2}
        engine.tap_hook = lambda *args, taps=taps: taps.append(args)
        sender = engine.nodes[0]
        if batched:
            engine.transmit_each(sender, "m", 100, [p for p, _ in pairs], [d for _, d in pairs])
        else:
            for peer, delay in pairs:
                engine.transmit(sender, peer, "m", 100, delay)
        engine.run()
        runs.append(([t.received for t in toys], taps, sender.bytes_sent, sender.uplink_free_at))
    assert runs[0] == runs[1]
    assert runs[1][2] == 600 and len(runs[1][1]) == 2


def test_idempotent_copies_arriving_after_an_earlier_one_are_sent_but_not_queued() -> None:
    engine = Engine(latency=ZeroLatency(), rng=SeededRng(1))
    toys = [Toy() for _ in range(5)]
    for toy in toys:
        engine.add_node(toy, toy.receive_message)
    engine.nodes[4].spy = True
    first = [math.inf] * 5
    first[3] = -math.inf  # node 3 already holds the message
    nodes = engine.nodes
    engine.transmit_each(nodes[0], "tx", 10, [1, 2, 3, 4], [1.0, 2.0, 0.5, 3.0], first)
    assert first == [math.inf, 1.0, 2.0, -math.inf, math.inf]  # the spy is never marked
    engine.transmit_each(nodes[1], "tx", 10, [2, 4], [2.5, 1.0], first)  # 2: later, elided
    engine.transmit_each(nodes[3], "tx", 10, [2], [1.5], first)  # earlier: queued, lowers it
    assert first[2] == 1.5
    engine.run()
    assert [t.received for t in toys] == [
        [],
        [(1.0, 0, "tx")],
        [(1.5, 3, "tx"), (2.0, 0, "tx")],
        [],
        [(1.0, 1, "tx"), (3.0, 0, "tx")],
    ]
    assert engine.elided == 2 and engine.events == 5
    assert [n.messages_sent for n in nodes] == [4, 2, 0, 1, 0]


class Stuck(Toy):
    """A core with a bug: its timer leaves a deadline in the past."""

    def handle_timer(self, now: float) -> None:
        self.timers.append(now)


def test_a_core_whose_deadline_stays_in_the_past_is_woken_later_and_counted() -> None:
    engine = Engine(latency=ZeroLatency(), rng=SeededRng(1))
    stuck = Stuck()
    stuck.deadlines.append(1.0)
    engine.add_node(stuck, stuck.receive_message)
    engine.pump(engine.nodes[0])
    engine.run(until=1.0 + 10.5 * TIMER_SPIN_DELAY_S)
    assert stuck.timers == pytest.approx([1.0 + i * TIMER_SPIN_DELAY_S for i in range(11)])
    assert engine.timer_spins == 11  # each firing re-armed it, the last one past `until`
