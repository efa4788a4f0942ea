"""Timing correlation against onion circuits: who sent the cell that became this transaction?

Theory of operation. Two observations bracket a private transaction: a cell leaving its origin
(seen by a spy that is hop 1 of the origin's circuit, or by a link observer on the origin's
links) and, a little later, the transaction's first appearance in gossip at some spy. The
estimator pairs them.

1. **Position** (:func:`circuit_positions`). A spy knows where it sits in a circuit from how the
   circuit was built through it, without reading anything it should not. With telescoping
   (CREATE, then one EXTEND per further hop through the hops already built), a hop that reads
   an EXTEND addressed to itself is not the last hop; each further extension then passes
   through it as a run of forward cells it cannot read (an EXTEND spans ``EXTEND_CELLS``
   cells), answered at once by a backward cell (EXTENDED) from its successor. A hop that
   relayed ``k`` such round trips is hop ``hops - 1 - k`` (1-based); with three hops, hop 1
   sees exactly one, hop 2 none, the exit reads DATA and never an EXTEND. So a spy at hop 1
   *knows* its predecessor is the origin.
2. **Events** (:func:`origin_events`). At a spy that is hop 1, every later forward cell it
   cannot read is a private message leaving the origin (one event per burst of cells, which
   it counts: padding makes the count the message's size bucket), dated when the spy's relay
   sent the burst's first cell on to hop 2: where the level holds cells at relays, the spy
   knows its own hold (:class:`~murmur.sim.adversary.ForwardRecord`). A link observer on a
   watched node sees a cell-sized record leave it with no cell-sized record arriving just
   before (a relay forwards at once; the origin starts a message on its own); those
   departures are events too, from source ``link`` (dropped when a hop-1 spy saw the same
   departure). A circuit a fellow spy built gives no events (:func:`origin_circuits`): the
   adversary knows its own nodes send only cover.
3. **Delay law** (:func:`learn_delay`), learnt from the run itself, per source: the delays
   ``T - t`` over every pair of an event at ``t`` and a first gossip sighting at ``T`` within
   ``WINDOW_S`` mix the true delays (a peak: link latencies plus the exit's gossip) with
   unrelated pairs (flat, since transactions arrive as a Poisson process). Knowing that each
   event matches at most one sighting, expectation-maximisation fits a log-normal to the true
   delays without labels, and the ratio of the fitted log-normal to the flat density scores a
   pair. A few dozen events suffice, where a histogram would need thousands.
4. **Matching** (:func:`correlate`): pairs scoring above 1 (likelier related than not) are
   taken greedily, best first, each event and each transaction at most once; the
   transaction's guess is the event's node. A pair counts only if the event has as many cells
   as the transaction's padded message takes (anyone who saw the transaction can work that
   out), so cover of another size than the real traffic competes with nothing.

Four estimators use this. ``timing`` pairs events with first sightings, as described.
``timing_latency`` also uses what spies know of their own links (one-way latency, half the
round trip their pings measure): a hop-1 event is dated when its cell reached hop 2, and a
transaction by its exit's publication time, bounded by every spy's sighting minus the latency
from the neighbour that handed it over. What remains between the two is a single link (hop 2
to the exit), and hop 2's hold where the level holds cells, so the delay law is much narrower
and fewer unrelated transactions compete. A link observer's event is dated when its cell
reached the link's far end, hop 1 (the observer times each connection it carries), which
leaves two links and two holds (hop 1's and hop 2's), so the known law is scored for it as two
draws of the link law and as many holds (:data:`PATH_TO_EXIT`).
``timing_known_law`` is ``timing_latency`` with the law of that link known in advance (fitted to
the spies' own link latencies) instead of learnt from a run that cover traffic floods.
``timing_intersection`` rescores ``timing_known_law``'s pairs by how much each node's departures
explain over the whole run (against origins that send many). Spies at both ends of a circuit
need none of this (:mod:`murmur.sim.end_to_end`, which reads the cells with the helpers below).

No ground truth enters: everything above comes from the spies' cell logs, their gossip
sightings and the link records. Cover messages (the standard level sends them as a Poisson
process) are events like any other: a spy cannot read the COVER command, so each one competes
with the true departure for the transactions it could explain, which is the point of cover.
Limit: a circuit that carries requests (replies travel backwards) would blur the position rule;
the simulated workload has none.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple, Protocol, TypeVar

import numpy as np

from murmur.sim.adversary import AdversaryLog, CellRecord
from murmur.wire.cells import EXTEND_CELLS
from murmur.wire.link import CELL_RECORD_BYTES

A = TypeVar("A")
B = TypeVar("B")

WINDOW_S = 4.0
"""Longest delay from a cell leaving the origin to the first sighting considered."""
START_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
START_SIGMA = 0.3
MIN_SIGMA = 0.05
EM_ROUNDS = 60
NO_MATCH_PRIOR = 0.05
"""Prior chance that an event's transaction was first sighted outside the window."""
SQRT_2PI = math.sqrt(2.0 * math.pi)
BURST_S = 0.05
"""Cells of one circuit closer than this are one message. A message's cells leave together,
but the simulated link jitters each cell on its own (up to a tenth of the link's latency, so
30 ms at the 300 ms ceiling); two messages on one circuit this close are rare."""
RELAY_GAP_S = 0.05
"""A cell leaving a watched node within this of a cell arriving there may be a relayed one."""
SAME_DEPARTURE_S = 1.0
"""A link event followed this soon by a hop-1 event of the same node is the same departure."""


