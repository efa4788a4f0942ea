"""Listen ports for testnet nodes: free, distinct, and outside the kernel's ephemeral range."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

from murmur.interfaces.testnet import LOWEST_LISTEN_PORT, _ephemeral_low, free_listen_port


class _Scripted(random.Random):
    """Draws the given ports in order, so the test decides which candidates are tried."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__()
        self._ports: Iterator[int] = iter(ports)

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:  # type: ignore[override]
        port = next(self._ports)
        assert stop is not None and start <= port < stop
        return port


def test_ports_stay_below_the_ephemeral_range() -> None:
    taken: set[int] = set()
    ports = [free_listen_port("127.0.0.1", random.Random(7), taken) for _ in range(50)]
    assert len(set(ports)) == 50 == len(taken)
    assert all(LOWEST_LISTEN_PORT <= p < _ephemeral_low() for p in ports)


def test_a_port_in_use_or_already_handed_out_is_skipped() -> None:
    busy = free_listen_port("127.0.0.1", random.Random(1))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", busy))
        held.listen()
        handed_out = free_listen_port("127.0.0.1", random.Random(2), {busy})
        spare = free_listen_port("127.0.0.1", random.Random(3), {busy, handed_out})
        taken = {handed_out}
        got = free_listen_port("127.0.0.1", _Scripted([busy, handed_out, spare]), taken)
    assert got == spare
    assert taken == {handed_out, spare}
