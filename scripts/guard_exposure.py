"""How many senders spies expose as circuits rotate, with and without entry guards.

Path choice only, no protocol run: for each world (a relay set on distinct /16s, as the
simulator gives every node, and a random fraction of spies), each sampled honest origin draws
one circuit after another with the production code (:func:`select_path`, hop 1 from
:class:`EntryGuards` when guards are on), as its pool does at every rotation. A circuit is
*exposed* when hop 1 is a spy and so is a later hop: those spies join up and name the origin
(docs/evaluation.md §6, "Session 14"; the simulator's ``circuit_collusion`` names exactly these).
A sender is exposed once any circuit it used was. Prints, per number of circuits used, the
share of senders exposed (what per-originator precision tends to for an adversary that names
only exposed circuits) and the share of circuits exposed (recall), with a plot.

Run: ``.venv/bin/python scripts/guard_exposure.py --out docs/figures/guard_exposure.png``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

from murmur.base.ids import NodeId
from murmur.node.private_path import DEFAULT_CAPACITY
from murmur.overlay.circuits.guards import EntryGuards, GuardConfig
from murmur.overlay.circuits.onion_keys import OnionKeyPair
from murmur.overlay.circuits.selection import RelayDirectory, RelayInfo, select_path
from murmur.overlay.peers.netgroup import network_prefix
from murmur.sim.rng import SeededRng
from murmur.wire.cells import RelayAddress

CHECKPOINTS = (1, 3, 10, 30, 100, 300)


def _directory(nodes: int, rng: SeededRng) -> RelayDirectory:
    keys = OnionKeyPair.generate(rng).public  # one key for all: selection never reads it
    directory = RelayDirectory(max_relays=nodes)
    for i in range(nodes):
        address = RelayAddress(f"{10 + i // 250}.{i % 250}.0.1", 7000)
        directory.upsert(RelayInfo(NodeId(i.to_bytes(32, "big")), address, keys, DEFAULT_CAPACITY))
    return directory


def _exposure(
    directory: RelayDirectory,
    spies: set[NodeId],
    origins: list[RelayInfo],
    guards: int,
    circuits: int,
    rng: SeededRng,
) -> tuple[list[float], list[float]]:
    """Share of senders exposed and of circuits exposed after each number of circuits."""
    exposed_after = [0] * circuits
    circuits_exposed = [0] * circuits
    for origin in origins:
        own = frozenset({network_prefix(origin.address.host)})
        pool = EntryGuards(GuardConfig(count=guards, settle_s=0.0), rng) if guards else None
        exposed = False
        for k in range(circuits):
            first: list[NodeId] = []
            if pool is not None:
                primary = pool.primary(
                    directory,
                    origin=origin.node_id,
                    origin_prefixes=own,
                    min_score=0.2,
                    now=float(k),
                    wall_now=float(k),
                )
                first = [rng.choice(primary).node_id]
            path = select_path(
                directory,
                rng,
                hops=3,
                origin=origin.node_id,
                origin_prefixes=own,
                min_score=0.2,
                first_hop=first,
            )
            hops = [relay.node_id in spies for relay in path]
            if hops[0] and any(hops[1:]):
                exposed = True
                circuits_exposed[k] += 1
            exposed_after[k] += exposed
    n = len(origins)
    share = [e / n for e in exposed_after]
    recall = [sum(circuits_exposed[: k + 1]) / (n * (k + 1)) for k in range(circuits)]
    return share, recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--spies", type=float, default=0.1)
    parser.add_argument("--origins", type=int, default=300, help="honest senders per world")
    parser.add_argument("--circuits", type=int, default=300, help="circuits each sender uses")
    parser.add_argument("--worlds", type=int, default=3)
    parser.add_argument("--guards", default="0,1,2", help="guard counts to compare")
    parser.add_argument("--out", type=Path, default=Path("reports/guard_exposure.png"))
    args = parser.parse_args()
    counts = [int(g) for g in args.guards.split(",")]
    curves: dict[int, list[list[float]]] = {g: [] for g in counts}
    recalls: dict[int, list[float]] = {g: [] for g in counts}
    for world in range(1, args.worlds + 1):
        rng = SeededRng(world)
        directory = _directory(args.nodes, rng)
        relays = list(directory)
        spy_list = rng.sample(relays, round(args.spies * args.nodes))
        spies = {r.node_id for r in spy_list}
        honest = [r for r in relays if r.node_id not in spies]
        origins = rng.sample(honest, args.origins)
        for g in counts:
            share, recall = _exposure(directory, spies, origins, g, args.circuits, rng.fork(g))
            curves[g].append(share)
            recalls[g].append(recall[-1])
    print(f"{args.worlds} worlds x {args.origins} senders, {args.nodes} relays, f = {args.spies}")
    print("senders exposed after k circuits (mean over worlds):")
    header = "guards | " + " | ".join(f"k={k}" for k in CHECKPOINTS if k <= args.circuits)
    print(header)
    means: dict[int, list[float]] = {}
    for g in counts:
        means[g] = [sum(c[k] for c in curves[g]) / len(curves[g]) for k in range(args.circuits)]
        cells = [f"{means[g][k - 1]:.3f}" for k in CHECKPOINTS if k <= args.circuits]
        circuits_share = sum(recalls[g]) / len(recalls[g])
        print(f"{g} | " + " | ".join(cells) + f" | circuits exposed {circuits_share:.4f}")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    xs = range(1, args.circuits + 1)
    for g in counts:
        label = "hop 1 from every relay" if g == 0 else f"{g} entry guard{'s' * (g > 1)}"
        axes.plot(xs, means[g], label=label)
    axes.set_xscale("log")
    axes.set_xlabel("circuits a sender has used (one per rotation: ~144 a day at 10 min)")
    axes.set_ylabel("senders exposed (hop 1 and a later hop spies)")
    axes.set_title(f"{args.nodes} relays, {args.spies:.0%} spies, {args.worlds} worlds")
    axes.grid(alpha=0.3)
    axes.legend()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(args.out, dpi=120)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
