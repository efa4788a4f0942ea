"""What a relay and a link observer see of one origin's shaped traffic, on a fake clock.

:func:`observe` builds an in-memory circuit network (``tests/overlay/circuits/harness.py``), puts
a :class:`ShapedOrigin` with one lane in front of node 0's circuit client (told of every exit's
publication, as gossip would tell it), and runs ``slots``
slots of the lane, keeping its queue topped up with real transactions (``real_size`` draws their
payload sizes), or feeding it a Poisson stream of them (``arrivals_per_s``), or leaving it empty
(every slot is cover). Every burst is labelled real or cover. Every cell node 0 sends to a hop-1
relay is also sealed into a real :class:`LinkConnection` for that link, with idle-link padding
frames from an :class:`IdlePadder`, so both views come from production code:

- the relay view: per cell, its size, and per link the bursts (cells that arrived at one instant,
  i.e. one message) and the gaps between them;
- the link view: per record on the wire, its length, and per link the bytes of each burst and the
  gaps between bursts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from murmur.base.ids import NodeId
from murmur.crypto.identity import Identity
from murmur.link.connection import LinkConnection
from murmur.overlay.circuits import ClientConfig
from murmur.overlay.shaping import IdlePadder, LinkPaddingConfig, ShapedOrigin, ShapingPolicy
from murmur.sim.rng import SeededRng
from murmur.wire.envelope import Channel, wrap
from murmur.wire.gossip import message_id
from tests.overlay.circuits.harness import Network

LANE = "lane"
ORIGIN_IDENTITY = Identity.from_seed(b"\x01" * 32)
RELAY_IDENTITY = Identity.from_seed(b"\x02" * 32)


@dataclass
class View:
    """One observer's samples: unit sizes, bursts (units at one instant) and gaps per link.

    ``real`` says, per burst, whether a real message caused it; ``gaps[i]`` is the time since
    the previous burst on the same link before burst ``gap_real[i]``'s kind.
    """

    sizes: list[int] = field(default_factory=list)
    bursts: list[int] = field(default_factory=list)
    real: list[bool] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    gap_real: list[bool] = field(default_factory=list)

    def split(self, feature: str, *, real: bool) -> list[float]:
        """The samples of ``feature`` ("bursts" or "gaps") caused by real (or cover) messages."""
        labels = self.real if feature == "bursts" else self.gap_real
        return [v for v, r in zip(getattr(self, feature), labels, strict=True) if r is real]


@dataclass
class Observation:
    relay: View
    link: View
    real_sent: int
    cover_sent: int


def _link() -> LinkConnection:
    rng = SeededRng(7)
    a = LinkConnection(
        initiator=True,
        identity=ORIGIN_IDENTITY,
        rng=rng,
        now=0.0,
        expected_peer=RELAY_IDENTITY.node_id,
    )
    b = LinkConnection(initiator=False, identity=RELAY_IDENTITY, rng=rng, now=0.0)
    for _ in range(3):
        b.receive_data(a.data_to_send(), 0.0)
        a.receive_data(b.data_to_send(), 0.0)
    a.drain_events()
    return a


Events = dict[NodeId, list[tuple[float, int, bool]]]
"""Per link: (time, units, caused by a real message) for every unit seen."""


def _bursts_and_gaps(events: Events, view: View) -> None:
    for timeline in events.values():
        bursts: list[tuple[float, int, bool]] = []
        for t, amount, real in timeline:
            if bursts and bursts[-1][0] == t:
                bursts[-1] = (t, bursts[-1][1] + amount, bursts[-1][2] or real)
            else:
                bursts.append((t, amount, real))
        view.bursts += [amount for _, amount, _ in bursts]
        view.real += [real for _, _, real in bursts]
        view.gaps += [b[0] - a[0] for a, b in itertools.pairwise(bursts)]
        view.gap_real += [b[2] for b in bursts[1:]]


def observe(
    policy: ShapingPolicy,
    *,
    slots: int,
    seed: int,
    real_size: Callable[[SeededRng], int] | None,
    arrivals_per_s: float | None = None,
    link_padding: LinkPaddingConfig | None = None,
) -> Observation:
    """``real_size`` None: cover only; with ``arrivals_per_s`` None the queue never empties."""
    net = Network(8, seed=seed, client_config=ClientConfig(lifetime_s=1e6, lifetime_jitter_s=0))
    net.run_until(1.0)
    origin = net.node(0)
    shaper = ShapedOrigin(port=origin.host.client, rng=SeededRng(seed + 1))
    shaper.open_lane(LANE, policy, net.now)
    workload = SeededRng(seed + 2)
    padder: IdlePadder[NodeId] | None = (
        None if link_padding is None else IdlePadder(link_padding, SeededRng(seed + 3))
    )
    links: dict[NodeId, LinkConnection] = {}
    sent_bytes: dict[NodeId, int] = {}
    relay_events: Events = {}
    link_events: Events = {}
    relay, link = View(), View()
    seen = len(net.wire)
    next_arrival = None if arrivals_per_s is None else net.now + workload.expovariate(1.0)

    def record(peer: NodeId, now: float, nbytes: int, real: bool) -> None:
        sent_bytes[peer] = sent_bytes.get(peer, 0) + nbytes
        link.sizes.append(nbytes)
        link_events.setdefault(peer, []).append((now, nbytes, real))

    def slots_used() -> int:
        return shaper.counters.get("real_sent") + shaper.counters.get("cover_sent")

    while slots_used() < slots:
        pending = shaper.counters.get("submitted") - shaper.counters.get("real_sent")
        if real_size is not None and next_arrival is None and pending == 0:
            payload = workload.random_bytes(real_size(workload))
            shaper.submit(LANE, "transaction", payload, net.now)
        deadlines = [shaper.next_deadline(), next_arrival]
        if padder is not None:
            deadlines.append(padder.next_deadline())
        now = min(d for d in deadlines if d is not None)
        net.run_until(now)
        real_before = shaper.counters.get("real_sent")
        if real_size is not None and arrivals_per_s is not None and now == next_arrival:
            # a lane without slots sends at once, inside submit
            shaper.submit(LANE, "transaction", workload.random_bytes(real_size(workload)), now)
            next_arrival = now + workload.expovariate(arrivals_per_s)
        shaper.handle_timer(now)
        real = shaper.counters.get("real_sent") > real_before
        net.pump()
        for node in net.nodes.values():  # gossip brings each exit's publication back
            for topic, payload in node.published:
                shaper.published(topic, message_id(topic, payload), len(payload), now)
            node.published.clear()
        for (src, dst, cell), t in zip(net.wire[seen:], net.wire_times[seen:], strict=True):
            if src != origin.node_id:
                continue
            relay.sizes.append(len(cell))
            relay_events.setdefault(dst, []).append((t, 1, real))
            conn = links.get(dst) or links.setdefault(dst, _link())
            conn.send_message(wrap(Channel.CIRCUIT, cell), t)
            record(dst, t, len(conn.data_to_send()), real)
        seen = len(net.wire)
        if padder is not None:
            for peer, conn in links.items():
                if padder.observe(peer, sent_bytes[peer], now):
                    conn.send_padding(padder.config.frame_bytes, now)
                    record(peer, now, len(conn.data_to_send()), False)
                    padder.observe(peer, sent_bytes[peer], now)
    _bursts_and_gaps(relay_events, relay)
    _bursts_and_gaps(link_events, link)
    return Observation(
        relay, link, shaper.counters.get("real_sent"), shaper.counters.get("cover_sent")
    )
