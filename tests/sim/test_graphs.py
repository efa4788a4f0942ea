from __future__ import annotations

from collections import Counter

import pytest

from murmur.base.errors import ConfigError
from murmur.sim.graphs import build_graph, daemon, line, outdegree8, quasi4, regular4
from murmur.sim.rng import SeededRng


def test_regular4_is_an_exact_simple_4_regular_graph_with_two_out_and_two_in() -> None:
    for n in (5, 6, 50, 1000):
        graph = regular4(n, SeededRng(n))
        adjacency = graph.neighbours()
        assert all(len(a) == 4 and v not in a for v, a in enumerate(adjacency))
        inbound = Counter(w for targets in graph.out for w in targets)
        assert all(len(targets) == 2 for targets in graph.out)
        assert all(inbound[v] == 2 for v in range(n))
        assert graph.edge_count() == 2 * n


def test_regular4_needs_five_nodes() -> None:
    with pytest.raises(ConfigError):
        regular4(4, SeededRng(1))


def test_outdegree_graphs_dial_distinct_peers() -> None:
    for builder, degree in ((outdegree8, 8), (quasi4, 2)):
        graph = builder(300, SeededRng(2))
        for v, targets in enumerate(graph.out):
            assert len(targets) == degree == len(set(targets)) and v not in targets


def test_daemon_graph_respects_outbound_and_inbound_limits() -> None:
    graph = daemon(200, SeededRng(3), outbound=8, max_inbound=9)
    inbound = Counter(w for targets in graph.out for w in targets)
    assert max(inbound.values()) <= 9
    assert all(len(targets) == 8 for targets in graph.out)
    pairs = [frozenset((v, w)) for v, targets in enumerate(graph.out) for w in targets]
    assert len(pairs) == len(set(pairs))  # never two connections between the same pair


def test_graphs_are_deterministic_per_seed() -> None:
    assert build_graph("daemon", 100, SeededRng(7)) == build_graph("daemon", 100, SeededRng(7))
    assert build_graph("daemon", 100, SeededRng(7)) != build_graph("daemon", 100, SeededRng(8))


def test_line_and_unknown_names() -> None:
    assert line(3).neighbours() == [[1], [0, 2], [1]]
    with pytest.raises(ConfigError):
        build_graph("star", 10, SeededRng(1))
