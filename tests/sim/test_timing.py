"""The timing-correlation estimator on hand-made spy logs: position from the build, then delays."""

from __future__ import annotations

import math

import pytest

from murmur.sim.adversary import AdversaryLog, CellRecord, ForwardRecord, LinkRecord, Sighting
from murmur.sim.timing import (
    CELL_RECORD_BYTES,
    GRID_STEP_S,
    WINDOW_S,
    DelayLaw,
    DelayModel,
    Event,
    circuit_positions,
    correlate,
    hop_one_circuits,
    learn_delay,
    link_law,
    origin_events,
    source_laws,
    timing,
    timing_intersection,
    timing_known_law,
)
from murmur.wire.cells import CREATE_CELLS, EXTEND_CELLS

ORIGIN, SPY, NEXT = 7, 3, 9


def cell(
    t: float, peer: int, leg: str, command: str, *, recognized: bool = False, what: str = "EXTEND"
) -> CellRecord:
    relay_command = what if recognized else None
    return CellRecord(t, SPY, peer, 5, 1, leg, command, recognized, relay_command)


def own_build(start: float) -> list[CellRecord]:
    """A hop's own part of a build: the CREATE cells, then the cells of its EXTEND (the tap can
    name only the last, which makes the relay send CREATE on), then the next hop's CREATED."""
    creates = [cell(start + i / 1000, ORIGIN, "prev", "CREATE") for i in range(CREATE_CELLS)]
    extend = [
        cell(start + 0.2 + i / 1000, ORIGIN, "prev", "RELAY", recognized=True, what="?")
        for i in range(EXTEND_CELLS - 1)
    ]
    extend.append(cell(start + 0.21, ORIGIN, "prev", "RELAY", recognized=True))
    return [*creates, *extend, cell(start + 0.3, NEXT, "next", "CREATED")]


def hop_one_build(data_at: list[float]) -> list[CellRecord]:
    """What hop 1 of a three-hop circuit sees: CREATE, its EXTEND, the third hop's extension
    passing through (EXTEND_CELLS forward, then EXTENDED backward), then one cell per message."""
    passing = [cell(1.5 + i / 1000, ORIGIN, "prev", "RELAY") for i in range(EXTEND_CELLS)]
    cells = [*own_build(1.0), *passing, cell(1.8, NEXT, "next", "RELAY")]
    return cells + [cell(t, ORIGIN, "prev", "RELAY") for t in data_at]


def hop_one_forwards(
    released: list[float], spy: int = SPY, circuit: int = 1
) -> list[ForwardRecord]:
    """What the relay of :func:`hop_one_build`'s spy sent on: the extension passing through,
    as it came, then the message cells at ``released``."""
    passing = [1.5 + i / 1000 for i in range(EXTEND_CELLS)]
    return [ForwardRecord(t, spy, circuit) for t in passing + released]


def log_with(cells: list[CellRecord], firsts: dict[bytes, float]) -> AdversaryLog:
    log = AdversaryLog(spies=frozenset({SPY}), tapped=frozenset(), cells=cells, hops=3)
    for tx_id, t in firsts.items():
        log.first[tx_id] = Sighting(t, SPY, tx_id, NEXT, "gossip")
    return log


def test_hop_one_knows_its_position_from_the_build() -> None:
    log = log_with(hop_one_build([5.0]), {})
    assert circuit_positions(log) == {(SPY, 1): (1, ORIGIN)}
    assert hop_one_circuits(log) == {(SPY, 1): ORIGIN}
    assert origin_events(log) == [(5.0, ORIGIN, "hop1", 1)]


def test_hop_two_sees_no_extension_pass_and_is_not_hop_one() -> None:
    cells = [*own_build(1.0), cell(5.0, ORIGIN, "prev", "RELAY")]
    log = log_with(cells, {b"tx": 5.3})
    assert circuit_positions(log) == {(SPY, 1): (2, ORIGIN)}
    assert origin_events(log) == []
    assert timing(log) == {}


def test_a_message_as_long_as_an_extend_but_unanswered_is_no_extension() -> None:
    """Hop 2 relays a message of EXTEND_CELLS cells, then another: nothing came back, so
    neither was an extension passing through (it stays hop 2)."""
    message = [cell(5.0 + i / 1000, ORIGIN, "prev", "RELAY") for i in range(EXTEND_CELLS)]
    cells = [*own_build(1.0), *message, cell(9.0, ORIGIN, "prev", "RELAY")]
    assert circuit_positions(log_with(cells, {})) == {(SPY, 1): (2, ORIGIN)}