class Event(NamedTuple):
    time: float
    node: int
    source: str
    """``hop1`` (a spy at hop 1) or ``link`` (a link observer)."""
    cells: int = 1
    """Cells in the burst: how many a padded message of its size takes."""


def circuit_positions(log: AdversaryLog) -> dict[tuple[int, int], tuple[int, int]]:
    """``(spy, circuit) -> (position, predecessor)`` for every circuit a spy saw created,
    position 1-based (``log.hops`` for the last hop)."""
    by_circuit = cells_by_circuit(log.cells)
    positions = {}
    for key, cells in by_circuit.items():
        create = next((c for c in cells if c.command == "CREATE" and c.leg == "prev"), None)
        if create is None:
            continue
        trace = build_trace(cells, log.hops)
        position = log.hops - 1 - trace.extensions if trace.extended else log.hops
        positions[key] = (position, create.peer)
    return positions


def hop_one_circuits(log: AdversaryLog) -> dict[tuple[int, int], int]:
    """``(spy, circuit) -> predecessor`` for the circuits whose build told the spy it is hop 1."""
    return {key: peer for key, (position, peer) in circuit_positions(log).items() if position == 1}


def origin_circuits(log: AdversaryLog) -> dict[tuple[int, int], int]:
    """:func:`hop_one_circuits` whose predecessor may have sent a transaction: the adversary
    knows its own nodes originate none (a fellow spy's circuit carries only its cover), so it
    does not let their departures compete with the honest nodes' (nor name a spy)."""
    return {key: peer for key, peer in hop_one_circuits(log).items() if peer not in log.spies}


def origin_events(log: AdversaryLog, *, latency_aware: bool = False) -> list[Event]:
    """Cells leaving an origin, as the adversary saw them, in time order. A hop-1 event is
    dated when the spy sent its cell on to hop 2 (:func:`message_departures`).

    ``latency_aware``: a hop-1 event is dated when its cell reached hop 2 (the spy adds the
    latency of its own link to hop 2, which it measures)."""
    by_circuit = cells_by_circuit(log.cells)
    forwarded = forwards_by_circuit(log)
    events: list[Event] = []
    for key, predecessor in origin_circuits(log).items():
        cells = by_circuit[key]
        trace = build_trace(cells, log.hops)
        shift = 0.0
        if latency_aware:
            shift = log.one_way_s(key[0], successor(cells)) or 0.0
        for left, count in message_departures(trace, forwarded.get(key, [])):
            events.append(Event(left + shift, predecessor, "hop1", count))
    hop_one_times: dict[int, list[float]] = defaultdict(list)
    for event in events:
        hop_one_times[event.node].append(event.time)
    for times in hop_one_times.values():
        times.sort()
    for event in _link_departures(log, latency_aware=latency_aware):
        seen = hop_one_times.get(event.node, [])
        i = bisect.bisect_left(seen, event.time)
        if i < len(seen) and seen[i] - event.time <= SAME_DEPARTURE_S:
            continue
        events.append(event)
    events.sort()
    return events


