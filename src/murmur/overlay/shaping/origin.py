"""The origin side of traffic shaping: jitter, slot-based sending and cover, per privacy level.

Theory of operation. A :class:`ShapedOrigin` sits in front of the circuit client (anything that
fits :class:`CircuitPort`) and keeps one *lane* per privacy level in use. A message submitted on
a lane is held for the lane's origin delay (seed §2.3), then either handed to the client at once
or, when the lane has a :class:`RateConfig`, queued for the lane's next slot (seed §2.2). At a
slot the lane sends its oldest real message or, with cover on and an empty queue, a cover
message: COVER cells on a uniformly random ready circuit (the law real sends use), as many as a
padded message of a size drawn from the lane's cover sizes, so only the exit, which reads the
relay command, can tell them apart. With no ready circuit the slot is skipped for real and cover
alike. A lane with a rate starts its slot clock when it opens and never stops, because cover that
starts and stops with real traffic marks it. A lane with background cover (``CoverConfig``)
sends real messages as they come and, on a clock of its own that likewise never stops, cover
messages as a Poisson process. A real message that comes while no circuit is ready (a node just
started, or every circuit failed) is held and leaves in place of a cover message at a later
cover departure (or, if none has come within ``CoverConfig.max_hold_s``, then, on a circuit
if one is ready, else it fails): the first departures on a new circuit then keep cover's law,
where handing them to the client would send them all the moment the circuit was built,
marking them real to its hop 1. Messages that come once a circuit is ready leave as they come,
as always, so holding never caps a lane's throughput at the cover rate.

Cover sizes follow the network's real traffic, not this node's: the node calls
:meth:`published` for every message gossip delivers (its own come back that way too), and for
each on a private-path topic (a transaction: what a circuit carries) each lane adds the size
that message pads to under its buckets to the mix it draws cover sizes from, starting from the
policy's ``cover_sizes`` as a prior (weight ``COVER_PRIOR_WEIGHT``). Blocks and consensus
messages never leave through a circuit, so a cover message of their sizes would be one no real
message could be, and a spy would set it aside. A spy
knows each published transaction's bucket, so only departures of as many cells can have
carried it: cover must take the cell counts real messages take (a chain of 300-byte
transactions and one of 2-kB transactions fill different buckets), and every node must draw
from the same mix, or a node's cover would mark the sizes it sends itself.

A lane with a ``ResendConfig`` watches every real message it sent until :meth:`published`
names its gossip message id (the exit publishes the payload, so the origin sees its own
transaction come back); one not back in time enters the lane again with the same id, and after
the last attempt fails with ``unconfirmed``.

Bounds: at most ``max_pending`` messages wait per lane (``QueueFull`` beyond, a clear error to the
caller, never a silent drop); a queued message that waits ``max_wait_s`` fails through the
client's usual ``SendFailed`` with reason ``queue_timeout``. Message ids (``ref``) come from the
client, so a failure reported later names the id the caller was given.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Protocol

from murmur.base.errors import LocalProtocolError, MurmurError
from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.overlay.routing import MessagePath, path_for_topic
from murmur.overlay.shaping.config import ShapingPolicy
from murmur.overlay.shaping.delay_line import DelayLine
from murmur.overlay.shaping.sender import RateSender
from murmur.wire.cells import Envelope, MessageKind, envelope_size, padded_size
from murmur.wire.gossip import message_id


class QueueFull(LocalProtocolError):
    """Too many private messages are waiting to leave at this level; try again later."""


class CircuitPort(Protocol):
    """What the shaper needs from the circuit client (``CircuitClient`` fits it)."""

    def allocate_ref(self) -> int: ...

    def check_available(self, now: float) -> None:
        """Raises (``NoCircuitAvailable``) when no circuit is ready or can be built."""
        ...

    def ready_circuits(self) -> int: ...

    def build_soon(self, now: float) -> None:
        """A message is held for a circuit: have one built now if none is ready or building."""
        ...

    def send(
        self, topic: str, payload: bytes, now: float, *, buckets: tuple[int, ...], ref: int
    ) -> int: ...

    def send_cover(self, now: float, *, padded_bytes: int, second_hop: bool = False) -> bool: ...

    def fail_send(self, ref: int, reason: str) -> None: ...

    def delivery(self, ref: int, *, confirmed: bool, now: float) -> None:
        """Whether a real message sent as ``ref`` came back through gossip in time."""
        ...


COVER_PRIOR_WEIGHT = 1.0
"""How many published messages the configured cover sizes count as, before any is seen."""
COVER_MEMORY = 256.0
"""Published sizes are remembered with exponential decay over about this many messages."""
FORGET_WEIGHT = 1e-3


@dataclass(frozen=True, slots=True)
class _Message:
    ref: int
    topic: str
    payload: bytes = field(repr=False)
    attempt: int = 0
    """Resends so far."""
    watched: bool = True
    """Whether gossip is watched for it to come back (not for one that cannot)."""


@dataclass(slots=True, eq=False)
class _Lane:
    name: str
    policy: ShapingPolicy
    delays: DelayLine[_Message]
    sender: RateSender[_Message] | None
    next_cover: float | None
    sizes: dict[int, float]
    """Padded size → weight: the mix cover sizes are drawn from."""
    held: deque[tuple[float, _Message]] = field(default_factory=deque)
    """Real messages waiting for a circuit and a cover departure to take, with when each
    gives up (lanes with background cover only)."""

    def learn_size(self, padded: int) -> None:
        """Adds a published message's padded size; sizes whose weight has decayed away are
        forgotten, so the mix stays small even with padding off (every exact size its own
        entry)."""
        decay = 1.0 - 1.0 / COVER_MEMORY
        for size in list(self.sizes):
            self.sizes[size] *= decay
            if self.sizes[size] < FORGET_WEIGHT:
                del self.sizes[size]
        self.sizes[padded] = self.sizes.get(padded, 0.0) + 1.0

    def draw_cover_size(self, rng: Rng) -> int:
        point = rng.random() * sum(self.sizes.values())
        for size, weight in self.sizes.items():
            point -= weight
            if point < 0:
                return size
        return next(reversed(self.sizes))

    def pending(self) -> int:
        queued = len(self.sender) if self.sender is not None else 0
        return len(self.delays) + queued + len(self.held)


@dataclass(frozen=True, slots=True)
class _Unconfirmed:
    lane: _Lane
    message: _Message
    deadline: float


class ShapedOrigin:
    def __init__(self, *, port: CircuitPort, rng: Rng) -> None:
        self.counters = Counters()
        self._port = port
        self._rng = rng
        self._lanes: dict[str, _Lane] = {}
        self._unconfirmed: dict[bytes, _Unconfirmed] = {}
        """Gossip message id → a real message sent and not yet seen back (oldest first)."""
        self._ids_by_ref: dict[int, bytes] = {}
        self._resend_deadlines: list[tuple[float, bytes]] = []
        """A heap; entries whose message was confirmed meanwhile are skipped when popped."""

    # --- commands --------------------------------------------------------------------------

    def open_lane(self, name: str, policy: ShapingPolicy, now: float) -> None:
        """Starts a lane (its slot clock and cover, if any); a lane already open is kept."""
        if name in self._lanes:
            return
        sender = None if policy.rate is None else RateSender[_Message](policy.rate, self._rng, now)
        next_cover = None if policy.cover is None else now + policy.cover.gap(self._rng)
        total = sum(w for _, w in policy.cover_sizes)
        prior = {size: COVER_PRIOR_WEIGHT * w / total for size, w in policy.cover_sizes}
        self._lanes[name] = _Lane(name, policy, DelayLine(), sender, next_cover, prior)

    def has_lane(self, name: str) -> bool:
        return name in self._lanes

    def submit(
        self, lane_name: str, topic: str, payload: bytes, now: float, *, watch: bool = True
    ) -> int:
        """Sends ``payload`` on ``topic`` the way lane ``lane_name`` shapes it; returns its id.
        ``watch=False``: the message cannot come back through gossip (gossip already holds
        it, or exits would refuse it), so it is neither resent nor counted for its guard.

        Raises :class:`QueueFull` when the lane already holds ``max_pending`` messages,
        :class:`LocalProtocolError` for a topic or payload no envelope can carry, and what the
        client raises when no circuit is ready or can be built (``NoCircuitAvailable``), at once,
        even if the message would have been held back first.
        """
        lane = self._lanes.get(lane_name)
        if lane is None:
            raise LocalProtocolError(f"no shaping lane {lane_name!r} is open")
        try:
            Envelope(MessageKind.PUBLISH, topic, payload)  # checks the topic and the size
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        if lane.pending() >= lane.policy.max_pending:
            self.counters.inc("queue_full")
            raise QueueFull(
                f"{lane.pending()} private messages are already waiting at level {lane.name!r} "
                f"(at most {lane.policy.max_pending}); try again later"
            )
        self._port.check_available(now)
        message = _Message(self._port.allocate_ref(), topic, payload, watched=watch)
        self.counters.inc("submitted")
        delay = lane.policy.origin_delay
        if delay is None:
            self._enter(lane, message, now, immediate=True)
        else:
            lane.delays.push(message, now + delay.draw(self._rng))
        return message.ref

    # --- inputs ----------------------------------------------------------------------------

    def published(self, topic: str, gossip_id: bytes, payload_bytes: int, now: float) -> bool:
        """Gossip delivered message ``gossip_id`` (``payload_bytes`` long, on ``topic``): on a
        private-path topic its size joins every lane's cover mix, and if it is one of ours, it
        arrived, and the client hears so (its circuit's guard delivered): then True, and the
        client may have cells to send."""
        if path_for_topic(topic) is MessagePath.PRIVATE:
            framed = envelope_size(topic, payload_bytes)
            for lane in self._lanes.values():
                lane.learn_size(padded_size(framed, lane.policy.buckets))
        entry = self._unconfirmed.pop(gossip_id, None)
        if entry is not None:
            del self._ids_by_ref[entry.message.ref]
            self.counters.inc("confirmed")
            self._port.delivery(entry.message.ref, confirmed=True, now=now)
            self._drop_stale_deadlines()
            return True
        return False

    def abandon(self, ref: int) -> None:
        """The send ``ref`` failed and its caller was told so: stop watching it."""
        gossip_id = self._ids_by_ref.pop(ref, None)
        if gossip_id is not None:
            del self._unconfirmed[gossip_id]
            self._drop_stale_deadlines()

    def fail_held(self, reason: str) -> None:
        """Fails every real message still held back (a jitter delay, a rate queue, a wait for
        a circuit) with ``reason``: the node is stopping, so no timer will release them and
        their callers would wait out their own timeouts."""
        for lane in self._lanes.values():
            held = lane.delays.drain()
            if lane.sender is not None:
                held += lane.sender.drain()
            held += [message for _, message in lane.held]
            lane.held.clear()
            for message in held:
                self.counters.inc("held_failed")
                self._port.fail_send(message.ref, reason)

    def handle_timer(self, now: float) -> None:
        self._resend_overdue(now)
        for lane in self._lanes.values():
            for message in lane.delays.pop_due(now):
                self._enter(lane, message, now, immediate=False)
            while lane.held and lane.held[0][0] <= now:
                message = lane.held.popleft()[1]
                if self._port.ready_circuits():
                    self.counters.inc("held_overdue_sent")
                    self._transmit(lane, message, now)
                else:
                    self.counters.inc("held_timeouts")
                    self._port.fail_send(message.ref, "no_circuit")
            self._background_cover(lane, now)
            sender = lane.sender
            if sender is None:
                continue
            for message in sender.expire(now):
                self.counters.inc("queue_timeouts")
                self._port.fail_send(message.ref, "queue_timeout")
            if sender.slot_due(now):
                self._slot(lane, sender, now)

    def next_deadline(self) -> float | None:
        soonest = math.inf  # plain comparisons: the node asks after every event
        for lane in self._lanes.values():
            delayed = lane.delays.next_deadline()
            if delayed is not None and delayed < soonest:
                soonest = delayed
            if lane.sender is not None:
                soonest = min(soonest, lane.sender.next_deadline())
            if lane.next_cover is not None and lane.next_cover < soonest:
                soonest = lane.next_cover
            if lane.held and lane.held[0][0] < soonest:
                soonest = lane.held[0][0]
        if self._resend_deadlines and self._resend_deadlines[0][0] < soonest:
            soonest = self._resend_deadlines[0][0]
        return None if soonest == math.inf else soonest

    # --- internals -------------------------------------------------------------------------

    def _enter(self, lane: _Lane, message: _Message, now: float, *, immediate: bool) -> None:
        if lane.sender is not None:
            lane.sender.enqueue(message, now)
            return
        cover = lane.policy.cover
        if cover is not None and self._port.ready_circuits() == 0:
            lane.held.append((now + cover.max_hold_s, message))
            self.counters.inc("held_for_circuit")
            self._port.build_soon(now)
            return
        if immediate:
            self._transmit(lane, message, now)
            return
        try:
            self._transmit(lane, message, now)
        except MurmurError:
            self.counters.inc("sends_failed_after_delay")
            self._port.fail_send(message.ref, "no_circuit")

    def _count_cover(self, lane: _Lane) -> None:
        self.counters.inc("cover_sent")
        self.counters.inc(f"cover_sent.{lane.name}")

    def _background_cover(self, lane: _Lane, now: float) -> None:
        cover = lane.policy.cover
        if cover is None or lane.next_cover is None or now < lane.next_cover:
            return
        lane.next_cover = now + cover.gap(self._rng)  # memoryless: the law is unchanged
        if self._port.ready_circuits() == 0:
            return
        if lane.held:
            self.counters.inc("held_released")
            self._transmit(lane, lane.held.popleft()[1], now)
        elif self._port.send_cover(
            now,
            padded_bytes=lane.draw_cover_size(self._rng),
            second_hop=lane.policy.cover_to_second_hop,
        ):
            self._count_cover(lane)

    def _slot(self, lane: _Lane, sender: RateSender[_Message], now: float) -> None:
        if self._port.ready_circuits() == 0:
            sender.skip_slot(now)
            return
        message = sender.take_slot(now)
        if message is not None:
            self._transmit(lane, message, now)
        elif (
            lane.policy.rate is not None
            and lane.policy.rate.cover
            and self._port.send_cover(
                now,
                padded_bytes=lane.draw_cover_size(self._rng),
                second_hop=lane.policy.cover_to_second_hop,
            )
        ):
            self._count_cover(lane)

    def _transmit(self, lane: _Lane, message: _Message, now: float) -> None:
        self._port.send(
            message.topic, message.payload, now, buckets=lane.policy.buckets, ref=message.ref
        )
        self.counters.inc("real_sent")
        if lane.policy.resend is not None and message.watched:
            self._watch(lane, message, now)

    def _watch(self, lane: _Lane, message: _Message, now: float) -> None:
        resend = lane.policy.resend
        assert resend is not None
        gossip_id = message_id(message.topic, message.payload)
        if gossip_id in self._unconfirmed:
            return  # the same transaction sent twice: one watch covers both
        if len(self._unconfirmed) >= resend.max_tracked:
            oldest = next(iter(self._unconfirmed))
            del self._ids_by_ref[self._unconfirmed.pop(oldest).message.ref]
            self.counters.inc("resend_unwatched")
        deadline = now + resend.timeout_s
        self._unconfirmed[gossip_id] = _Unconfirmed(lane, message, deadline)
        self._ids_by_ref[message.ref] = gossip_id
        heapq.heappush(self._resend_deadlines, (deadline, gossip_id))

    def _is_current(self, deadline: float, gossip_id: bytes) -> bool:
        entry = self._unconfirmed.get(gossip_id)
        return entry is not None and entry.deadline == deadline

    def _drop_stale_deadlines(self) -> None:
        """Keeps the heap's head a live deadline, so ``next_deadline`` never wakes for nothing."""
        heap = self._resend_deadlines
        while heap and not self._is_current(*heap[0]):
            heapq.heappop(heap)

    def _resend_overdue(self, now: float) -> None:
        heap = self._resend_deadlines
        while heap and heap[0][0] <= now:
            deadline, gossip_id = heapq.heappop(heap)
            if not self._is_current(deadline, gossip_id):
                continue
            entry = self._unconfirmed.pop(gossip_id)
            del self._ids_by_ref[entry.message.ref]
            resend = entry.lane.policy.resend
            if resend is None or entry.message.attempt >= resend.attempts:
                # One outcome per message, when it settles: a late echo of an earlier copy
                # would have confirmed it (gossip delivers an id once), so misses per attempt
                # would blame the guard for one transaction up to three times.
                self._port.delivery(entry.message.ref, confirmed=False, now=now)
                self.counters.inc("unconfirmed")
                self._port.fail_send(entry.message.ref, "unconfirmed")
                continue
            self.counters.inc("resent")
            again = replace(entry.message, attempt=entry.message.attempt + 1)
            self._enter(entry.lane, again, now, immediate=False)
