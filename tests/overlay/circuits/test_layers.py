"""Layered relay crypto: only the target hop recognizes a cell; tampering is caught."""

from __future__ import annotations

import pytest

from murmur.base.errors import RemoteProtocolError
from murmur.overlay.circuits.handshake import HopKeys
from murmur.overlay.circuits.layers import OriginLayers, RelayLayer
from murmur.sim.rng import SeededRng
from murmur.wire.cells import CELL_BODY_BYTES, RelayCommand, decode_relay_plaintext


def _circuit(hops: int = 3, seed: int = 1) -> tuple[OriginLayers, list[RelayLayer]]:
    rng = SeededRng(seed)
    origin, relays = OriginLayers(), []
    for _ in range(hops):
        keys = HopKeys(*(rng.random_bytes(32) for _ in range(4)))
        origin.add_hop(keys)
        relays.append(RelayLayer(keys))
    return origin, relays


@pytest.mark.parametrize("target", [0, 1, 2])
def test_each_hop_recognizes_only_its_own_cells(target: int) -> None:
    origin, relays = _circuit()
    for n in range(5):
        body = origin.wrap_forward(target, RelayCommand.DATA, bytes([n]) * 100)
        assert len(body) == CELL_BODY_BYTES
        for i, relay in enumerate(relays[: target + 1]):
            body, mine = relay.unwrap_forward(body)
            assert mine is (i == target)
        assert decode_relay_plaintext(body).data == bytes([n]) * 100


def test_backward_cells_name_the_hop_that_spoke() -> None:
    origin, relays = _circuit()
    for speaker in (1, 2, 0, 2):
        body = relays[speaker].originate_backward(RelayCommand.REPLY, b"from %d" % speaker)
        for relay in reversed(relays[:speaker]):
            body = relay.wrap_backward(body)
        hop, message = origin.unwrap_backward(body)
        assert (hop, message.data) == (speaker, b"from %d" % speaker)


def test_flipped_bit_is_not_recognized_by_the_exit() -> None:
    origin, relays = _circuit()
    body = bytearray(origin.wrap_forward(2, RelayCommand.DATA, b"payload"))
    body[500] ^= 0x01
    out = bytes(body)
    for relay in relays:
        out, mine = relay.unwrap_forward(out)
    assert not mine


def test_replayed_cell_is_not_recognized() -> None:
    origin, relays = _circuit(hops=1)
    body = origin.wrap_forward(0, RelayCommand.DATA, b"once")
    assert relays[0].unwrap_forward(body)[1]
    assert not relays[0].unwrap_forward(body)[1]


def test_backward_cell_matching_no_hop_is_a_remote_error() -> None:
    origin, _ = _circuit()
    with pytest.raises(RemoteProtocolError):
        origin.unwrap_backward(bytes(CELL_BODY_BYTES))


def test_middle_hop_sees_no_plaintext() -> None:
    origin, relays = _circuit()
    secret = b"SECRET-TRANSACTION" * 20
    body = origin.wrap_forward(2, RelayCommand.DATA, secret)
    for relay in relays[:2]:
        body, _ = relay.unwrap_forward(body)
        assert b"SECRET" not in body
