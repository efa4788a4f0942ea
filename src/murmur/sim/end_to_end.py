"""Spies at both ends of a circuit: the correlation low-latency onion routing does not resist.

Theory of operation. When a spy is hop 1 of a circuit and another spy is its exit, the two sit
one link either side of the same middle relay, and each knows the latency of its own link to
it (Syverson et al. 2000; Tor's threat model leaves this adversary out). Two estimators pair
them:

* ``timing_end_to_end``, per message: hop 1 saw a message leave for the middle, the exit
  received a transaction from it; the exit's reception less its link's latency, less hop 1's
  departure plus its link's latency, is the middle's forwarding time, about nothing within
  the links' jitter (plus the relay delays the level adds, in their public range).
* ``timing_circuit_pairing``, per circuit, at its build: the middle acts on the extension hop
  1 relayed to it at once (a CREATE to the exit, or the dial before it, which the exit's
  kernel sees), so no delay a relay adds to messages later hides the pair.

Spies at hop 1 and hop 2 need no timing to join their legs: they are the two ends of one link
and read the same circuit id on it. Hop 1 knows the origin, hop 2 knows the exit, and the
exit's publication is public, so ``timing_entry_middle`` pairs the messages hop 2 forwards with
the exit's publications (:func:`hop_two_guesses`, which :mod:`murmur.sim.near_entry` shares).
``circuit_collusion`` is the three together, the adversary's best use of colluding spies on one
circuit.

All of them guess only when they pair, so their precision is high and their recall is the share
of circuits with spies in the right places: hop 1 and either of the two hops after it, about
p(1 - (1 - p)²) ≈ 2p² with a fraction p of spies, the floor of every three-hop circuit design
(docs/evaluation.md §6). Position and bursts come from the spies' cell logs as
:mod:`murmur.sim.timing` reads them; no ground truth enters.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

from murmur.sim.adversary import AdversaryLog
from murmur.sim.timing import (
    BURST_S,
    Event,
    build_trace,
    bursts,
    cells_by_circuit,
    circuit_positions,
    match_pairs,
    next_leg,
    origin_circuits,
    pair_once,
    publications,
    successor,
)

LINK_JITTER_FRACTION = 0.1
"""How much a message's delay on a link may exceed the link's latency, as a fraction of it: the
simulated network's jitter bound, which an adversary measuring its own links learns."""


def timing_end_to_end(log: AdversaryLog) -> dict[bytes, int]:
    """Entry and exit together: the correlation low-latency onion routing does not resist
    (Syverson et al. 2000; Tor's threat model leaves it out). When a spy is hop 1 of a circuit
    and another spy is its exit, the two sit one link either side of the same middle relay:
    hop 1 saw a message leave for that relay, the exit received a transaction from it, and each
    knows the latency of its own link to it. So the exit's reception, less its link's latency,
    less hop 1's departure plus its link's latency, is the middle relay's forwarding time:
    about nothing, within the two links' jitter. A pair through the same middle relay that
    close names the origin. The estimator guesses only then, so its precision is high and its
    recall is the share of circuits whose both ends are spies (about p² with a fraction p of
    spies): the floor of any design without delays inside the circuit. Where the level delays
    cells at relays, hop 1 and the middle each held the message for a delay in the level's
    public range, so the residual is their sum: the pair must fall within that range widened by
    the jitter, and pairs nearer its centre go first."""
    by_circuit = cells_by_circuit(log.cells)
    events: list[Event] = []  # hop-1 departures, dated when the cell reached the middle relay
    via: dict[int, list[tuple[int, float]]] = defaultdict(list)  # middle -> (event, its latency)
    for key, origin in origin_circuits(log).items():
        cells = by_circuit[key]
        middle = successor(cells)
        latency = log.one_way_s(key[0], middle)
        if latency is None:
            continue
        data = build_trace(cells, log.hops).data
        for start, count in bursts(cell.time for cell in data):
            via[middle].append((len(events), latency))
            events.append(Event(start + latency, origin, "hop1", count))
    least, most = (2.0 * bound for bound in log.relay_delay_s)  # held at hop 1 and the middle
    pairs: list[tuple[float, float, int, bytes]] = []
    for sighting in log.sightings:
        latency = log.one_way_s(sighting.spy, sighting.sender)
        if sighting.phase != "exit" or latency is None:
            continue
        left_middle = sighting.time - latency
        size = log.tx_cells.get(sighting.tx_id)
        for i, first_latency in via.get(sighting.sender, ()):
            if size is not None and events[i].cells != size:
                continue
            off = off_centre(left_middle - events[i].time, (least, most), first_latency + latency)
            if off is not None:
                pairs.append((off, off, i, sighting.tx_id))
    return match_pairs(events, sorted(pairs))


