"""The spy's relay tap on a relay driven by hand: what it logs of each cell it sees."""

from __future__ import annotations

from typing import cast

from murmur.overlay.circuits.config import RelayConfig
from murmur.overlay.circuits.events import ConnectTo, SendCell
from murmur.overlay.circuits.handshake import client_onionskin
from murmur.overlay.circuits.relay import CircuitRelay
from murmur.overlay.shaping import DelayRange
from murmur.sim.adversary import AdversaryLog, CellRecord, ForwardRecord
from murmur.sim.denial import SelectiveDenial
from murmur.sim.spy import RelayTap
from murmur.sim.timing import (
    Event,
    cells_by_circuit,
    circuit_positions,
    origin_events,
    successor,
)
from murmur.wire.cells import (
    CREATE_CELLS,
    EXTEND_CELLS,
    CellCommand,
    Extend,
    RelayAddress,
    RelayCommand,
    decode_cell,
    encode_cell,
)
from tests.overlay.circuits.test_relay import (
    NEXT_KEYS,
    OTHER,
    PAIR,
    PEER,
    RELAY_ID,
    TARGET,
    HandOrigin,
    make_relay,
)

SPY = 5
INDEX = {PEER: 1, OTHER: 2, TARGET: 9}
ADDRESS = RelayAddress("10.9.0.1", 7)


def test_an_extend_that_joins_a_dial_under_way_is_logged_and_its_next_leg_learnt() -> None:
    """Two circuits ask the spy, a few ms apart, to extend to TARGET, which it has no link
    with: the first EXTEND dials it, the second joins that dial and the relay sends nothing
    for it until the link is up. The tap logs both as EXTEND (the relay counts the one that
    waits), links each CREATED from TARGET to its circuit, and the position each build gives
    is hop 2 of 3 (an EXTEND of its own, none passing through)."""
    relay = make_relay().relay
    records: list[CellRecord] = []
    tap = RelayTap(relay, spy=SPY, index_of=INDEX, record=records.append)
    origins = []
    for n, peer in enumerate((PEER, OTHER)):
        origin = HandOrigin(cast(CircuitRelay, tap), peer, seed=2 + n)
        skin, _ = client_onionskin(TARGET, PAIR.public, x25519_seed=bytes([n + 1]) * 32)
        origin.extend(Extend(TARGET, ADDRESS, skin), now=1.0 + n / 1000)
        assert tap.drain_actions() == ([ConnectTo(TARGET, ADDRESS)] if n == 0 else [])
        origins.append(origin)

    tap.link_ready(TARGET, 1.1)
    creates = tap.drain_actions()
    assert len(creates) == 2 * CREATE_CELLS
    next_ids = list(dict.fromkeys(decode_cell(cast(SendCell, c).cell).circ_id for c in creates))
    for n, next_id in enumerate(next_ids):
        tap.receive_cell(TARGET, encode_cell(next_id, CellCommand.CREATED, b"y" * 64), 1.2 + n)
        (extended,) = tap.drain_actions()
        message = origins[n].open(cast(SendCell, extended).cell)
        assert message.command is RelayCommand.EXTENDED

    by_circuit = cells_by_circuit(records)
    assert set(by_circuit) == {(SPY, 1), (SPY, 2)}
    for n, key in enumerate(sorted(by_circuit)):
        cells = by_circuit[key]
        assert [c.relay_command for c in cells if c.recognized] == ["?"] * (EXTEND_CELLS - 1) + [
            "EXTEND"
        ]
        (created,) = [c for c in cells if c.command == "CREATED"]
        assert (created.peer, created.circ_id, created.leg) == (9, next_ids[n], "next")
        assert successor(cells) == INDEX[TARGET]
    log = AdversaryLog(spies=frozenset({SPY}), tapped=frozenset(), cells=records, hops=3)
    assert circuit_positions(log) == {(SPY, 1): (2, INDEX[PEER]), (SPY, 2): (2, INDEX[OTHER])}
    assert relay.counters.get("extend_joined_dial") == 1


