"""A spy at hop 2 against near first hops, on hand-made spy logs."""

from __future__ import annotations

from murmur.sim.adversary import AdversaryLog, CellRecord, Sighting
from murmur.sim.near_entry import near_entry
from murmur.wire.cells import CREATE_CELLS, EXTEND_CELLS
from tests.sim.test_timing import SPY, cell

FIRST, EXIT, NEIGHBOUR = 7, 9, 4
"""Hop 1 of the circuit, its exit, and a spy that is a gossip neighbour of the exit."""
CHOOSER, OTHER = 20, 21
"""Two nodes that dialled hop 1: it is among CHOOSER's three nearest, not among OTHER's."""
NEAR, FAR = 0.012, 0.1


def hop_two_cells(data_at: list[float]) -> list[CellRecord]:
    """Hop 2 of a three-hop circuit: CREATE from hop 1, its own EXTEND (to the exit), the
    exit's CREATED, then one forward cell per message."""
    creates = [cell(1.0 + i / 1000, FIRST, "prev", "CREATE") for i in range(CREATE_CELLS)]
    extend = [
        cell(1.2 + i / 1000, FIRST, "prev", "RELAY", recognized=True, what="?")
        for i in range(EXTEND_CELLS - 1)
    ]
    extend.append(cell(1.21, FIRST, "prev", "RELAY", recognized=True))
    created = cell(1.4, EXIT, "next", "CREATED")
    data = [cell(t, FIRST, "prev", "RELAY") for t in data_at]
    return [*creates, *extend, created, *data]


def outbound() -> tuple[tuple[int, ...], ...]:
    peers: list[tuple[int, ...]] = [() for _ in range(40)]
    peers[CHOOSER] = (FIRST, 30, 31, 32)
    peers[OTHER] = (FIRST, 33, 34, 35, 36)
    return tuple(peers)


def estimate(a: int, b: int) -> float:
    """CHOOSER is near hop 1 and far from its other peers; OTHER has three nearer peers."""
    if {a, b} == {CHOOSER, FIRST}:
        return NEAR
    if {a, b} == {OTHER, FIRST}:
        return 0.05
    return 0.01 if OTHER in (a, b) else FAR


def near_log(*, near_first_hops: int = 3) -> AdversaryLog:
    """Hop 2 forwards a message at 5.0; it reaches the exit 80 ms later, at 5.08, and the
    exit's gossip reaches a neighbouring spy 50 ms after that."""
    log = AdversaryLog(
        spies=frozenset({SPY, NEIGHBOUR}),
        tapped=frozenset(),
        cells=hop_two_cells([5.0]),
        hops=3,
        outbound=outbound(),
        typical_one_way_s=estimate,
        near_first_hops=near_first_hops,
    )
    log.measured(SPY, EXIT, 0.08)
    log.measured(NEIGHBOUR, EXIT, 0.05)
    log.measured(NEIGHBOUR, 12, 0.02)
    log.sightings.append(Sighting(5.135, NEIGHBOUR, b"tx", EXIT, "gossip"))
    return log


def test_hop_two_names_the_node_that_would_take_hop_one_as_a_near_first_hop() -> None:
    assert near_entry(near_log()) == {b"tx": CHOOSER}


def test_without_near_first_hops_hop_one_says_nothing_and_it_abstains() -> None:
    assert near_entry(near_log(near_first_hops=0)) == {}


def test_only_a_node_with_fewer_than_k_nearer_peers_is_a_candidate() -> None:
    """With one near first hop, CHOOSER still qualifies (nothing is nearer than hop 1) and
    OTHER does not; with hop 1 further from CHOOSER than two of its peers, neither does."""
    log = near_log(near_first_hops=1)
    assert near_entry(log) == {b"tx": CHOOSER}
    log.typical_one_way_s = lambda a, b: 0.2 if {a, b} == {CHOOSER, FIRST} else estimate(a, b)
    assert near_entry(log) == {}


def test_a_spy_does_not_suspect_another_spy() -> None:
    log = near_log()
    log.spies = log.spies | {CHOOSER}
    assert near_entry(log) == {}


def test_the_exit_is_the_earliest_sender_the_spies_can_date() -> None:
    """Another spy had the transaction from node 12 before the exit could have sent it: the
    exit only relayed it, so hop 2's message was something else (cover)."""
    log = near_log()
    log.sightings.append(Sighting(5.06, NEIGHBOUR, b"tx", 12, "gossip"))
    assert near_entry(log) == {}


def test_the_publication_must_follow_within_the_links_jitter_and_fit_the_size() -> None:
    late = near_log()
    late.sightings[-1] = Sighting(5.3, NEIGHBOUR, b"tx", EXIT, "gossip")
    assert near_entry(late) == {}
    sized = near_log()
    sized.tx_cells[b"tx"] = 2  # the message hop 2 forwarded was one cell
    assert near_entry(sized) == {}


def test_an_exit_that_is_a_spy_dates_its_own_publication() -> None:
    log = near_log()
    log.spies = log.spies | {EXIT}
    log.sightings[-1] = Sighting(5.085, EXIT, b"tx", SPY, "exit")
    assert near_entry(log) == {b"tx": CHOOSER}
