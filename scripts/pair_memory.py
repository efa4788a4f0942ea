"""Bytes of memory per (node, relay) pair in the onion simulation, at the end of its warm-up.

Every node of an onion run holds every relay's announcement record, so the live memory grows
as n². For each n this builds the world ``murmur simulate run --protocol onion
--standin-crypto --nodes n`` builds, runs it to the end of its warm-up
(:func:`murmur.sim.onion.warmed_up`) under tracemalloc, and takes the live bytes; each n runs
in a fresh process, so caches a run leaves (the decode cache) do not count in the next. A
quadratic through the totals gives the bytes a pair (its n² coefficient); the same fit per
allocation site (file and line) shows where they go.

Run: ``PYTHONPATH=src .venv/bin/python scripts/pair_memory.py`` (about 5 minutes interpreted;
``--sizes 150 300 450 --top 15`` are the defaults). ``PYTHONPATH=build/mypyc`` measures the
compiled build, whose native classes keep float attributes unboxed.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from murmur.sim.onion import OnionKit, warmed_up
from murmur.sim.scenario import Scenario, draw_world


@dataclass(frozen=True, slots=True)
class Sample:
    nodes: int
    total: int
    """Live bytes at the end of the warm-up."""
    sites: dict[str, int]
    """Live bytes by allocation site (``file:line``)."""


def measure(nodes: int, seed: int) -> Sample:
    """Live bytes of one run at the end of its warm-up (call in a fresh process)."""
    scenario = Scenario(nodes=nodes)
    kit = OnionKit(standin_crypto=True)
    tracemalloc.start()
    world = draw_world(scenario, seed)
    with warmed_up(world, scenario, kit) as network:
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        alive = len(network)
    tracemalloc.stop()
    assert alive == nodes
    snapshot = snapshot.filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))
    sites = {
        f"{stat.traceback[0].filename}:{stat.traceback[0].lineno}": stat.size
        for stat in snapshot.statistics("lineno")
    }
    return Sample(nodes, sum(sites.values()), sites)


def quadratic(xs: list[int], ys: list[int]) -> float:
    """The n² coefficient of the least-squares quadratic through (xs, ys)."""
    return float(np.polyfit(np.array(xs, dtype=float), np.array(ys, dtype=float), 2)[0])


def short(site: str) -> str:
    path, _, line = site.rpartition(":")
    marker = "/murmur/"
    return ("murmur/" + path.split(marker, 1)[1] if marker in path else path) + ":" + line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[150, 300, 450], metavar="N")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--top", type=int, default=15, help="allocation sites listed")
    args = parser.parse_args()
    if len(args.sizes) < 3:
        parser.error("a quadratic fit needs at least three sizes")
    samples = []
    for nodes in args.sizes:
        # one process per run: what a run leaves behind must not count in the next
        with ProcessPoolExecutor(max_workers=1) as pool:
            samples.append(pool.submit(measure, nodes, args.seed).result())
    xs = [s.nodes for s in samples]
    print(f"{'nodes':>6} {'live MB':>9} {'bytes/pair':>11}")
    for s in samples:
        print(f"{s.nodes:>6} {s.total / 1e6:>9.1f} {s.total / (s.nodes * (s.nodes - 1)):>11.0f}")
    print(f"quadratic fit: {quadratic(xs, [s.total for s in samples]):.0f} bytes a pair")
    largest = samples[-1]
    per_pair = {
        site: quadratic(xs, [s.sites.get(site, 0) for s in samples]) for site in largest.sites
    }
    print(f"\ntop {args.top} sites by bytes a pair (the n² coefficient of each site's fit):")
    print(f"(and each site's bytes at n = {largest.nodes} over its n(n - 1) pairs: what a pair")
    print(" costs there if the site is n² alone; dicts and sets resize in steps, so both vary)")
    pairs = largest.nodes * (largest.nodes - 1)
    print(f"{'B/pair':>7} {'at ' + str(largest.nodes):>7} {'MB':>7}  site")
    for site in sorted(per_pair, key=per_pair.__getitem__, reverse=True)[: args.top]:
        size = largest.sites[site]
        print(f"{per_pair[site]:>7.1f} {size / pairs:>7.1f} {size / 1e6:>7.2f}  {short(site)}")


if __name__ == "__main__":
    main()
