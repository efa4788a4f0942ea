"""Spies at both ends of a circuit, on hand-made spy logs: per message and at the build."""

from __future__ import annotations

from murmur.sim.adversary import AdversaryLog, CellRecord, InboundLink, Sighting
from murmur.sim.end_to_end import (
    circuit_collusion,
    timing_circuit_pairing,
    timing_end_to_end,
    timing_entry_middle,
)
from murmur.wire.cells import CREATE_CELLS, EXTEND_CELLS
from tests.sim.test_timing import NEXT, ORIGIN, SPY, cell, hop_one_build, log_with

EXIT, OTHER_MIDDLE, NEIGHBOUR = 11, 12, 4


def test_entry_and_exit_spies_pair_through_their_shared_middle_relay() -> None:
    """Hop 1 saw a message reach the middle relay at 5.05 (its link: 50 ms); the exit got a
    transaction from that relay at 5.13 over an 80 ms link: nothing in between, so it names
    the origin. Another relay, or a residual beyond the links' jitter, names no one."""
    log = log_with(hop_one_build([5.0, 9.0]), {})
    log.measured(SPY, NEXT, 0.05)
    log.measured(EXIT, NEXT, 0.08)
    log.measured(EXIT, OTHER_MIDDLE, 0.08)
    log.sightings += [
        Sighting(5.135, EXIT, b"tx", NEXT, "exit"),
        Sighting(9.13, EXIT, b"elsewhere", OTHER_MIDDLE, "exit"),
        Sighting(12.0, EXIT, b"late", NEXT, "exit"),
    ]
    assert timing_end_to_end(log) == {b"tx": ORIGIN}


def test_end_to_end_takes_the_closest_departure_once_and_needs_the_size_to_fit() -> None:
    log = log_with(hop_one_build([5.0, 5.06]), {})
    log.measured(SPY, NEXT, 0.05)
    log.measured(EXIT, NEXT, 0.08)
    log.sightings += [Sighting(5.19, EXIT, b"tx", NEXT, "exit")]
    assert timing_end_to_end(log) == {b"tx": ORIGIN}
    log.tx_cells[b"tx"] = 2  # the transaction takes two cells; each departure was one
    assert timing_end_to_end(log) == {}


def test_end_to_end_allows_for_the_delays_the_level_adds_at_hop_one_and_the_middle() -> None:
    """With relays holding each cell 0-50 ms, the pair's residual is two such delays: 70 ms
    here, beyond the links' jitter but inside the level's public range."""
    log = log_with(hop_one_build([5.0]), {})
    log.measured(SPY, NEXT, 0.05)
    log.measured(EXIT, NEXT, 0.08)
    log.sightings += [Sighting(5.2, EXIT, b"tx", NEXT, "exit")]
    assert timing_end_to_end(log) == {}
    log.relay_delay_s = (0.0, 0.05)
    assert timing_end_to_end(log) == {b"tx": ORIGIN}
    log.sightings[-1] = Sighting(5.35, EXIT, b"tx", NEXT, "exit")  # 220 ms: more than 2 x 50
    assert timing_end_to_end(log) == {}


def exit_cells(create_at: float, data_at: list[float], middle: int = NEXT) -> list[CellRecord]:
    """What the exit of a circuit sees: the middle's CREATE, then one DATA cell per message."""
    creates = [
        cell(create_at + i / 1000, middle, "prev", "CREATE")._replace(spy=EXIT)
        for i in range(CREATE_CELLS)
    ]
    data = [
        cell(t, middle, "prev", "RELAY", recognized=True, what="DATA")._replace(spy=EXIT)
        for t in data_at
    ]
    return creates + data


def pairing_log(exit_side: list[CellRecord], *, middle: int = NEXT) -> AdversaryLog:
    """Hop 1's extension (last cell at 1.503) reaches the middle 50 ms later, at 1.553; the
    exit publishes a transaction from its circuit at 5.13."""
    log = log_with(sorted(hop_one_build([5.0]) + exit_side), {})
    log.spies = frozenset({SPY, EXIT})
    log.measured(SPY, NEXT, 0.05)
    log.measured(EXIT, middle, 0.08)
    log.sightings.append(Sighting(5.13, EXIT, b"tx", middle, "exit"))
    return log


def test_circuit_pairing_matches_the_middles_create_to_the_extension_hop_one_relayed() -> None:
    """Over a link the middle already had, its CREATE reached the exit at 1.633 + jitter."""
    log = pairing_log(exit_cells(1.64, [5.13]))
    assert timing_circuit_pairing(log) == {b"tx": ORIGIN}
    assert timing_circuit_pairing(pairing_log(exit_cells(3.0, [5.13]))) == {}


def test_circuit_pairing_dates_a_new_link_by_its_opening() -> None:
    """The middle first dialled the exit: the SYN arrived at 1.635, the CREATE after the link
    handshake, 400 ms later. The CREATE alone is too late; the opening names the circuit."""
    log = pairing_log(exit_cells(2.035, [5.13]))
    assert timing_circuit_pairing(log) == {}
    log.inbound.append(InboundLink(1.635, EXIT, NEXT))
    assert timing_circuit_pairing(log) == {b"tx": ORIGIN}