def timing_circuit_pairing(log: AdversaryLog) -> dict[bytes, int]:
    """Entry and exit together, paired once per circuit, when it is built, so no delay a relay
    adds to the messages matters. Hop 1 relays the extension that tells the middle relay which
    exit to add; the middle acts on it at once: it sends CREATE to the exit, or first dials it
    (the exit's kernel sees the connection open). So the exit's first sight of the middle's
    act, less its link's latency, falls within the links' jitter (and hop 1's own hold on the
    extension, in the level's public range) of hop 1's relay of it plus its link's latency.
    Circuits are paired best first, each once; every transaction the exit then publishes from a
    paired circuit names its origin. Against delays inside the circuit this is the adversary
    that decides: builds are rare at a relay, so a pair is nearly unique whatever the delays."""
    by_circuit = cells_by_circuit(log.cells)
    positions = circuit_positions(log)
    reached: dict[int, list[tuple[float, float, tuple[int, int]]]] = defaultdict(list)
    """Middle relay -> (when its extension reached it, hop 1's link latency, hop-1 circuit)."""
    for key, (position, origin) in positions.items():
        if position != 1 or origin in log.spies:  # a fellow spy's circuit carries only cover
            continue
        cells = by_circuit[key]
        middle = successor(cells)
        latency = log.one_way_s(key[0], middle)
        relayed = build_trace(cells, log.hops).first_extension_at
        if latency is None or relayed is None:
            continue
        reached[middle].append((relayed + latency, latency, key))
    opened: dict[tuple[int, int], list[float]] = defaultdict(list)
    for link in log.inbound:
        opened[(link.spy, link.peer)].append(link.time)
    pairs: list[tuple[float, tuple[int, int], tuple[int, int]]] = []
    for key, (position, middle) in positions.items():
        latency = log.one_way_s(key[0], middle)
        if position != log.hops or latency is None or middle not in reached:
            continue
        create = next(c.time for c in by_circuit[key] if c.command == "CREATE")
        acts = [create - latency]
        dials = opened.get((key[0], middle), [])
        i = bisect.bisect_right(dials, create)
        if i:
            acts.append(dials[i - 1] - latency)
        for at, first_latency, entry in reached[middle]:
            for act in acts:
                # only hop 1 holds the extension: the middle acts on it at once
                off = off_centre(act - at, log.relay_delay_s, first_latency + latency)
                if off is not None:
                    pairs.append((off, key, entry))
    paired = pair_once((entry, key) for _, key, entry in sorted(pairs))
    published: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)
    """(exit spy, middle) -> (DATA cell time, origin) on paired circuits."""
    for key, entry in paired.items():
        middle, origin = positions[key][1], positions[entry][1]
        for c in by_circuit[key]:
            if c.relay_command == "DATA":
                published[(key[0], middle)].append((c.time, origin))
    guesses: dict[bytes, int] = {}
    for sighting in log.sightings:
        if sighting.phase != "exit" or sighting.tx_id in guesses:
            continue
        for t, origin in published.get((sighting.spy, sighting.sender), ()):
            if 0.0 <= sighting.time - t <= BURST_S:
                guesses[sighting.tx_id] = origin
                break
    return guesses