def first_sightings(log: AdversaryLog) -> dict[bytes, float]:
    """When the adversary first saw each transaction."""
    return {tx_id: s.time for tx_id, s in log.first.items()}


class Publication(NamedTuple):
    """When a transaction left the node the spies take for its exit (the earliest departure
    they can date), that node, and the latency of the spy's link that dated it."""

    time: float
    node: int
    latency: float


def publications(log: AdversaryLog) -> dict[bytes, Publication]:
    """When each transaction's exit published it, as the spies can bound it: a spy that got it
    from a neighbour at T knows it left that neighbour at T minus their link latency, and the
    exit published it no later than the earliest such departure (exactly then when a spy
    neighbours the exit, or is it; a node that only relayed it had it later)."""
    earliest: dict[bytes, Publication] = {}
    for s in log.sightings:
        if s.phase == "exit":
            seen = Publication(s.time, s.spy, 0.0)
        else:
            latency = log.one_way_s(s.spy, s.sender)
            if latency is None:
                continue
            seen = Publication(s.time - latency, s.sender, latency)
        held = earliest.get(s.tx_id)
        if held is None or seen.time < held.time:
            earliest[s.tx_id] = seen
    return earliest


def publication_estimates(log: AdversaryLog) -> dict[bytes, float]:
    """:func:`publications`' times alone."""
    return {tx_id: p.time for tx_id, p in publications(log).items()}


class DelayLaw(Protocol):
    def score(self, delay_s: float) -> float:
        """Likelihood ratio of a true pair at this delay against an unrelated one."""
        ...


class DelayModel(NamedTuple):
    """The learnt delay law: a log-normal over ``(0, WINDOW_S)``, against unrelated pairs."""

    mu: float
    sigma: float

    def density(self, delay_s: float) -> float:
        if delay_s <= 0.0:
            return 0.0
        z = (math.log(delay_s) - self.mu) / self.sigma
        return math.exp(-0.5 * z * z) / (delay_s * self.sigma * SQRT_2PI)

    def densities(self, delays: np.ndarray, log_delays: np.ndarray) -> np.ndarray:
        """:meth:`density` of positive ``delays`` at once (``log_delays``: their logarithms)."""
        z = (log_delays - self.mu) / self.sigma
        return np.exp(-0.5 * z * z) / (delays * self.sigma * SQRT_2PI)

    def score(self, delay_s: float) -> float:
        """Likelihood ratio of a true pair against an unrelated one (uniform on the window)."""
        if not 0.0 < delay_s < WINDOW_S:
            return 0.0
        return self.density(delay_s) * WINDOW_S


GRID_STEP_S = 0.0005
"""Resolution of a path law's density (half a millisecond, far below any link's spread)."""


class PathToExit(NamedTuple):
    """What the adversary does not know between an event, as the latency-aware estimators
    date it, and the exit's publication: links it did not measure, relays' holds it did not
    see."""

    links: int
    holds: int


PATH_TO_EXIT: Mapping[str, PathToExit] = MappingProxyType(
    {"hop1": PathToExit(links=1, holds=1), "link": PathToExit(links=2, holds=2)}
)
"""Per source of events: a hop-1 spy's event is dated when its cell reached hop 2, sent on
after the spy's own hold, which it knows (hop 2's hold and hop 2 to the exit are left); a link
observer's when the cell reached hop 1 (hop 1's hold, hop 1 to hop 2, hop 2's hold, hop 2 to
the exit)."""