def test_circuit_pairing_ignores_delays_on_messages_and_allows_hop_ones_hold() -> None:
    """Relays hold cells 0-500 ms: the transaction left the exit 2 s after hop 1 saw it, which
    no per-message pairing allows, but the circuit is paired at its build, where hop 1 held
    the extension 300 ms (inside the public range, beyond the jitter)."""
    log = pairing_log(exit_cells(1.933, [7.13]))
    log.sightings[-1] = Sighting(7.13, EXIT, b"tx", NEXT, "exit")
    assert timing_circuit_pairing(log) == {}
    log.relay_delay_s = (0.0, 0.5)
    assert timing_circuit_pairing(log) == {b"tx": ORIGIN}
    assert timing_end_to_end(log) == {}


def test_circuit_pairing_needs_the_same_middle_relay() -> None:
    log = pairing_log(exit_cells(1.64, [5.13], middle=OTHER_MIDDLE), middle=OTHER_MIDDLE)
    assert timing_circuit_pairing(log) == {}


def middle_cells(data_at: list[float], *, circ_id: int = 5) -> list[CellRecord]:
    """What the middle relay (a spy too) sees: hop 1's CREATE on ``circ_id`` (hop 1's cells
    carry 5 on their link), its own EXTEND to the exit, the exit's CREATED, then a forward
    cell per message."""

    def at_middle(
        t: float, peer: int, leg: str, command: str, *, recognized: bool = False, what: str = "?"
    ) -> CellRecord:
        record = cell(t, peer, leg, command, recognized=recognized, what=what)
        return record._replace(spy=NEXT, circ_id=circ_id if peer == SPY else 8)

    creates = [at_middle(1.05 + i / 1000, SPY, "prev", "CREATE") for i in range(CREATE_CELLS)]
    extend = [
        at_middle(1.25 + i / 1000, SPY, "prev", "RELAY", recognized=True, what="?")
        for i in range(EXTEND_CELLS - 1)
    ]
    extend.append(at_middle(1.26, SPY, "prev", "RELAY", recognized=True, what="EXTEND"))
    created = at_middle(1.45, EXIT, "next", "CREATED")
    data = [at_middle(t, SPY, "prev", "RELAY") for t in data_at]
    return [*creates, *extend, created, *data]


def entry_middle_log(middle_side: list[CellRecord]) -> AdversaryLog:
    """Hop 1 relays a message at 5.0; it reaches the middle 50 ms later, at 5.05, the exit at
    5.13 (an 80 ms link), and the exit's gossip reaches a neighbouring spy at 5.18."""
    log = log_with(sorted(hop_one_build([5.0]) + middle_side), {})
    log.spies = frozenset({SPY, NEXT, NEIGHBOUR})
    log.measured(SPY, NEXT, 0.05)
    log.measured(NEXT, EXIT, 0.08)
    log.measured(NEIGHBOUR, EXIT, 0.05)
    log.sightings.append(Sighting(5.18, NEIGHBOUR, b"tx", EXIT, "gossip"))
    return log


def test_spies_at_hop_one_and_hop_two_join_by_their_links_circuit_id() -> None:
    """The middle forwards the message to the exit, whose publication at 5.13 the neighbour
    dates: hop 1's origin is named, with no exit spy. A middle whose circuit came in under
    another id on that link (another circuit of hop 1's, or another predecessor's) names no
    one."""
    log = entry_middle_log(middle_cells([5.05]))
    assert timing_entry_middle(log) == {b"tx": ORIGIN}
    assert circuit_collusion(log) == {b"tx": ORIGIN}
    assert timing_end_to_end(log) == {} and timing_circuit_pairing(log) == {}
    assert timing_entry_middle(entry_middle_log(middle_cells([5.05], circ_id=6))) == {}


def test_entry_middle_needs_the_publication_at_its_exit_in_time_and_of_its_size() -> None:
    late = entry_middle_log(middle_cells([5.05]))
    late.sightings[-1] = Sighting(5.48, NEIGHBOUR, b"tx", EXIT, "gossip")  # 300 ms late
    assert timing_entry_middle(late) == {}
    elsewhere = entry_middle_log(middle_cells([5.05]))
    elsewhere.measured(NEIGHBOUR, OTHER_MIDDLE, 0.05)
    elsewhere.sightings[-1] = Sighting(5.18, NEIGHBOUR, b"tx", OTHER_MIDDLE, "gossip")
    assert timing_entry_middle(elsewhere) == {}
    sized = entry_middle_log(middle_cells([5.05]))
    sized.tx_cells[b"tx"] = 2
    assert timing_entry_middle(sized) == {}


def test_colluding_spies_name_no_fellow_spy_whose_circuit_carries_only_cover() -> None:
    """The same pairings as above, but the circuit's origin is itself a spy: its messages are
    its own cover, so a pair with a transaction can only be a coincidence and names no one."""
    per_message = log_with(hop_one_build([5.0]), {})
    per_message.measured(SPY, NEXT, 0.05)
    per_message.measured(EXIT, NEXT, 0.08)
    per_message.sightings.append(Sighting(5.135, EXIT, b"tx", NEXT, "exit"))
    at_build = pairing_log(exit_cells(1.64, [5.13]))
    entry_middle = entry_middle_log(middle_cells([5.05]))
    assert timing_end_to_end(per_message) == {b"tx": ORIGIN}
    assert timing_circuit_pairing(at_build) == {b"tx": ORIGIN}
    assert timing_entry_middle(entry_middle) == {b"tx": ORIGIN}
    for log in (per_message, at_build, entry_middle):
        log.spies = log.spies | {ORIGIN}
        assert circuit_collusion(log) == {}