def test_a_run_answered_at_another_length_is_no_extension() -> None:
    cells = [
        *own_build(1.0),
        cell(5.0, ORIGIN, "prev", "RELAY"),
        cell(5.1, NEXT, "next", "RELAY"),  # a reply, say: one cell out, one back
    ]
    assert circuit_positions(log_with(cells, {})) == {(SPY, 1): (2, ORIGIN)}


def test_the_exit_reads_data_not_an_extend() -> None:
    cells = [
        cell(1.0, ORIGIN, "prev", "CREATE"),
        CellRecord(5.0, SPY, ORIGIN, 5, 1, "prev", "RELAY", True, "DATA"),
    ]
    assert circuit_positions(log_with(cells, {})) == {(SPY, 1): (3, ORIGIN)}


def test_a_lone_message_is_attributed_to_the_predecessor_of_hop_one() -> None:
    log = log_with(hop_one_build([5.0]), {b"tx": 5.25})
    assert timing(log) == {b"tx": ORIGIN}


def test_cells_of_one_message_are_one_event_that_counts_them() -> None:
    log = log_with(hop_one_build([5.0, 5.001, 5.03, 9.0]), {})
    assert origin_events(log) == [(5.0, ORIGIN, "hop1", 3), (9.0, ORIGIN, "hop1", 1)]


def test_a_hop_one_event_is_dated_when_the_spy_sent_its_first_cell_on() -> None:
    """The level holds cells. A message's two cells came at 5.0 and 5.03 and left at 5.02 and
    5.08 (further apart than a burst: the holds spread them), a one-cell message came at 9.0
    and left at 9.01. The spy tells the messages apart by when their cells came and dates each
    when its first cell left (latency-aware, when that cell reached hop 2 50 ms later)."""
    log = log_with(hop_one_build([5.0, 5.03, 9.0]), {})
    log.forwards = hop_one_forwards([5.02, 5.08, 9.01])
    log.link_latency_s = {(SPY, NEXT): 0.05}
    assert origin_events(log) == [(5.02, ORIGIN, "hop1", 2), (9.01, ORIGIN, "hop1", 1)]
    times = [e.time for e in origin_events(log, latency_aware=True)]
    assert times == pytest.approx([5.07, 9.06])


def test_a_cell_the_spy_never_sent_on_is_dated_when_it_came() -> None:
    """The spy's relay sent the first message on at 5.02 but not the second (dropped, or still
    held when the log ended): the origin sent it all the same, at 9.0 as far as the spy knows."""
    log = log_with(hop_one_build([5.0, 9.0]), {})
    log.forwards = hop_one_forwards([5.02])
    assert origin_events(log) == [(5.02, ORIGIN, "hop1", 1), (9.0, ORIGIN, "hop1", 1)]


def test_a_departure_of_another_size_cannot_have_carried_the_transaction() -> None:
    """Node 1's two-cell burst is timed best for the transaction, but a one-cell transaction
    cannot have left in it: the spy takes node 2's worse-timed one-cell departure instead."""
    events = [Event(5.0, 1, "hop1", 2), Event(5.4, 2, "hop1", 1)]
    law = {"hop1": DelayModel(math.log(0.9), 0.3)}
    assert correlate(events, {b"tx": 5.9}, law) == {b"tx": 1}
    assert correlate(events, {b"tx": 5.9}, law, cells={b"tx": 1}) == {b"tx": 2}
    assert correlate(events, {b"tx": 5.9}, law, cells={b"tx": 2}) == {b"tx": 1}


def test_the_delay_law_is_learnt_from_unlabelled_pairs() -> None:
    # Events every 3 s, each matched 0.2 s later, plus unrelated sightings around them.
    events = [10.0 + 3.0 * k for k in range(40)]
    sightings = sorted(
        [t + 0.2 for t in events] + [t + 0.9 + 0.37 * (k % 5) for k, t in enumerate(events)]
    )
    model = learn_delay(events, sightings)
    assert abs(model.density(0.2) - max(model.density(d / 100) for d in range(1, 300))) < 1e-9
    assert model.score(0.2) > 1.0 > model.score(2.5)


