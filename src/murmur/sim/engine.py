"""The discrete-event engine: a virtual clock, one event heap, nodes hosting sans-I/O cores.

Theory of operation: a :class:`SimNode` hosts any object with the core's one shape — inputs
(``receive_*(..., now)``, ``handle_timer(now)``, commands), ``next_deadline()`` and
``drain_actions()``. The engine owns the clock and a queue of ``(time, seq, kind, node, a, b)``
tuples: a message delivery, a node timer or a scheduled callback. ``seq`` breaks time ties in
scheduling order, so a run is a pure function of its seed. The queue is a calendar queue: events
fall into time bins of ``bin_width_s``; only the bin being processed is a heap, later bins are
plain lists heapified when their turn comes. A thousand-node run keeps tens of thousands of
deliveries pending, and popping them from one big heap costs more than everything else a
delivery does.

After every input the engine *pumps* the node: it drains the actions and hands each one to the
handler registered for its type (:meth:`Engine.on_action`; a protocol kit registers, say,
"``SendMessage`` -> :meth:`Engine.transmit`"), then re-arms the node's timer if its deadline
moved earlier. A timer event that is no longer the node's earliest deadline is stale and skipped.

:meth:`Engine.transmit` is the link model: the message leaves after the protocol's delay and the
sender's uplink serialisation, crosses the link's constant latency plus jitter, and never
overtakes the link's previous departure (in-order delivery). The uplink is a FIFO of the
messages sent at once (``delay_s = 0``: a stem hop, a burst of cells); a message sent after a
delay waits for that backlog but does not hold the uplink for later ones, since it may depart
after messages issued later. This is exact for zero-delay bursts and drops only the rare overlap
of two sub-millisecond serialisations that depart together after independent random delays.
Messages are Python objects (no encoding): the baselines move small immutable messages, which
keeps a thousand-node run fast.

Adversaries watch through three hooks that cost nothing when unset: ``spy_hook`` sees every
delivery to a node whose ``spy`` flag is set, ``tap_hook`` sees (departure, arrival, src, dst,
size) of every message on a tapped directed link or on any link of a tapped node, and
``drop_filter`` lets a run stop moving a message (used to stop a transaction once the adversary
has seen it, when nothing else is being measured).

A relay's whole fan-out goes through :meth:`Engine.transmit_each` in one call. A kit that knows
that copies of a message after the first change nothing at an honest receiver (a transaction
relayed to a node that already has it, or will have it when an earlier copy lands) passes the
earliest time each node holds it: a copy that arrives no earlier still takes the uplink, the
link's in-order state, its jitter draw, its bytes and the taps, so every figure is the same,
but no delivery event is queued (counted in ``elided``). In flooding most copies are such
duplicates, and queueing them was most of a large run's cost. This is exact as long as an
earlier copy is indeed delivered: ``drop_filter`` must keep dropping a message it dropped once
(it stops a transaction for good), and node restarts (churn) are not allowed with it.

A core whose deadline is still in the past right after its timer fired would make a real event
loop spin; the engine wakes it again ``TIMER_SPIN_DELAY_S`` later and counts it
(``timer_spins``), so such a bug costs events instead of hanging the run.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
from collections.abc import Callable, Iterable, MutableSequence, Sequence
from typing import Any

from murmur.base.rng import Rng
from murmur.sim.network import LatencyModel

DELIVER = 0
TIMER = 1
CALL = 2
BIN_WIDTH_S = 0.001
TIMER_SPIN_DELAY_S = 0.001
"""A node whose timer is due again at the very time it just fired is woken this much later."""
GC_YOUNG_THRESHOLD = 100_000
"""While :meth:`Engine.run` runs, CPython's cycle collector looks at new objects only after this
many net allocations (its default is 700). The loop allocates an event tuple per delivery and
messages per relay, short-lived and acyclic; with the default, collections that find nothing
took a fifth of a 10,000-node run. Cycles are still collected, only less often."""

Receive = Callable[[int, Any, float], None]
ActionHandler = Callable[["SimNode", Any, float], None]


class SimNode:
    """One simulated machine: its protocol object, link state and traffic counters."""

    __slots__ = (
        "bytes_sent",
        "fired_at",
        "index",
        "left_at",
        "links",
        "messages_sent",
        "protocol",
        "receive",
        "spy",
        "timer_at",
        "up",
        "uplink_free_at",
    )

    def __init__(self, index: int, protocol: Any, receive: Receive) -> None:
        self.index = index
        self.protocol = protocol
        self.receive = receive
        self.up = True
        self.left_at: list[float] = []
        """When the node went down (churn), in order."""
        self.spy = False
        self.timer_at: float | None = None
        self.fired_at = -math.inf
        self.uplink_free_at = 0.0
        self.links: dict[int, list[float]] = {}
        """Per destination: [latency, last departure, its arrival] (for in-order delivery)."""
        self.bytes_sent = 0
        self.messages_sent = 0


class Engine:
    def __init__(
        self,
        *,
        latency: LatencyModel,
        rng: Rng,
        uplink_bps: float | None = None,
        jitter_fraction: float = 0.0,
        bin_width_s: float = BIN_WIDTH_S,
    ) -> None:
        self.now = 0.0
        self.events = 0
        self.elided = 0
        """Deliveries not queued because the sender's kit knew they were no-ops (see above)."""
        self.timer_spins = 0
        """Timers re-armed at the time they fired (a core whose deadline stayed in the past)."""
        self.nodes: list[SimNode] = []
        self.spy_hook: Callable[[float, int, int, Any], None] | None = None
        self.tap_hook: Callable[[float, float, int, int, int], None] | None = None
        self.tapped: set[tuple[int, int]] = set()
        self.tapped_nodes: set[int] = set()
        self.drop_filter: Callable[[Any], bool] | None = None
        self._latency = latency
        self._random = rng.random
        self.uplink_bps = uplink_bps
        """Per-node uplink rate (None: unlimited); a run may change it between stages."""
        self._jitter = jitter_fraction
        self._per_bin = 1.0 / bin_width_s
        self._current: list[tuple[Any, ...]] = []
        self._current_bin = -1
        self._bins: dict[int, list[tuple[Any, ...]]] = {}
        self._bin_keys: list[int] = []
        self._seq = itertools.count()
        self._handlers: dict[type, ActionHandler] = {}
        self._stopped = False

    # -- building -------------------------------------------------------------------------

    def add_node(self, protocol: Any, receive: Receive) -> SimNode:
        node = SimNode(len(self.nodes), protocol, receive)
        self.nodes.append(node)
        return node

    def on_action(self, action_type: type, handler: ActionHandler) -> None:
        self._handlers[action_type] = handler

    def at(self, time: float, callback: Callable[[float], None]) -> None:
        """Run ``callback(now)`` at virtual ``time`` (not before the current time)."""
        self._push((max(time, self.now), next(self._seq), CALL, -1, callback, None))

    def _push(self, event: tuple[Any, ...]) -> None:
        key = int(event[0] * self._per_bin)
        if key <= self._current_bin:
            heapq.heappush(self._current, event)
            return
        pending = self._bins.get(key)
        if pending is None:
            self._bins[key] = [event]
            heapq.heappush(self._bin_keys, key)
        else:
            pending.append(event)

    # -- the link model -------------------------------------------------------------------

    def transmit(self, node: SimNode, dst: int, message: Any, size: int, delay_s: float) -> None:
        """Send one message to ``dst`` after ``delay_s`` (:meth:`transmit_each` with one copy)."""
        self.transmit_each(node, message, size, (dst,), (delay_s,))

    def transmit_each(
        self,
        node: SimNode,
        message: Any,
        size: int,
        dsts: Sequence[int],
        delays_s: Sequence[float],
        first: MutableSequence[float] | None = None,
    ) -> None:
        """Send a copy of ``message`` to each of ``dsts``, ``dsts[i]`` after ``delays_s[i]``.

        The copies take the link model one after the other, in order, exactly as that many
        :meth:`transmit` calls would. ``first`` (indexed by node) marks the copies idempotent:
        ``first[dst]`` is the earliest time ``dst`` holds the message (``-inf`` once it has it,
        ``inf`` while no copy is on its way, else the arrival of the earliest copy queued), and
        a copy that arrives no earlier is elided (see the module docstring); a copy queued to an
        honest node lowers it. Spies are never marked: they get every copy. The two sequences
        must have the same length (unchecked: ``zip(strict=True)`` cost a fifth of a send).
        """
        now = self.now
        bps = self.uplink_bps
        serialise = 0.0 if bps is None else size * 8.0 / bps
        free_at = node.uplink_free_at
        links = node.links
        src = node.index
        jitter = self._jitter
        random = self._random
        tap_hook = self.tap_hook
        nodes = self.nodes
        current, current_bin, bins = self._current, self._current_bin, self._bins
        per_bin = self._per_bin
        seq = self._seq
        elided = 0
        for dst, delay_s in zip(dsts, delays_s, strict=False):
            depart = now + delay_s
            if bps is not None:
                start = depart if depart > free_at else free_at
                if delay_s == 0.0:
                    depart = free_at = start + serialise
                else:
                    depart = start + serialise
            link = links.get(dst)
            if link is None:
                link = links[dst] = [self._latency.one_way_s(src, dst), 0.0, 0.0]
            latency = link[0]
            arrival = depart + latency
            if jitter:
                arrival += latency * jitter * random()
                if depart >= link[1]:
                    # In-order delivery (TCP): never overtake the message that departed before.
                    if arrival < link[2]:
                        arrival = link[2]
                    link[1], link[2] = depart, arrival
            if tap_hook is not None and (
                (src, dst) in self.tapped or src in self.tapped_nodes or dst in self.tapped_nodes
            ):
                tap_hook(depart, arrival, src, dst, size)
            if first is not None:
                if arrival >= first[dst]:
                    elided += 1
                    continue
                if not nodes[dst].spy:
                    first[dst] = arrival
            event = (arrival, next(seq), DELIVER, dst, src, message)
            key = int(arrival * per_bin)
            if key <= current_bin:
                heapq.heappush(current, event)
                continue
            pending = bins.get(key)
            if pending is None:
                bins[key] = [event]
                heapq.heappush(self._bin_keys, key)
            else:
                pending.append(event)
        node.uplink_free_at = free_at
        node.bytes_sent += size * len(dsts)
        node.messages_sent += len(dsts)
        if elided:
            self.elided += elided

    # -- driving --------------------------------------------------------------------------

    def pump(self, node: SimNode) -> None:
        """Route the node's pending actions and re-arm its timer (after any input or command)."""
        self.dispatch(node, node.protocol.drain_actions())

    def dispatch(self, node: SimNode, actions: Iterable[Any]) -> None:
        """Hands actions the node produced to their handlers, then re-arms its timer."""
        handlers = self._handlers
        for action in actions:
            handlers[action.__class__](node, action, self.now)
        deadline = node.protocol.next_deadline()
        if deadline is not None and (node.timer_at is None or deadline < node.timer_at):
            now = self.now
            at = deadline if deadline > now else now
            if at == node.fired_at:
                # Its own timer just fired at this time and left the deadline in the past: a
                # real event loop would spin; wake it a little later instead of forever now.
                at += TIMER_SPIN_DELAY_S
                self.timer_spins += 1
            node.timer_at = at
            self._push((at, next(self._seq), TIMER, node.index, None, None))

    def stop(self) -> None:
        self._stopped = True

    def run(self, until: float = math.inf) -> None:
        """Process events in time order until ``until``, :meth:`stop`, or an empty queue.

        Hooks and handlers are read once here: set them before running.
        """
        nodes = self.nodes
        pop = heapq.heappop
        pump = self.pump
        handlers = self._handlers
        drop_filter, spy_hook = self.drop_filter, self.spy_hook
        bins, bin_keys = self._bins, self._bin_keys
        current = self._current
        events = 0
        self._stopped = False
        thresholds = gc.get_threshold()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
        try:
            while not self._stopped:
                if not current:
                    if not bin_keys:
                        break
                    key = pop(bin_keys)
                    current = self._current = bins.pop(key)
                    heapq.heapify(current)
                    self._current_bin = key
                if current[0][0] > until:
                    break
                time, _, kind, index, a, b = pop(current)
                self.now = time
                events += 1
                if kind == DELIVER:
                    node = nodes[index]
                    if not node.up or (drop_filter is not None and drop_filter(b)):
                        continue
                    if spy_hook is not None and node.spy:
                        spy_hook(time, index, a, b)
                    node.receive(a, b, time)
                    protocol = node.protocol
                    for action in protocol.drain_actions():
                        handlers[action.__class__](node, action, time)
                    deadline = protocol.next_deadline()
                    if deadline is not None and (node.timer_at is None or deadline < node.timer_at):
                        pump(node)
                elif kind == TIMER:
                    node = nodes[index]
                    if time != node.timer_at or not node.up:
                        continue
                    node.timer_at = None
                    node.fired_at = time
                    node.protocol.handle_timer(time)
                    pump(node)
                else:
                    a(time)
        finally:
            gc.set_threshold(*thresholds)
            self.events += events
        if until != math.inf and not self._stopped and self.now < until:
            self.now = until

    @property
    def pending(self) -> int:
        return len(self._current) + sum(len(events) for events in self._bins.values())
