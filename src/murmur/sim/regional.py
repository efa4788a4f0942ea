"""Against regional paths: a spy at hop 1 that knows every hop was drawn from the origin's region.

Theory of operation. With regional paths (``--regional-paths``, off by default) a node draws
hop 1, hop 2 and the exit from relays its region map places in its own region, which cuts the
path's latency to a few in-region links. The map is public (it is derived from addresses, as
IP geolocation is), and so is the rule, so the adversary can use both:

* the exit is in the origin's region, so a transaction whose publication the spies place at a
  node of region ``r`` (:func:`murmur.sim.timing.publications`) came from a node of region
  ``r``: departures of nodes elsewhere are not candidates;
* the one link a latency-aware spy at hop 1 cannot measure, hop 2 to the exit, is an
  in-region link, so its law is that of region ``r``'s links (fitted to the spies' own links
  inside ``r``), far narrower than the network's mix that ``timing_known_law`` assumes.
  When the level holds cells at relays (``relay_delay``, public), the delay also holds hop 1's
  and hop 2's holds, each uniform on that range: the law is the link's convolved with both
  (:class:`HeldLaw`). The spy's own hold is one of them, because the log dates a cell when it
  reached the spy; a spy that skipped its hold, which nobody could tell, would know it exactly
  (not modelled: it would narrow the law to one hold).

Both narrow the set of departures that could explain a transaction, which is what cover and
concurrent traffic rely on. Regions are the adversary's assumed knowledge (given to it by the
simulator, as IP geolocation would), and the estimator abstains when paths are not regional.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from murmur.sim.adversary import AdversaryLog
from murmur.sim.timing import (
    WINDOW_S,
    DelayModel,
    Event,
    fit_law,
    match_pairs,
    origin_events,
    publications,
    scored_pairs,
)

GRID_STEP_S = 0.0005
"""Resolution of a held law's density (half a millisecond, far below any link's spread)."""
HOLDS_BEFORE_EXIT = 2
"""Relays that hold a cell between the spy's log and the exit: hop 1 (the spy) and hop 2."""


class HeldLaw:
    """The delay of a link plus ``holds`` independent uniform holds on ``[low_s, high_s]``,
    as a density on a grid over the estimators' window; scored like :class:`DelayModel`."""

    __slots__ = ("_density",)

    def __init__(self, link: DelayModel, low_s: float, high_s: float, holds: int) -> None:
        centres = (np.arange(int(WINDOW_S / GRID_STEP_S)) + 0.5) * GRID_STEP_S
        z = (np.log(centres) - link.mu) / link.sigma
        density = np.exp(-0.5 * z * z) / (centres * link.sigma * math.sqrt(2.0 * math.pi))
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


def timing_regional(log: AdversaryLog) -> dict[bytes, int]:
    """``timing_known_law`` restricted to departures from the publication's region, under the
    law of that region's links."""
    regions = log.regions
    if not regions:
        return {}
    laws = held_laws(log)
    events = origin_events(log, latency_aware=True)
    by_region: dict[str, list[int]] = defaultdict(list)
    for i, event in enumerate(events):
        by_region[regions[event.node]].append(i)
    published: dict[str, list[tuple[float, bytes]]] = defaultdict(list)
    for tx_id, publication in publications(log).items():
        published[regions[publication.node]].append((publication.time, tx_id))
    pairs: list[tuple[float, float, int, bytes]] = []
    for region, indices in by_region.items():
        law = laws.get(region)
        if law is None or region not in published:
            continue
        local: list[Event] = [events[i] for i in indices]
        models = {event.source: law for event in local}
        ordered = sorted(published[region])
        for score, delay, j, tx_id in scored_pairs(local, ordered, models, log.tx_cells):
            pairs.append((score, delay, indices[j], tx_id))
    pairs.sort()
    return match_pairs(events, pairs)


def held_laws(log: AdversaryLog) -> dict[str, DelayModel | HeldLaw]:
    """Per region, the delay from a cell reaching hop 2 to its publication: the region's link
    law, with the level's relay holds added when it has any."""
    low, high = log.relay_delay_s
    laws: dict[str, DelayModel | HeldLaw] = {}
    for region, law in regional_laws(log).items():
        laws[region] = law if high <= 0.0 else HeldLaw(law, low, high, HOLDS_BEFORE_EXIT)
    return laws


def regional_laws(log: AdversaryLog) -> dict[str, DelayModel]:
    """Per region, the law of the spies' own links with both ends in it (where they measured
    at least two)."""
    latencies: dict[str, list[float]] = defaultdict(list)
    for (a, b), one_way_s in log.link_latency_s.items():
        region = log.regions[a]
        if log.regions[b] == region:
            latencies[region].append(one_way_s)
    laws = {region: fit_law(values) for region, values in latencies.items()}
    return {region: law for region, law in laws.items() if law is not None}
