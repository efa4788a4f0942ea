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

Both guess only when they pair, so their precision is high and their recall is the share of
circuits whose both ends are spies: about p² with a fraction p of spies, the floor of every
circuit design (docs/evaluation.md §6). Position and bursts come from the spies' cell logs as
:mod:`murmur.sim.timing` reads them; no ground truth enters.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence

from murmur.sim.adversary import AdversaryLog, CellRecord
from murmur.sim.timing import (
    BURST_S,
    Event,
    build_trace,
    bursts,
    cells_by_circuit,
    circuit_positions,
    hop_one_circuits,
    match_pairs,
    successor,
)
from murmur.wire.cells import EXTEND_CELLS

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
    for key, origin in hop_one_circuits(log).items():
        cells = by_circuit[key]
        middle = successor(cells)
        latency = log.one_way_s(key[0], middle)
        if latency is None:
            continue
        _, _, data = build_trace(cells, log.hops)
        for start, count in bursts(cell.time for cell in data):
            via[middle].append((len(events), latency))
            events.append(Event(start + latency, origin, "hop1", count))
    least, most = (2.0 * bound for bound in log.relay_delay_s)  # held at hop 1 and the middle
    centre = (least + most) / 2.0
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
            residual = left_middle - events[i].time
            slack = LINK_JITTER_FRACTION * (first_latency + latency) + BURST_S
            if least - slack <= residual <= most + slack:
                off = abs(residual - centre)
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
    least, most = log.relay_delay_s  # hop 1's own hold on the extension cells
    centre = (least + most) / 2.0
    reached: dict[int, list[tuple[float, float, tuple[int, int]]]] = defaultdict(list)
    """Middle relay -> (when its extension reached it, hop 1's link latency, hop-1 circuit)."""
    origins: dict[tuple[int, int], int] = {}
    for key, (position, predecessor) in positions.items():
        if position != 1:
            continue
        cells = by_circuit[key]
        middle = successor(cells)
        latency = log.one_way_s(key[0], middle)
        relayed = _extension_relayed(cells)
        if latency is None or relayed is None:
            continue
        reached[middle].append((relayed + latency, latency, key))
        origins[key] = predecessor
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
            slack = LINK_JITTER_FRACTION * (first_latency + latency) + BURST_S
            for act in acts:
                residual = act - at
                if least - slack <= residual <= most + slack:
                    pairs.append((abs(residual - centre), key, entry))
    exits: dict[tuple[int, int], int] = {}
    taken: set[tuple[int, int]] = set()
    for _, exit_key, entry in sorted(pairs):
        if exit_key not in exits and entry not in taken:
            exits[exit_key] = origins[entry]
            taken.add(entry)
    published: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)
    """(exit spy, middle) -> (DATA cell time, origin) on paired circuits."""
    for key, origin in exits.items():
        middle = positions[key][1]
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


def _extension_relayed(cells: Sequence[CellRecord]) -> float | None:
    """When hop 1 received the last cell of the extension it relayed to its successor (the run
    of :data:`EXTEND_CELLS` unreadable forward cells after its own EXTEND that the successor
    answered); None if it never saw one."""
    extended = False
    run: list[CellRecord] = []
    for cell in cells:
        if not extended:
            extended = cell.recognized and cell.relay_command == "EXTEND"
        elif cell.leg == "prev" and cell.command == "RELAY" and not cell.recognized:
            run.append(cell)
        elif cell.leg == "next" and cell.command == "RELAY" and run:
            return run[-1].time if len(run) == EXTEND_CELLS else None
    return None
