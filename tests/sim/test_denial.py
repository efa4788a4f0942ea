"""The selective-denial adversary's ``carry`` mode on one relay, driven by hand: what it lets
through and what it drops, also when the relay holds cells (``forward_delay``)."""

from __future__ import annotations

import pytest

from murmur.base.ids import NodeId
from murmur.overlay.circuits.events import SendCell
from murmur.overlay.circuits.relay import RelayConfig
from murmur.overlay.shaping import DelayRange
from murmur.sim.denial import SelectiveDenial
from murmur.wire.cells import EXTEND_CELLS, CellCommand, decode_cell, encode_cell
from tests.overlay.circuits.test_relay import (
    NEXT_KEYS,
    RELAY_ID,
    TARGET,
    HandOrigin,
    Setup,
    _extend_to_target,
    _send_through,
    make_relay,
)


def _carrying_middle(
    config: RelayConfig, spies: set[NodeId]
) -> tuple[Setup, SelectiveDenial, HandOrigin, int]:
    """A spy relay (``RELAY_ID``) wrapped in ``carry`` denial, extended from PEER to TARGET
    (each a spy if in ``spies``); everything it sends is drained through the wrapper."""
    s = make_relay(config)
    denial = SelectiveDenial(s.relay, is_spy=lambda n: n in spies | {RELAY_ID}, mode="carry")
    origin = _extend_to_target(s)
    denial.drain_actions()  # the dial
    s.relay.link_ready(TARGET, 0.0)
    creates = [a for a in denial.drain_actions() if isinstance(a, SendCell)]
    assert {decode_cell(a.cell).command for a in creates} == {CellCommand.CREATE}
    next_id = decode_cell(creates[0].cell).circ_id
    s.relay.receive_cell(TARGET, encode_cell(next_id, CellCommand.CREATED, b"y" * 64), 0.0)
    denial.drain_actions()
    origin.layers.add_hop(NEXT_KEYS)
    return s, denial, origin, next_id


def _onwards(denial: SelectiveDenial, next_id: int) -> int:
    """RELAY cells the wrapper lets out towards TARGET on the circuit's next leg, running the
    relay's timers until nothing is held."""
    sent = 0
    while True:
        for action in denial.drain_actions():
            if isinstance(action, SendCell) and action.peer == TARGET:
                cell = decode_cell(action.cell)
                sent += cell.circ_id == next_id and cell.command is CellCommand.RELAY
        deadline = denial.next_deadline()
        if deadline is None or deadline > 50.0:
            return sent
        denial.handle_timer(deadline)


@pytest.mark.parametrize("hold", [None, DelayRange(0.01, 0.05)])
def test_a_circuit_between_honest_relays_carries_only_its_next_extension(
    hold: DelayRange | None,
) -> None:
    """Doomed at its CREATE (four cells, one circuit), the circuit passes the next
    extension's cells and drops the rest, whether the relay sends them at once or holds them
    and sends them from its timers."""
    s, denial, origin, next_id = _carrying_middle(RelayConfig(forward_delay=hold), set())
    assert denial.denied == 1
    for i in range(EXTEND_CELLS + 3):
        _send_through(s, origin, bytes([i]) * 10, 1.0 + i * 0.001)
    assert _onwards(denial, next_id) == EXTEND_CELLS


def test_a_circuit_to_a_fellow_spy_is_served() -> None:
    s, denial, origin, next_id = _carrying_middle(
        RelayConfig(forward_delay=DelayRange(0.01, 0.05)), {TARGET}
    )
    assert denial.denied == 0
    for i in range(EXTEND_CELLS + 3):
        _send_through(s, origin, bytes([i]) * 10, 1.0 + i * 0.001)
    assert _onwards(denial, next_id) == EXTEND_CELLS + 3