def test_each_event_explains_one_transaction_at_most() -> None:
    log = log_with(hop_one_build([5.0]), {b"a": 5.2, b"b": 5.25})
    assert len(timing(log)) == 1


def test_a_link_observer_sees_an_origin_start_a_message() -> None:
    size = CELL_RECORD_BYTES
    log = AdversaryLog(
        spies=frozenset(),
        tapped=frozenset(),
        watched=frozenset({ORIGIN}),
        links=[
            LinkRecord(2.0, 1, ORIGIN, size, 2.05),  # a cell arrives...
            LinkRecord(2.051, ORIGIN, 4, size, 2.1),  # ...and is relayed on at once
            LinkRecord(6.0, ORIGIN, 4, size, 6.05),  # a message the origin starts itself,
            LinkRecord(6.002, ORIGIN, 4, size, 6.052),  # two cells long
            LinkRecord(7.0, ORIGIN, 4, 300, 7.05),  # not a cell
        ],
        hops=3,
    )
    assert origin_events(log) == [(6.0, ORIGIN, "link", 2)]
    log.first[b"tx"] = Sighting(6.3, 2, b"tx", 4, "gossip")
    assert timing(log) == {b"tx": ORIGIN}


def tapped_origin_log(published_at: float) -> AdversaryLog:
    """No spy on the circuit: an observer taps the origin, whose one-cell message left at 5.0
    on its 50 ms link to hop 1 (which the observer timed); a spy 50 ms from the exit saw the
    transaction 50 ms after the exit published it at ``published_at``."""
    size = CELL_RECORD_BYTES
    log = AdversaryLog(
        spies=frozenset({SPY}),
        tapped=frozenset(),
        watched=frozenset({ORIGIN}),
        links=[LinkRecord(5.0, ORIGIN, 4, size, 5.05)],
        hops=3,
    )
    log.link_latency_s = {(4, ORIGIN): 0.05, (SPY, NEXT): 0.05, (1, 2): 0.06, (2, 4): 0.04}
    sighting = Sighting(published_at + 0.05, SPY, b"tx", NEXT, "gossip")
    log.first[b"tx"] = sighting
    log.sightings.append(sighting)
    return log


def test_a_link_observer_dates_a_departure_where_its_link_ends() -> None:
    log = tapped_origin_log(5.15)
    assert origin_events(log) == [(5.0, ORIGIN, "link", 1)]
    [event] = origin_events(log, latency_aware=True)
    assert event.source == "link" and abs(event.time - 5.05) < 1e-9


def test_the_known_law_leaves_two_links_after_a_link_observers_event() -> None:
    """The cell reached hop 1 at 5.05; hop 1 to hop 2 and hop 2 to the exit are two links of
    about 50 ms, so a publication at 5.15 fits and one at 5.10 (one link: no path) does not."""
    assert timing_known_law(tapped_origin_log(5.15)) == {b"tx": ORIGIN}
    assert timing_known_law(tapped_origin_log(5.10)) == {}


def known_law_log(sighted_at: float, released: float = 5.0) -> AdversaryLog:
    """The origin's one-cell message came to the spy at 5.0, left at ``released`` (at once
    unless the level holds cells) and reached hop 2 50 ms later; a spy 50 ms from the exit
    saw the transaction at ``sighted_at``."""
    log = log_with(hop_one_build([5.0]), {})
    log.forwards = hop_one_forwards([released])
    log.link_latency_s = {(SPY, NEXT): 0.05, (1, 2): 0.06, (2, 4): 0.04}
    sighting = Sighting(sighted_at, SPY, b"tx", NEXT, "gossip")
    log.first[b"tx"] = sighting
    log.sightings.append(sighting)
    return log


def test_a_known_link_law_attributes_without_learning_from_the_run() -> None:
    log = known_law_log(5.15)
    law = link_law(log)
    assert law is not None and abs(math.exp(law.mu) - 0.05) < 0.005
    # hop 2 got the cell at 5.05; the exit published at 5.15 - 0.05 = 5.10: one link later
    assert timing_known_law(log) == {b"tx": ORIGIN}
    assert timing_known_law(known_law_log(8.0)) == {}  # three seconds is no link's latency