class PathLaw:
    """The delay of ``links`` independent draws of a link's law plus ``holds`` independent
    uniform holds on ``[low_s, high_s]``, as a density on a grid over the estimators' window;
    scored like :class:`DelayModel`."""

    __slots__ = ("_density",)

    def __init__(
        self, link: DelayModel, low_s: float, high_s: float, holds: int, links: int = 1
    ) -> None:
        centres = (np.arange(int(WINDOW_S / GRID_STEP_S)) + 0.5) * GRID_STEP_S
        density = link.densities(centres, np.log(centres))
        one_link = density * GRID_STEP_S  # the chance of each grid step
        for _ in range(links - 1):
            density = np.convolve(density, one_link)[: len(centres)]
        if high_s > 0.0:
            first, last = round(low_s / GRID_STEP_S), round(high_s / GRID_STEP_S)
            hold = np.zeros(last + 1)
            hold[first : last + 1] = 1.0 / (last - first + 1)
            for _ in range(holds):
                density = np.convolve(density, hold)[: len(centres)]
        self._density = density

    def score(self, delay_s: float) -> float:
        """Likelihood ratio of a true pair against an unrelated one (uniform on the window)."""
        index = int(delay_s / GRID_STEP_S)
        if not 0.0 < delay_s < WINDOW_S or index >= len(self._density):
            return 0.0
        return float(self._density[index]) * WINDOW_S


def with_holds(law: DelayModel, log: AdversaryLog, path: PathToExit) -> DelayLaw:
    """The delay from an event to its publication when ``path`` is left between them
    (:data:`PATH_TO_EXIT`): its links, each of law ``law``, and its holds, each uniform on the
    level's range when it has one (``log.relay_delay_s``, public)."""
    low, high = log.relay_delay_s
    if path.links == 1 and high <= 0.0:
        return law
    return PathLaw(law, low, high, path.holds, path.links)


def source_laws(law: DelayModel, log: AdversaryLog) -> dict[str, DelayLaw]:
    """:func:`with_holds` for each source of events, over what it leaves to the exit."""
    return {source: with_holds(law, log, path) for source, path in PATH_TO_EXIT.items()}


def learn_delay(event_times: Iterable[float], sighting_times: Sequence[float]) -> DelayModel:
    """Fits the delay law to unlabelled observations (``sighting_times`` sorted).

    Each event carried one transaction, so at most one of the sightings within ``WINDOW_S``
    after it is its match and the others are unrelated (uniform over the window, as
    transactions arrive as a Poisson process). Expectation-maximisation over that structure:
    given the law, each candidate's chance of being the event's match (or none, with prior
    ``NO_MATCH_PRIOR``); given those chances, the log-normal's weighted fit. Every event weighs
    one unit at most, which lets a few dozen events fix the law. EM finds a local optimum, so
    it starts from each of ``START_DELAYS_S`` and keeps the likeliest fit."""
    delays: list[float] = []
    groups: list[int] = []
    matched_events = 0
    for t in event_times:
        lo = bisect.bisect_right(sighting_times, t)
        hi = bisect.bisect_left(sighting_times, t + WINDOW_S)
        found = [sighting_times[k] - t for k in range(lo, hi) if sighting_times[k] > t]
        if found:
            groups.extend([matched_events] * len(found))
            matched_events += 1
            delays.extend(found)
    if not delays:
        return DelayModel(math.log(START_DELAYS_S[0]), START_SIGMA)
    candidates = _Candidates(np.asarray(delays), np.asarray(groups))
    fits = [_fit(candidates, DelayModel(math.log(d), START_SIGMA)) for d in START_DELAYS_S]
    return max(fits, key=lambda fit: (_log_likelihood(candidates, fit), -fit.mu))


class _Candidates:
    """Every event's candidate delays, flat (an event's delays are one run of ``group``)."""

    def __init__(self, delays: np.ndarray, group: np.ndarray) -> None:
        self.delays = delays
        self.log_delays = np.log(delays)
        self.group = group
        self.count = int(group[-1]) + 1
        self.prior = ((1.0 - NO_MATCH_PRIOR) / np.bincount(group))[group]
        """Each candidate's prior of being its event's match, ``NO_MATCH_PRIOR`` aside."""

    def scores(self, model: DelayModel) -> np.ndarray:
        """:meth:`DelayModel.score` of every candidate (all lie inside the window)."""
        return model.densities(self.delays, self.log_delays) * WINDOW_S

    def per_event(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.group, weights=values, minlength=self.count)


def _fit(candidates: _Candidates, model: DelayModel) -> DelayModel:
    x = candidates.log_delays
    for _ in range(EM_ROUNDS):
        ratios = candidates.prior * candidates.scores(model)
        weights = ratios / (NO_MATCH_PRIOR + candidates.per_event(ratios))[candidates.group]
        weight_sum = float(weights.sum())
        if weight_sum <= 0.0:
            return model
        mu = float(weights @ x) / weight_sum
        var = float(weights @ ((x - mu) ** 2)) / weight_sum
        model = DelayModel(mu, max(math.sqrt(var), MIN_SIGMA))
    return model


