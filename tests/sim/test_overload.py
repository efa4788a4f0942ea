"""The overloaded-network adversary: relays refusing a share of the circuits extended to them."""

from __future__ import annotations

import pytest

from murmur.base.ids import NodeId
from murmur.overlay.circuits.config import RelayConfig
from murmur.overlay.circuits.events import SendCell
from murmur.overlay.circuits.ids import CircuitIds
from murmur.overlay.circuits.onion_keys import OnionKeyPair, OnionKeyRing
from murmur.overlay.circuits.relay import CircuitRelay
from murmur.sim.overload import Overload
from murmur.sim.rng import SeededRng
from murmur.wire.cells import (
    CREATE_BYTES,
    CREATE_CELLS,
    CREATE_CHUNK_BYTES,
    CellCommand,
    DestroyReason,
    Fragment,
    decode_cell,
    decode_destroy,
    encode_cell,
)

RELAY_ID = NodeId(b"\x55" * 32)
EXTENDER = NodeId(b"\x11" * 32)
ORIGIN = NodeId(b"\x22" * 32)


def _relay() -> CircuitRelay:
    return CircuitRelay(
        node_id=RELAY_ID,
        onion_keys=OnionKeyRing(OnionKeyPair.generate(SeededRng(4)), now=0.0),
        rng=SeededRng(1),
        validate=lambda topic, payload: True,
        answer=lambda topic, payload: b"",
        config=RelayConfig(),
    )


def _create_cells(circ_id: int) -> list[bytes]:
    """A CREATE's cells (garbage onionskin: only the first cell matters here)."""
    chunks = [bytes(CREATE_CHUNK_BYTES)] * (CREATE_BYTES // CREATE_CHUNK_BYTES)
    return [
        encode_cell(circ_id, CellCommand.CREATE, Fragment(0, i, len(chunks), c).encode())
        for i, c in enumerate(chunks)
    ]


def _send_create(wrapper: Overload, peer: NodeId, seed: int) -> list[SendCell]:
    circ_id = CircuitIds(peer).allocate(RELAY_ID, SeededRng(seed))
    for cell in _create_cells(circ_id):
        wrapper.receive_cell(peer, cell, 0.0)
    actions = wrapper.drain_actions()
    assert all(isinstance(a, SendCell) for a in actions)
    return actions  # type: ignore[return-value]


def test_a_fully_overloaded_relay_refuses_extensions_but_not_origins() -> None:
    relay = _relay()
    wrapper = Overload(
        relay, share=1.0, rng=SeededRng(2), is_extension=lambda peer, circ: peer == EXTENDER
    )
    (refusal,) = _send_create(wrapper, EXTENDER, seed=3)
    cell = decode_cell(refusal.cell)
    assert refusal.peer == EXTENDER and cell.command is CellCommand.DESTROY
    assert decode_destroy(cell.body) is DestroyReason.RESOURCE
    assert wrapper.refused == 1
    # the rest of the refused CREATE reached the relay as orphans, and nothing else did
    assert relay.counters.get("drop_orphan_create") == CREATE_CELLS - 1
    assert relay.circuit_count == 0
    # an origin's CREATE to its hop 1 goes through to the relay (answered, here refused as
    # the garbage onionskin it is: the relay's own answer, not the adversary's)
    (answer,) = _send_create(wrapper, ORIGIN, seed=5)
    assert decode_destroy(decode_cell(answer.cell).body) is not DestroyReason.RESOURCE
    assert wrapper.refused == 1


def test_an_overload_refuses_about_its_share() -> None:
    wrapper = Overload(_relay(), share=0.3, rng=SeededRng(7), is_extension=lambda p, c: True)
    for seed in range(400):
        _send_create(wrapper, NodeId(seed.to_bytes(32, "big")), seed)
    assert 90 <= wrapper.refused <= 150


def test_an_overload_share_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError):
        Overload(_relay(), share=1.5, rng=SeededRng(1), is_extension=lambda p, c: True)
