"""A hop-1 spy against regional paths, on hand-made spy logs."""

from __future__ import annotations

import math

from murmur.sim.adversary import AdversaryLog, CellRecord, Sighting
from murmur.sim.regional import regional_laws, timing_regional
from murmur.sim.timing import (
    GRID_STEP_S,
    WINDOW_S,
    DelayModel,
    PathLaw,
    timing_known_law,
)
from tests.sim.test_timing import NEXT, ORIGIN, SPY, hop_one_build, hop_one_forwards, log_with

OTHER, OTHER_SPY, EXIT = 8, 4, 12
"""A second sender (in another region) behind a second hop-1 spy, and the exit that
publishes the transaction (in ORIGIN's region)."""
REGIONS = {3: "eu", 7: "eu", 9: "eu", 10: "eu", 11: "eu", 12: "eu", 4: "as", 8: "as", 13: "as"}


def circuit_cells(spy: int, origin: int, circuit: int, data_at: list[float]) -> list[CellRecord]:
    return [
        c._replace(spy=spy, peer=origin if c.peer == ORIGIN else c.peer, circuit=circuit)
        for c in hop_one_build(data_at)
    ]


def two_senders_log(regions: dict[int, str], released: float = 5.0) -> AdversaryLog:
    """ORIGIN's cell came to its spy at 5.0 and left at ``released`` (at once unless the level
    holds cells), reaching hop 2 10 ms later; OTHER's reached hop 2 at 5.014. The exit
    published at 5.026 (a spy one 12 ms link away saw it at 5.038). OTHER's delay, 12 ms, is
    the likelier under any law, but OTHER is not in the exit's region."""
    log = log_with(
        circuit_cells(SPY, ORIGIN, 1, [5.0]) + circuit_cells(OTHER_SPY, OTHER, 2, [5.004]), {}
    )
    log.forwards = sorted(
        hop_one_forwards([released]) + hop_one_forwards([5.004], OTHER_SPY, circuit=2)
    )
    log.link_latency_s = {
        (SPY, NEXT): 0.010,
        (OTHER_SPY, NEXT): 0.010,
        (SPY, EXIT): 0.012,
        (10, 11): 0.014,
        (OTHER_SPY, 13): 0.030,
        (SPY, 13): 0.110,
    }
    sighting = Sighting(5.038, SPY, b"tx", EXIT, "gossip")
    log.first[b"tx"] = sighting
    log.sightings.append(sighting)
    log.regions = regions
    return log


def test_a_departure_from_another_region_is_no_candidate() -> None:
    log = two_senders_log(REGIONS)
    assert timing_known_law(log) == {b"tx": OTHER}
    assert timing_regional(log) == {b"tx": ORIGIN}


def test_each_region_has_the_law_of_the_spies_links_inside_it() -> None:
    laws = regional_laws(two_senders_log(REGIONS))
    assert set(laws) == {"eu"}  # one link inside "as", one across: no law there
    assert abs(math.exp(laws["eu"].mu) - 0.0115) < 0.001
    assert laws["eu"].sigma < 0.2


def test_it_abstains_when_paths_are_not_regional() -> None:
    assert timing_regional(two_senders_log({})) == {}


def published_late(released: float) -> AdversaryLog:
    """:func:`two_senders_log` with the publication at 5.072 (seen at 5.084)."""
    log = two_senders_log(REGIONS, released)
    log.sightings[0] = log.first[b"tx"] = Sighting(5.084, SPY, b"tx", EXIT, "gossip")
    return log


def test_relay_holds_widen_the_law_by_hop_twos_hold() -> None:
    """The level holds cells 0-30 ms. The spy held ORIGIN's cell 25 ms (it reached hop 2 at
    5.035): a publication 37 ms later (12 ms of link, 25 ms of hop 2's hold) is no in-region
    link alone, but is one with hop 2's hold. Had the spy sent the cell on at once, 62 ms
    would be far more than one link and one hold: the spy knows its own hold, which is not in
    the law."""
    log = published_late(5.025)
    assert timing_regional(log) == {}
    log.relay_delay_s = (0.0, 0.03)
    assert timing_regional(log) == {b"tx": ORIGIN}
    at_once = published_late(5.0)
    at_once.relay_delay_s = (0.0, 0.03)
    assert timing_regional(at_once) == {}


def test_a_held_law_is_the_link_law_shifted_by_the_mean_holds() -> None:
    link = DelayModel(math.log(0.012), 0.1)
    held = PathLaw(link, 0.0, 0.03, holds=2)
    grid = [k * GRID_STEP_S + GRID_STEP_S / 2 for k in range(int(0.2 / GRID_STEP_S))]
    weights = [held.score(d) / WINDOW_S * GRID_STEP_S for d in grid]
    assert abs(sum(weights) - 1.0) < 0.01
    mean = sum(d * w for d, w in zip(grid, weights, strict=True))
    assert abs(mean - (0.012 * math.exp(0.1**2 / 2) + 0.03)) < 0.001
    assert held.score(0.005) < 1e-9 and held.score(WINDOW_S) == 0.0