def _log_likelihood(candidates: _Candidates, model: DelayModel) -> float:
    explained = candidates.per_event(candidates.prior * candidates.scores(model))
    return float(np.log(NO_MATCH_PRIOR + explained).sum())


def timing(log: AdversaryLog) -> dict[bytes, int]:
    """The timing-correlation estimator: hop-1 (and link) events against first sightings."""
    return correlate(origin_events(log), first_sightings(log), cells=log.tx_cells)


def timing_latency(log: AdversaryLog) -> dict[bytes, int]:
    """The same, where spies also use the latencies of their own links: events dated when the
    cell reached hop 2, against each transaction's estimated publication at its exit (what is
    left between them is one link, hop 2 to the exit)."""
    return correlate(
        origin_events(log, latency_aware=True), publication_estimates(log), cells=log.tx_cells
    )


def timing_known_law(log: AdversaryLog) -> dict[bytes, int]:
    """``timing_latency`` with the delay law known instead of learnt from the run: the one
    unknown link (hop 2 to the exit) is a draw from the network's link latencies, of which the
    spies' own links are a sample (:func:`link_law`), plus hop 2's hold when the level holds
    cells at relays (:func:`with_holds`; hop 1's the spy knows). Cover departures cannot bury
    a law the adversary did not have to learn from them, so this is the estimator that decides
    how much cover buys."""
    scored = _known_law_pairs(log)
    return {} if scored is None else match_pairs(*scored)


def link_law(log: AdversaryLog) -> DelayModel | None:
    """A log-normal fitted to the one-way latencies of the spies' own links."""
    return fit_law(log.link_latency_s.values())


def fit_law(latencies: Iterable[float]) -> DelayModel | None:
    """A log-normal fitted to one-way latencies (None from fewer than two)."""
    samples = [math.log(d) for d in latencies if d > 0.0]
    if len(samples) < 2:
        return None
    mu = sum(samples) / len(samples)
    sigma = math.sqrt(sum((x - mu) ** 2 for x in samples) / (len(samples) - 1))
    return DelayModel(mu, max(sigma, MIN_SIGMA))


def correlate(
    events: Sequence[Event],
    seen_at: dict[bytes, float],
    models: dict[str, DelayModel] | None = None,
    *,
    cells: dict[bytes, int] | None = None,
) -> dict[bytes, int]:
    """Matches events to transactions (seen at the given times) under the delay law of each
    event source (learnt from the data unless ``models`` gives it), best pairs first, each
    event and each transaction at most once; with ``cells``, only an event of as many cells
    as the transaction's padded message takes can have carried it."""
    ordered = sorted((t, tx_id) for tx_id, t in seen_at.items())
    if models is None:
        times = [t for t, _ in ordered]
        models = {
            source: learn_delay((e.time for e in events if e.source == source), times)
            for source in {e.source for e in events}
        }
    return match_pairs(events, scored_pairs(events, ordered, models, cells or {}))


def timing_intersection(log: AdversaryLog) -> dict[bytes, int]:
    """``timing_known_law`` that also pools evidence across transactions, against an origin
    that sends many (the intersection attack). Each transaction spreads one unit of belief over
    the departures that could explain it (in proportion to their scores, with one unit kept
    for "none of these"); a node whose departures draw more belief per departure than the
    average is likelier a real origin than one that only sends cover, so every pair is
    rescored by its node's ratio before the usual best-first matching."""
    scored = _known_law_pairs(log)
    if scored is None or not scored[1]:
        return {}
    events, pairs = scored
    total: dict[bytes, float] = defaultdict(lambda: 1.0)  # one unit for "none of these"
    for negated, _, _, tx_id in pairs:
        total[tx_id] += -negated
    belief: dict[int, float] = defaultdict(float)
    for negated, _, i, tx_id in pairs:
        belief[events[i].node] += -negated / total[tx_id]
    departures: dict[int, int] = defaultdict(int)
    for event in events:
        departures[event.node] += 1
    average = sum(belief.values()) / len(events)
    ratio = {node: belief[node] / departures[node] / average for node in departures}
    rescored = sorted(
        (score * ratio[events[i].node], delay, i, tx_id)
        for score, delay, i, tx_id in pairs
        if -score * ratio[events[i].node] > 1.0
    )
    return match_pairs(events, rescored)


