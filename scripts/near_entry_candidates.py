"""How far hop 1 narrows the origin for a spy at hop 2, when hop 1 is a near first hop.

For every honest node of a simulated world and each of its ``K`` nearest outbound peers (by
the links' true latency, as the node's pings measure them), asks the ``near_entry``
estimator's rule which node is likeliest to have chosen that peer as hop 1, from the directed
peer graph and region-pair latencies alone (:class:`murmur.sim.near_entry.NearChooser`). Prints
how often that is the node itself (the chance a spy at hop 2 names the origin once it has
paired the circuit's message with the exit's publication) and how many nodes had any chance.
No simulation runs: the world (graph, regions, spies) is drawn as ``murmur simulate`` draws it.

Run: ``.venv/bin/python scripts/near_entry_candidates.py --nodes 1000 --seed 1 [--near 3]``
"""

from __future__ import annotations

import argparse
import statistics

from murmur.sim.near_entry import NearChooser
from murmur.sim.scenario import Scenario, draw_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--near", type=int, default=3, help="near first hops (K)")
    parser.add_argument("--spies", type=float, default=0.1)
    args = parser.parse_args()
    world = draw_world(Scenario(nodes=args.nodes, spy_fraction=args.spies, tx_count=1), args.seed)
    out, latency = world.graph.out, world.latency
    chooser = NearChooser(out, latency.typical_one_way_s, args.near, world.spies)
    named = pairs = 0
    candidates: list[int] = []
    for v in range(args.nodes):
        if v in world.spies:
            continue
        for first_hop in sorted(out[v], key=lambda w: latency.one_way_s(v, w))[: args.near]:
            pairs += 1
            named += chooser.likeliest(first_hop) == v
            candidates.append(chooser.candidates(first_hop))
    print(
        f"{args.nodes} nodes, seed {args.seed}, K = {args.near}: the likeliest chooser is the "
        f"node itself for {named} of {pairs} (node, near hop 1) pairs ({named / pairs:.3f}); "
        f"nodes with any chance per hop 1: mean {statistics.mean(candidates):.2f}, "
        f"median {statistics.median(candidates)}"
    )


if __name__ == "__main__":
    main()
