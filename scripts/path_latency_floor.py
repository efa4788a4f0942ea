"""What three relays cost in latency by themselves, before any protocol runs.

Draws a simulated world as ``murmur simulate`` draws it (regions, per-link latency factors)
and, for many random (origin, hop 1, hop 2, exit) choices of distinct nodes, sums the three
links' one-way latencies (without jitter, which only adds). Prints the sum's percentiles: the
part of the private path's overhead that no cover rate, cell size or scheduling removes for
that way of drawing hops. By default every hop is drawn from every relay, as the standard
level draws them. ``--hops`` says, hop by hop, where each is drawn from: ``world`` (every
relay) or ``region`` (the origin's own region, as ``--regional-paths`` in the simulator draws
all three); ``--regional`` is ``--hops region,region,region``.

Run: ``.venv/bin/python scripts/path_latency_floor.py --nodes 1000 --seed 1 [--regional]``
or ``... --hops region,world,region``.
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections import defaultdict

from murmur.sim.network import RegionLatency
from murmur.sim.scenario import Scenario, draw_world

_DRAWS = ("world", "region")


def _hops(text: str) -> tuple[str, str, str]:
    hops = tuple(text.split(","))
    if len(hops) != 3 or any(h not in _DRAWS for h in hops):
        raise argparse.ArgumentTypeError("--hops takes three of world|region, comma-separated")
    return hops[0], hops[1], hops[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--paths", type=int, default=200_000)
    parser.add_argument(
        "--hops", type=_hops, default=("world",) * 3, help="e.g. region,world,region"
    )
    parser.add_argument("--regional", action="store_true", help="all three hops from the region")
    args = parser.parse_args()
    hops: tuple[str, str, str] = ("region",) * 3 if args.regional else args.hops
    world = draw_world(Scenario(nodes=args.nodes, tx_count=1), args.seed)
    latency = world.latency.one_way_s
    members: dict[int, list[int]] = defaultdict(list)
    regions: list[int] = []
    if "region" in hops:
        assert isinstance(world.latency, RegionLatency)
        regions = list(world.latency.regions)
        for node, region in enumerate(regions):
            members[region].append(node)
    pick = random.Random(args.seed)
    sums: list[float] = []
    while len(sums) < args.paths:
        origin = pick.randrange(args.nodes)
        path = [origin]
        for draw in hops:
            pool = members[regions[origin]] if draw == "region" else None
            path.append(pick.choice(pool) if pool is not None else pick.randrange(args.nodes))
        if len(set(path)) < 4:
            continue  # four distinct nodes, as a circuit has
        sums.append(sum(latency(a, b) for a, b in itertools.pairwise(path)))
    sums.sort()
    print(f"hops: {','.join(hops)}")
    for q in (50, 90, 99):
        print(f"p{q}: {1000 * sums[len(sums) * q // 100]:.0f} ms")


if __name__ == "__main__":
    main()