def _known_law_pairs(
    log: AdversaryLog,
) -> tuple[list[Event], list[tuple[float, float, int, bytes]]] | None:
    """Latency-aware events and their pairs with estimated publications, scored under the
    link law fitted to the spies' own links (None when they measured too few)."""
    law = link_law(log)
    if law is None:
        return None
    events = origin_events(log, latency_aware=True)
    ordered = sorted((t, tx_id) for tx_id, t in publication_estimates(log).items())
    return events, scored_pairs(events, ordered, source_laws(law, log), log.tx_cells)


def scored_pairs(
    events: Sequence[Event],
    ordered: Sequence[tuple[float, bytes]],
    models: Mapping[str, DelayLaw],
    cells: dict[bytes, int],
) -> list[tuple[float, float, int, bytes]]:
    """``(-score, delay, event index, tx)`` for every event and transaction (``ordered`` by
    time) that the event's law makes likelier related than not and whose size it fits (a
    transaction missing from ``cells`` fits any), best first."""
    times = [t for t, _ in ordered]
    pairs: list[tuple[float, float, int, bytes]] = []
    for i, event in enumerate(events):
        model = models[event.source]
        lo = bisect.bisect_right(times, event.time)
        hi = bisect.bisect_left(times, event.time + WINDOW_S)
        for k in range(lo, hi):
            if cells.get(ordered[k][1], event.cells) != event.cells:
                continue
            delay = times[k] - event.time
            score = model.score(delay)
            if score > 1.0:
                pairs.append((-score, delay, i, ordered[k][1]))
    pairs.sort()
    return pairs


def match_pairs(
    events: Sequence[Event], pairs: Iterable[tuple[float, float, int, bytes]]
) -> dict[bytes, int]:
    """Takes pairs best first, each event and each transaction at most once."""
    matched = pair_once((i, tx_id) for _, _, i, tx_id in pairs)
    return {tx_id: events[i].node for tx_id, i in matched.items()}


def pair_once(ranked: Iterable[tuple[A, B]]) -> dict[B, A]:
    """Greedy one-to-one matching: ``(a, b)`` candidates in order of preference, each ``a`` and
    each ``b`` taken at most once; returns ``b -> a``."""
    taken: set[A] = set()
    chosen: dict[B, A] = {}
    for a, b in ranked:
        if a in taken or b in chosen:
            continue
        taken.add(a)
        chosen[b] = a
    return chosen


# -- what a spy reads from its cells (also murmur.sim.end_to_end) -----------------------------


def cells_by_circuit(cells: Iterable[CellRecord]) -> dict[tuple[int, int], list[CellRecord]]:
    grouped: dict[tuple[int, int], list[CellRecord]] = defaultdict(list)
    for cell in cells:
        if cell.circuit >= 0:
            grouped[(cell.spy, cell.circuit)].append(cell)
    return grouped


class BuildTrace(NamedTuple):
    """What a relay reads from how a circuit was built through it (:func:`build_trace`)."""

    extended: bool
    """It read an EXTEND addressed to itself (it is not the last hop)."""
    extensions: int
    """Extensions relayed after its own EXTEND."""
    data: list[CellRecord]
    """Forward cells after the build: messages."""
    first_extension_at: float | None
    """When it received the last cell of the first extension it relayed (None: none)."""