def test_the_known_law_holds_hop_twos_hold_after_a_hop_one_event() -> None:
    """Relays hold each cell 200-300 ms (public, like every setting of the level). The spy held
    the cell 250 ms itself (it left at 5.25 and reached hop 2 at 5.30): hop 2's hold and one
    link put about 300 ms between that and the publication at 5.60, which no link alone
    explains. The spy knows its own hold, so a cell it sent on at once leaves 550 ms, more than
    hop 2 can hold: that publication is not its message."""
    held = known_law_log(5.65, released=5.25)
    assert timing_known_law(held) == {}
    held.relay_delay_s = (0.2, 0.3)
    assert timing_known_law(held) == {b"tx": ORIGIN}
    at_once = known_law_log(5.65)
    at_once.relay_delay_s = (0.2, 0.3)
    assert timing_known_law(at_once) == {}
    assert timing_known_law(known_law_log(5.15)) == {b"tx": ORIGIN}  # no holds: one link


def mean_delay(law: DelayLaw) -> float:
    """The mean of a law's delay (its score is its density times the window)."""
    grid = [(k + 0.5) * GRID_STEP_S for k in range(int(1.0 / GRID_STEP_S))]
    return sum(d * law.score(d) / WINDOW_S * GRID_STEP_S for d in grid)


def test_a_hop_one_event_leaves_hop_twos_hold_and_a_link_observers_both() -> None:
    """Holds of 0-30 ms (15 ms on average) and links of about 50 ms: a hop-1 spy knows its own
    hold, so hop 2's hold and one link are left after its event; a link observer's event, at
    hop 1, leaves both holds and two links."""
    link = DelayModel(math.log(0.05), 0.1)
    one_link = 0.05 * math.exp(0.1**2 / 2)
    log = log_with([], {})
    log.relay_delay_s = (0.0, 0.03)
    laws = source_laws(link, log)
    assert mean_delay(laws["hop1"]) == pytest.approx(one_link + 0.015, abs=0.001)
    assert mean_delay(laws["link"]) == pytest.approx(2 * one_link + 0.03, abs=0.001)


def test_the_intersection_estimator_pools_evidence_over_a_repeated_origin() -> None:
    """Two origins, a hop-1 spy on each: every transaction is about as well explained by a
    departure of either (the other's a little better, each alone), but half of the other's
    departures explain nothing (cover) while the origin's keep explaining transactions:
    pooled over the run, the origin wins every one."""
    other, other_spy = 8, 4

    def circuit_cells(spy: int, origin: int, circuit: int, data_at: list[float]) -> list:
        return [
            c._replace(spy=spy, peer=origin if c.peer == ORIGIN else c.peer, circuit=circuit)
            for c in hop_one_build(data_at)
        ]

    real = [10.0 * k for k in range(1, 11)]
    near_misses = [t - 0.002 for t in real]  # delay 0.052 s: nearer the law's mode than 0.05
    cover = [t + 5.0 for t in real]
    log = log_with(
        circuit_cells(SPY, ORIGIN, 1, real)
        + circuit_cells(other_spy, other, 2, sorted(near_misses + cover)),
        {},
    )
    log.link_latency_s = {(SPY, NEXT): 0.05, (other_spy, NEXT): 0.05, (1, 2): 0.06}
    for k, t in enumerate(real):
        sighting = Sighting(t + 0.15, SPY, bytes([k]), NEXT, "gossip")
        log.first[sighting.tx_id] = sighting
        log.sightings.append(sighting)
    assert set(timing_known_law(log).values()) == {other}
    assert timing_intersection(log) == {bytes([k]): ORIGIN for k in range(10)}


def test_a_fellow_spys_own_departures_do_not_compete_with_an_honest_origins() -> None:
    """Spy 4 is hop 1 of a circuit spy 8 built: its departure at 5.003 explains the transaction
    a little better than the honest origin's at 5.0, but the adversary knows spy 8 sent only
    cover, so the honest origin is named (and a spy never is)."""
    fellow, fellow_hop_one = 8, 4
    fellow_cells = [
        c._replace(spy=fellow_hop_one, peer=fellow if c.peer == ORIGIN else c.peer, circuit=2)
        for c in hop_one_build([5.003])
    ]
    log = known_law_log(5.15)
    log.cells = sorted(log.cells + fellow_cells)
    log.spies = frozenset({SPY, fellow_hop_one, fellow})
    log.link_latency_s[(fellow_hop_one, NEXT)] = 0.05
    assert {e.node for e in origin_events(log)} == {ORIGIN}
    assert timing_known_law(log) == {b"tx": ORIGIN}
    assert timing_intersection(log) == {b"tx": ORIGIN}