def timing_entry_middle(log: AdversaryLog) -> dict[bytes, int]:
    """Spies at hop 1 and hop 2 of one circuit. They sit at the two ends of one link, each
    removes the link's encryption, and the cell header on it carries the circuit's id in the
    clear, so they join their two legs exactly: hop 1 knows the origin (its build says so),
    hop 2 knows the exit (its successor). What is left is which transaction the circuit carried,
    and the exit's publication says that: hop 2 forwards a message to the exit at t, the exit
    publishes it at t plus their link's latency (:func:`hop_two_guesses`). An exit publishes a
    transaction now and then, so the pair is nearly always unique, and a spy at hop 2 adds to
    the circuits a spy at hop 1 gives away about as many as a spy at the exit does."""
    entries: dict[tuple[int, int, int], int] = {}
    """(hop-1 spy, middle, the circuit's id on their link) -> origin."""
    by_circuit = cells_by_circuit(log.cells)
    for key, origin in origin_circuits(log).items():
        out = next_leg(by_circuit[key])
        if out is not None:
            entries[(key[0], out.peer, out.circ_id)] = origin
    return hop_two_guesses(log, lambda spy, hop_one, circ_id: entries.get((hop_one, spy, circ_id)))


def circuit_collusion(log: AdversaryLog) -> dict[bytes, int]:
    """Every way spies on one circuit join up, together: hop 1 with the exit, per message and
    at the circuit's build, and hop 1 with hop 2 (exact, so it has the last word). Each guesses
    only when its spies pair, so the union's recall is the share of transactions whose circuit
    had a spy at hop 1 and another after it."""
    guesses: dict[bytes, int] = {}
    for estimator in (timing_end_to_end, timing_circuit_pairing, timing_entry_middle):
        guesses.update(estimator(log))
    return guesses


HOP_TWO_HOPS = 3
"""Circuit length :func:`hop_two_guesses` reads: a spy at hop 2 then has the exit as successor."""


def hop_two_guesses(
    log: AdversaryLog, name: Callable[[int, int, int], int | None]
) -> dict[bytes, int]:
    """Spies at hop 2 of three-hop circuits pair the messages they forward with the exits'
    publications. ``name(spy, first_hop, circ_id)`` says whom a circuit's messages point to
    (None: no one), from the hop-2 spy, its predecessor and the circuit's id on their link.

    A spy at hop 2 forwards a message's cells to the exit at t; the exit publishes at t plus
    their link's latency, and spies near the exit date that publication (the earliest of their
    sightings less their own link's latency, from the node that handed it over:
    :func:`murmur.sim.timing.publications`), within the links' jitter and the hold the level
    lets a relay add. Pairs closest to that are taken first, each message and transaction once.
    """
    if log.hops != HOP_TWO_HOPS:
        return {}
    by_circuit = cells_by_circuit(log.cells)
    events: list[Event] = []
    via: dict[int, list[tuple[int, float]]] = defaultdict(list)
    """Exit -> (event, the hop-2 spy's link latency to it)."""
    for key, (position, first_hop) in circuit_positions(log).items():
        if position != 2:
            continue
        cells = by_circuit[key]
        create = next(c for c in cells if c.command == "CREATE" and c.leg == "prev")
        origin = name(key[0], first_hop, create.circ_id)
        exit_node = successor(cells)
        latency = log.one_way_s(key[0], exit_node)
        if latency is None or origin is None:
            continue
        for start, count in bursts(cell.time for cell in build_trace(cells, log.hops).data):
            via[exit_node].append((len(events), latency))
            events.append(Event(start + latency, origin, "hop2", count))
    pairs: list[tuple[float, float, int, bytes]] = []
    for tx_id, (published, exit_node, spy_latency) in publications(log).items():
        size = log.tx_cells.get(tx_id)
        for i, latency in via.get(exit_node, ()):
            if size is not None and events[i].cells != size:
                continue
            off = off_centre(published - events[i].time, log.relay_delay_s, latency + spy_latency)
            if off is not None:
                pairs.append((off, off, i, tx_id))
    return match_pairs(events, sorted(pairs))


def off_centre(residual: float, held: tuple[float, float], latencies: float) -> float | None:
    """How far a pair's residual lies from the centre of what the relays' holds explain
    (``held``: least and most, summed over the relays that held the cell), or None when it
    lies outside that range widened by the two links' jitter and a burst's spread."""
    slack = LINK_JITTER_FRACTION * latencies + BURST_S
    least, most = held
    if not least - slack <= residual <= most + slack:
        return None
    return abs(residual - (least + most) / 2.0)
