"""What three random relays cost in latency by themselves, before any protocol runs.

Draws a simulated world as ``murmur simulate`` draws it (regions, per-link latency factors)
and, for many random (origin, hop 1, hop 2, exit) choices of distinct nodes, sums the three
links' one-way latencies (without jitter, which only adds). Prints the sum's percentiles: the
part of the private path's overhead that no cover rate, cell size or scheduling removes while
hop 1, hop 2 and the exit are drawn uniformly from every relay, as the default draws them.
With ``--regional``, the three are drawn from the origin's own region instead (regional
paths, ``--regional-paths`` in the simulator).

Run: ``.venv/bin/python scripts/path_latency_floor.py --nodes 1000 --seed 1 [--regional]``
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict

from murmur.sim.network import RegionLatency
from murmur.sim.scenario import Scenario, draw_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--paths", type=int, default=200_000)
    parser.add_argument("--regional", action="store_true", help="hops from the origin's region")
    args = parser.parse_args()
    world = draw_world(Scenario(nodes=args.nodes, tx_count=1), args.seed)
    latency = world.latency.one_way_s
    members: dict[int, list[int]] = defaultdict(list)
    if args.regional:
        assert isinstance(world.latency, RegionLatency)
        regions = world.latency.regions
        for node, region in enumerate(regions):
            members[region].append(node)
    pick = random.Random(args.seed)
    sums = []
    for _ in range(args.paths):
        if args.regional:
            origin = pick.randrange(args.nodes)
            first, second, exit_node = pick.sample(
                [v for v in members[regions[origin]] if v != origin], 3
            )
        else:
            origin, first, second, exit_node = pick.sample(range(args.nodes), 4)
        sums.append(latency(origin, first) + latency(first, second) + latency(second, exit_node))
    sums.sort()
    for q in (50, 90, 99):
        print(f"p{q}: {1000 * sums[len(sums) * q // 100]:.0f} ms")


if __name__ == "__main__":
    main()
