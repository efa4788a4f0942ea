"""A spy at hop 2 names the origin when hop 1 was chosen for being near it.

Theory of operation. With near first hops (``--near-first-hops K``, a latency tool that is off
by default) a node draws hop 1 from the K outbound links with the lowest round trip. That
choice can be worked out from outside: whoever knows who dialled whom (the peer graph, which
crawling and topology inference recover in Bitcoin-like networks: Delgado-Segura et al.,
"TxProbe", FC 2019) and roughly where nodes are (IP geolocation:
:meth:`murmur.sim.network.LatencyModel.typical_one_way_s`, the region pair's latency without the
link's own factor) can list the nodes that would take a given relay as hop 1: those that
dialled it and for which it ranks among their K nearest outbound peers. That is a handful of
nodes, where with hop 1 drawn from every relay it is all of them.

A spy at hop 2 of a three-hop circuit knows hop 1 (its predecessor) and the exit (its
successor), and it can tell which transaction the circuit carried: it forwards a message's
cells to the exit at t, the exit publishes at t plus their link's latency, and spies near the
exit date that publication (the earliest of their sightings less their own link's latency,
from the node that handed it over), within the links' jitter
(:func:`murmur.sim.end_to_end.hop_two_guesses`). It then names the likeliest of hop 1's
candidate origins. So the circuits with a spy at hop 2, a tenth of them, each give a
guess among a few nodes, against one among the thousands of departures a hop-1 spy's timing
estimators weigh (:mod:`murmur.sim.timing`).

Nothing here is ground truth: the graph and the regions are the adversary's assumed knowledge
(given to it by the simulator, stated in docs/evaluation.md), positions come from the spies'
cell logs as :mod:`murmur.sim.timing` reads them, and the rule for hop 1 is the protocol's,
which is public. With near first hops off the estimator abstains.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from murmur.sim.adversary import AdversaryLog
from murmur.sim.end_to_end import hop_two_guesses


def near_entry(log: AdversaryLog) -> dict[bytes, int]:
    """Spies at hop 2 pair their circuits' messages with the exits' publications and name, for
    each, the likeliest origin to have chosen the circuit's hop 1 as a near first hop."""
    k = log.near_first_hops
    if not k or not log.outbound:
        return {}
    estimate = log.typical_one_way_s or (lambda a, b: 0.0)
    chooser = NearChooser(log.outbound, estimate, k, log.spies)
    return hop_two_guesses(log, lambda spy, first_hop, circ_id: chooser.likeliest(first_hop))


class NearChooser:
    """Who would take a given relay as a near hop 1, as the adversary can work it out."""

    def __init__(
        self,
        outbound: Sequence[Sequence[int]],
        estimate: Callable[[int, int], float],
        k: int,
        spies: frozenset[int],
    ) -> None:
        self._outbound, self._estimate, self._k = outbound, estimate, k
        self._dialled_by: dict[int, list[int]] = defaultdict(list)
        for v, peers in enumerate(outbound):
            if v not in spies:  # a spy knows it originated nothing
                for w in peers:
                    self._dialled_by[w].append(v)
        self._cache: dict[int, int | None] = {}

    def likeliest(self, first_hop: int) -> int | None:
        """The node likeliest to have ``first_hop`` among its ``k`` nearest outbound peers (ties:
        the lowest index, an order unrelated to the protocol), or None if none can have."""
        if first_hop not in self._cache:
            best, chosen = 0.0, None
            for v in self._dialled_by.get(first_hop, ()):
                chance = self.chance(v, first_hop)
                if chance > best:
                    best, chosen = chance, v
            self._cache[first_hop] = chosen
        return self._cache[first_hop]

    def candidates(self, first_hop: int) -> int:
        """How many nodes have any chance of having chosen ``first_hop``."""
        return sum(self.chance(v, first_hop) > 0 for v in self._dialled_by.get(first_hop, ()))

    def chance(self, v: int, first_hop: int) -> float:
        """How likely ``first_hop`` is among ``v``'s ``k`` nearest outbound peers, by estimated
        latency: certain if fewer than ``k`` are nearer, shared out among equal estimates."""
        mine = self._estimate(v, first_hop)
        nearer = tied = 0
        for w in self._outbound[v]:
            if w == first_hop:
                continue
            theirs = self._estimate(v, w)
            nearer += theirs < mine
            tied += theirs == mine
        free = self._k - nearer
        return 0.0 if free <= 0 else min(1.0, free / (tied + 1))
