"""Estimators: each maps the adversary's log to a guessed origin per transaction.

Theory of operation: an estimator is a plain function ``AdversaryLog -> {tx_id: node}``;
transactions it cannot place are left out (they count as misses). New estimators drop in by
adding a function to :data:`ESTIMATORS`; :data:`PROTOCOL_ESTIMATORS` says which apply to which
protocol (``first_spy`` always does).

* ``first_spy`` (Fanti et al.): the node that delivered the transaction to the first spy to see
  it, in any phase. Against diffusion this is the paper's first-spy estimator; against
  Dandelion++ it is too, whenever the first spy sits on the stem.
* ``stem_predecessor``: the predecessor of the first spy that saw the transaction *on the stem*
  (the paper's Dandelion++ view: a stem spy's predecessor is the best local guess). It abstains
  on transactions no spy saw on the stem, where ``first_spy`` would name a diffusion neighbour of
  the fluff node; abstaining keeps those wrong guesses out of the other nodes' candidate sets,
  trading recall for precision.
* ``timing`` (:mod:`murmur.sim.timing`): against onion circuits, a spy that knows it is hop 1
  (or a link observer on the origin) sees a cell leave the origin at t; the estimator pairs it
  with the transaction's first gossip sighting at t + delta, under the delay law it learns from
  the run's own unlabelled observations. ``timing_latency`` adds what spies know of their own
  links' latencies, which narrows the delay to a single link; ``timing_known_law`` also knows
  that link's latency law in advance.
* ``timing_end_to_end`` (:mod:`murmur.sim.end_to_end`) needs a spy at both ends of a circuit
  and then pairs the two through their shared middle relay, per message;
  ``timing_circuit_pairing`` pairs the same two ends once per circuit, when it is built, so
  delays relays add to messages do not matter to it. ``timing_entry_middle`` joins spies at
  hop 1 and hop 2 by the circuit id on their shared link and pairs hop 2's messages with the
  exit's publications; ``circuit_collusion`` is all three together.
* ``near_entry`` (:mod:`murmur.sim.near_entry`): with near first hops, a spy at hop 2 pairs its
  circuit's messages with the exit's publications and names the node likeliest to have chosen
  hop 1 for being near it (from the peer graph and where nodes are); it abstains otherwise.
* ``timing_regional`` (:mod:`murmur.sim.regional`): with regional paths, ``timing_known_law``
  restricted to departures from the publication's region, under that region's link law; it
  abstains otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

from murmur.sim.adversary import AdversaryLog
from murmur.sim.end_to_end import (
    circuit_collusion,
    timing_circuit_pairing,
    timing_end_to_end,
    timing_entry_middle,
)
from murmur.sim.near_entry import near_entry
from murmur.sim.regional import timing_regional
from murmur.sim.timing import timing, timing_intersection, timing_known_law, timing_latency

Estimator = Callable[[AdversaryLog], dict[bytes, int]]


def first_spy(log: AdversaryLog) -> dict[bytes, int]:
    return {tx_id: sighting.sender for tx_id, sighting in log.first.items()}


def stem_predecessor(log: AdversaryLog) -> dict[bytes, int]:
    return {tx_id: s.sender for tx_id, s in log.first_by_phase.get("stem", {}).items()}


ESTIMATORS: dict[str, Estimator] = {
    "first_spy": first_spy,
    "stem_predecessor": stem_predecessor,
    "timing": timing,
    "timing_latency": timing_latency,
    "timing_known_law": timing_known_law,
    "timing_intersection": timing_intersection,
    "timing_end_to_end": timing_end_to_end,
    "timing_circuit_pairing": timing_circuit_pairing,
    "timing_entry_middle": timing_entry_middle,
    "circuit_collusion": circuit_collusion,
    "near_entry": near_entry,
    "timing_regional": timing_regional,
}

PROTOCOL_ESTIMATORS: dict[str, tuple[str, ...]] = {
    "diffusion": ("first_spy",),
    "dandelion": ("first_spy", "stem_predecessor"),
    "onion": (
        "first_spy",
        "timing",
        "timing_latency",
        "timing_known_law",
        "timing_intersection",
        "timing_end_to_end",
        "timing_circuit_pairing",
        "timing_entry_middle",
        "circuit_collusion",
        "near_entry",
        "timing_regional",
    ),
    "fastpath": ("first_spy",),
}