def test_an_extend_denied_towards_a_linked_relay_is_logged_as_extend() -> None:
    """A spy under selective denial (``extend``) is asked by an honest PEER to extend to
    TARGET, honest and already linked: its relay sends the CREATE at once, the wrapper takes
    it away and destroys the circuit back. No dial and no CREATE leave, yet the tap logs the
    EXTEND (the relay counted the request before any of that), so the circuit is not placed at
    the last hop: in a 3-hop world it is hop 1 or 2 (it ended before an extension could pass
    through to tell which), with 2 hops it is hop 1."""
    relay = make_relay().relay
    relay.link_ready(TARGET, 0.0)
    denial = SelectiveDenial(relay, is_spy=lambda node: node == RELAY_ID, mode="extend")
    records: list[CellRecord] = []
    tap = RelayTap(denial, spy=SPY, index_of=INDEX, record=records.append)
    origin = HandOrigin(cast(CircuitRelay, tap), PEER)
    skin, _ = client_onionskin(TARGET, PAIR.public, x25519_seed=b"\x01" * 32)
    origin.extend(Extend(TARGET, ADDRESS, skin), now=1.0)
    (destroy,) = tap.drain_actions()
    assert isinstance(destroy, SendCell) and destroy.peer == PEER
    assert decode_cell(destroy.cell).command is CellCommand.DESTROY
    assert denial.denied == 1

    ((key, cells),) = cells_by_circuit(records).items()
    assert key == (SPY, 1)
    assert [c.relay_command for c in cells if c.recognized] == ["?"] * (EXTEND_CELLS - 1) + [
        "EXTEND"
    ]
    for hops, position in ((3, 2), (2, 1)):
        log = AdversaryLog(spies=frozenset({SPY}), tapped=frozenset(), cells=records, hops=hops)
        assert circuit_positions(log) == {key: (position, INDEX[PEER])}
    assert relay.counters.get("extend_requests") == 1


def test_a_held_cell_is_logged_forwarded_when_the_relay_sends_it_on() -> None:
    """The level holds every forwarded cell 10-50 ms. The spy is hop 1 of PEER's circuit: its
    relay sends the cells it holds on when their timers fire, and the tap logs each forward
    then, from the relay's own output. So the spy's event for PEER's two-cell message is dated
    when its first cell left for TARGET, not when it came."""
    relay = make_relay(RelayConfig(forward_delay=DelayRange(0.01, 0.05))).relay
    relay.link_ready(TARGET, 0.0)
    cells: list[CellRecord] = []
    forwards: list[ForwardRecord] = []
    tap = RelayTap(
        relay, spy=SPY, index_of=INDEX, record=cells.append, record_forward=forwards.append
    )
    origin = HandOrigin(cast(CircuitRelay, tap), PEER)
    skin, _ = client_onionskin(TARGET, PAIR.public, x25519_seed=b"\x01" * 32)
    origin.extend(Extend(TARGET, ADDRESS, skin), now=1.0)
    next_id = decode_cell(cast(SendCell, tap.drain_actions()[0]).cell).circ_id
    tap.receive_cell(TARGET, encode_cell(next_id, CellCommand.CREATED, b"y" * 64), 1.1)
    tap.drain_actions()  # EXTENDED
    origin.layers.add_hop(NEXT_KEYS)  # TARGET's layer: cells the spy cannot read

    def send_through(count: int, now: float) -> None:
        for i in range(count):
            body = origin.layers.wrap_forward(1, RelayCommand.DATA, b"x")
            cell = encode_cell(origin.circ_id, CellCommand.RELAY, body)
            tap.receive_cell(PEER, cell, now + i / 1000)

    def sent_to_target_until(end: float) -> list[float]:
        """Fires the relay's timers until ``end``: when it sent each cell to TARGET."""
        sent = []
        while (deadline := tap.next_deadline()) is not None and deadline < end:
            tap.handle_timer(deadline)
            out = tap.drain_actions()
            sent += [deadline for a in out if isinstance(a, SendCell) and a.peer == TARGET]
        return sent

    send_through(EXTEND_CELLS, 2.0)  # the extension to hop 3, passing through
    assert tap.drain_actions() == [] and forwards == []  # held
    left = sent_to_target_until(2.5)
    tap.receive_cell(TARGET, encode_cell(next_id, CellCommand.RELAY, b"z" * 64), 2.5)
    send_through(2, 3.0)  # a two-cell message
    left += sent_to_target_until(4.0)
    assert forwards == [ForwardRecord(t, SPY, 1) for t in left]
    assert len(left) == EXTEND_CELLS + 2 and 3.01 <= left[EXTEND_CELLS] <= 3.05

    log = AdversaryLog(spies=frozenset({SPY}), tapped=frozenset(), cells=cells, hops=3)
    log.forwards = forwards
    assert circuit_positions(log) == {(SPY, 1): (1, INDEX[PEER])}
    assert origin_events(log) == [Event(left[EXTEND_CELLS], INDEX[PEER], "hop1", 2)]