def build_trace(cells: Sequence[CellRecord], hops: int) -> BuildTrace:
    """After its own EXTEND, a hop counts runs of :data:`EXTEND_CELLS` forward cells it cannot
    read that its successor answers with a backward cell (an EXTEND passing through, answered
    by EXTENDED); once ``hops - 2`` have passed, or a run grows longer or is answered at
    another length, every further unreadable forward cell is a message."""
    extended = False
    extensions = 0
    first_extension_at: float | None = None
    run: list[CellRecord] = []
    data: list[CellRecord] = []
    building = True
    for cell in cells:
        if not extended:
            extended = cell.recognized and cell.relay_command == "EXTEND"
            continue
        is_forward = cell.leg == "prev" and cell.command == "RELAY" and not cell.recognized
        if not building:
            if is_forward:
                data.append(cell)
            continue
        if is_forward:
            run.append(cell)
            if extensions >= hops - 2 or len(run) > EXTEND_CELLS:
                building = False
                data += run
        elif cell.leg == "next" and cell.command == "RELAY" and run:
            if len(run) == EXTEND_CELLS:
                extensions += 1
                if first_extension_at is None:
                    first_extension_at = run[-1].time
            else:
                building = False
                data += run
            run = []
    if building:
        data += run
    return BuildTrace(extended, extensions, data, first_extension_at)


def _link_departures(log: AdversaryLog, *, latency_aware: bool) -> list[Event]:
    """Cells a watched node sent that no cell arriving there explains, one event per burst on
    each link; ``latency_aware``: dated when they reached the link's other end (the observer
    times each connection it carries, as a spy pings its own links)."""
    watched = log.watched
    arrivals: dict[int, list[float]] = defaultdict(list)
    for record in log.links:
        if record.dst in watched and record.size_bytes == CELL_RECORD_BYTES:
            arrivals[record.dst].append(record.arrival)
    for times in arrivals.values():
        times.sort()
    started: dict[tuple[int, int], list[float]] = defaultdict(list)
    """(watched node, link peer) -> times it sent a cell that no arriving cell explains."""
    for record in log.links:
        if record.src not in watched or record.size_bytes != CELL_RECORD_BYTES:
            continue
        came = arrivals.get(record.src, [])
        i = bisect.bisect_right(came, record.time)
        if i and record.time - came[i - 1] <= RELAY_GAP_S:
            continue
        started[(record.src, record.dst)].append(record.time)
    events = []
    for (node, peer), times in started.items():
        shift = (log.one_way_s(node, peer) or 0.0) if latency_aware else 0.0
        for start, count in bursts(sorted(times)):
            events.append(Event(start + shift, node, "link", count))
    return events


def forwards_by_circuit(log: AdversaryLog) -> dict[tuple[int, int], list[float]]:
    """By ``(spy, circuit)``: when the spy's relay sent each forward cell on, in order."""
    grouped: dict[tuple[int, int], list[float]] = defaultdict(list)
    for forward in log.forwards:
        grouped[(forward.spy, forward.circuit)].append(forward.time)
    return grouped


def message_departures(trace: BuildTrace, forwarded: Sequence[float]) -> list[tuple[float, int]]:
    """``(left, cells)`` of each message of ``trace``: a burst of cells as they came (a hold
    spreads them apart as they leave), ``left`` when the relay sent its first cell on
    (``forwarded``: when it sent each forward cell on, in order; a cell it never sent on,
    dropped or still held when the log ends, is dated when it came).

    A relay sends a circuit's forward cells on in the order they came, and before the messages
    it forwarded only the extensions passing through (``EXTEND_CELLS`` cells each), so the
    message cells are its forwards from ``trace.extensions * EXTEND_CELLS`` on."""
    left = forwarded[trace.extensions * EXTEND_CELLS :]
    departures = []
    first = 0
    for start, count in bursts(cell.time for cell in trace.data):
        departures.append((left[first] if first < len(left) else start, count))
        first += count
    return departures


def next_leg(cells: Iterable[CellRecord]) -> CellRecord | None:
    """The first cell a relay got on a circuit's ``next`` leg (its peer is the next hop, its
    circuit id the one on their link), or None if none has come yet."""
    return next((c for c in cells if c.leg == "next"), None)


def successor(cells: Iterable[CellRecord]) -> int:
    """The next hop of a circuit as one of its relays sees it (-1: none seen yet)."""
    first = next_leg(cells)
    return -1 if first is None else first.peer


def bursts(times: Iterable[float]) -> list[tuple[float, int]]:
    """``(start, cells)`` of each run of cells closer than ``BURST_S`` (``times`` sorted)."""
    bursts: list[tuple[float, int]] = []
    last = -math.inf
    for t in times:
        if t - last > BURST_S:
            bursts.append((t, 1))
        else:
            start, count = bursts[-1]
            bursts[-1] = (start, count + 1)
        last = t
    return bursts
