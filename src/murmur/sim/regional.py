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
  When the level holds cells at relays (``relay_delay``, public), the delay also holds hop 2's
  hold, uniform on that range: the law is the link's convolved with it
  (:func:`murmur.sim.timing.with_holds`, as ``timing_known_law`` does). Hop 1's hold is not in
  it: the spy dates its event when its own relay sent the cell on, so it knows its hold (as a
  spy that skipped its hold, which nobody could tell, would). A link observer's event, dated
  when the cell reached hop 1, leaves two links and both holds.

Both narrow the set of departures that could explain a transaction, which is what cover and
concurrent traffic rely on. Regions are the adversary's assumed knowledge (given to it by the
simulator, as IP geolocation would), and the estimator abstains when paths are not regional.
"""

from __future__ import annotations

from collections import defaultdict

from murmur.sim.adversary import AdversaryLog
from murmur.sim.timing import (
    DelayLaw,
    DelayModel,
    Event,
    fit_law,
    match_pairs,
    origin_events,
    publications,
    scored_pairs,
    source_laws,
)


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
        ordered = sorted(published[region])
        for score, delay, j, tx_id in scored_pairs(local, ordered, law, log.tx_cells):
            pairs.append((score, delay, indices[j], tx_id))
    pairs.sort()
    return match_pairs(events, pairs)


def held_laws(log: AdversaryLog) -> dict[str, dict[str, DelayLaw]]:
    """Per region and source of events, the delay from an event to its publication: the
    region's link law over the links left to the exit, with the level's relay holds added
    when it has any."""
    return {region: source_laws(law, log) for region, law in regional_laws(log).items()}


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
