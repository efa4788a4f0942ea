"""Peer graphs the simulator runs on.

Theory of operation: a :class:`PeerGraph` records who dialled whom (directed out-edges), because
Dandelion++ builds its stem from outbound connections; connections themselves are undirected
(a message may cross an edge either way). Builders take a seeded rng and are deterministic.

* :func:`regular4`: the union of two random directed Hamiltonian cycles with no repeated
  undirected edge, so the undirected graph is an exact 4-regular graph and every node has two
  out-edges and two in-edges (an exact 4-regular stem graph, as in the Dandelion++ paper's
  simulations, whose generator builds the same union).
* :func:`outdegree8`: each node dials 8 distinct random peers (the paper's "8 outbound peers").
* :func:`quasi4`: each node dials 2 random peers (the paper's approximately 4-regular graph).
* :func:`daemon`: the graph our daemon builds, approximated: each node dials up to 8 random
  outbound peers it is not already connected to, and a node accepts at most 125 inbound.
* :func:`line`: a path ``0 - 1 - ... - n-1`` (edge ``i -> i+1``), for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from murmur.base.errors import ConfigError
from murmur.base.rng import Rng

DAEMON_OUTBOUND = 8
DAEMON_MAX_INBOUND = 125
_REGULAR_ATTEMPTS = 10_000


@dataclass(frozen=True, slots=True)
class PeerGraph:
    name: str
    out: tuple[tuple[int, ...], ...]
    """``out[v]``: the peers node ``v`` dialled (its outbound connections), in dial order."""

    @property
    def size(self) -> int:
        return len(self.out)

    def neighbours(self) -> list[list[int]]:
        """Undirected adjacency without repeats (a mutual dial is one connection)."""
        adjacency: list[dict[int, None]] = [{} for _ in self.out]
        for v, targets in enumerate(self.out):
            for w in targets:
                adjacency[v][w] = None
                adjacency[w][v] = None
        return [list(a) for a in adjacency]

    def is_outbound(self, v: int, w: int) -> bool:
        return w in self.out[v]

    def edge_count(self) -> int:
        return sum(len(a) for a in self.neighbours()) // 2


def regular4(n: int, rng: Rng) -> PeerGraph:
    if n < 5:
        raise ConfigError("an exact 4-regular graph needs at least 5 nodes")
    for _ in range(_REGULAR_ATTEMPTS):
        first, second = _cycle(n, rng), _cycle(n, rng)
        used = {frozenset((v, first[v])) for v in range(n)}
        if all(frozenset((v, second[v])) not in used for v in range(n)):
            return PeerGraph("regular4", tuple((first[v], second[v]) for v in range(n)))
    raise ConfigError(f"could not draw a simple 4-regular graph on {n} nodes")


def outdegree(n: int, degree: int, rng: Rng, *, name: str) -> PeerGraph:
    if n <= degree:
        raise ConfigError(f"{degree} distinct outbound peers need more than {degree} nodes")
    out: list[tuple[int, ...]] = []
    for v in range(n):
        chosen: dict[int, None] = {}
        while len(chosen) < degree:
            w = rng.randrange(n)
            if w != v:
                chosen[w] = None
        out.append(tuple(chosen))
    return PeerGraph(name, tuple(out))


def outdegree8(n: int, rng: Rng) -> PeerGraph:
    return outdegree(n, 8, rng, name="outdegree8")


def quasi4(n: int, rng: Rng) -> PeerGraph:
    return outdegree(n, 2, rng, name="quasi4")


def daemon(
    n: int,
    rng: Rng,
    *,
    outbound: int = DAEMON_OUTBOUND,
    max_inbound: int = DAEMON_MAX_INBOUND,
) -> PeerGraph:
    if n < 2:
        raise ConfigError("a peer graph needs at least 2 nodes")
    out: list[dict[int, None]] = [{} for _ in range(n)]
    inbound = [0] * n
    connected: list[set[int]] = [set() for _ in range(n)]
    order = list(range(n))
    rng.shuffle(order)
    want = min(outbound, n - 1)
    for v in order:
        attempts = 0
        while len(out[v]) < want and attempts < 50 * want:
            attempts += 1
            w = rng.randrange(n)
            if w == v or w in connected[v] or inbound[w] >= max_inbound:
                continue
            out[v][w] = None
            inbound[w] += 1
            connected[v].add(w)
            connected[w].add(v)
    return PeerGraph("daemon", tuple(tuple(o) for o in out))


def line(n: int) -> PeerGraph:
    if n < 2:
        raise ConfigError("a line needs at least 2 nodes")
    return PeerGraph("line", tuple((v + 1,) if v + 1 < n else () for v in range(n)))


GRAPHS: dict[str, Callable[[int, Rng], PeerGraph]] = {
    "daemon": daemon,
    "regular4": regular4,
    "outdegree8": outdegree8,
    "quasi4": quasi4,
}


def build_graph(name: str, n: int, rng: Rng) -> PeerGraph:
    try:
        builder = GRAPHS[name]
    except KeyError:
        raise ConfigError(f"unknown graph {name!r} (choose from {', '.join(GRAPHS)})") from None
    return builder(n, rng)


def _cycle(n: int, rng: Rng) -> list[int]:
    """A uniformly random directed Hamiltonian cycle, as a successor array."""
    order = list(range(n))
    rng.shuffle(order)
    successor = [0] * n
    for i, v in enumerate(order):
        successor[v] = order[(i + 1) % n]
    return successor
