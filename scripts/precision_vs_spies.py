"""The default level's precision against the spy fraction, beside the three-hop circuit floor.

Reads ``murmur simulate run --json`` results (one onion run each) and ``murmur simulate sweep
--json`` results (their onion entries), groups them by spy fraction, and prints a Markdown
table: per run, the share of transactions and of circuits whose hop 1 and a later hop were
spies (ground truth), and the precision and recall of ``circuit_collusion`` (every pair of
spies on one circuit) and of the best single-ended estimator. It plots precision against the
spy fraction with the floor p(1 - (1 - p)²) and the issue's 1 % target, to show at what
adversary strength a circuit design can meet that target.

Give it runs of one workload (the busy network's: ``docs/results/sweep/sweep.json
docs/results/spies/f*.json``); it groups by spy fraction only.

Run: ``.venv/bin/python scripts/precision_vs_spies.py docs/results/sweep/sweep.json
docs/results/spies/f*.json docs/results/collusion/std_busy_seed[23].json
--plot docs/figures/precision_vs_spies.png``
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from matplotlib.figure import Figure

from murmur.sim.report import circuit_floor

COLLUSION = "circuit_collusion"
SINGLE_ENDED = ("timing", "timing_latency", "timing_known_law", "timing_intersection")
TARGET = 0.01


@dataclass(frozen=True, slots=True)
class Run:
    source: str
    spies: float
    seed: int
    tx: int
    spied_tx: int
    spied_circuits: int | None
    circuits: int | None
    precision: float
    recall: float
    single: tuple[str, float, float]
    """Best single-ended estimator by recall: name, precision, recall."""


def load(path: Path) -> list[Run]:
    document = json.loads(path.read_text())
    if document.get("mode") == "sweep":
        entries = [e for e in document["results"] if e["protocol"] == "onion"]
    else:
        entries = [document] if document.get("protocol") == "onion" else []
    return [_run(path.name, entry) for entry in entries]


def _run(source: str, entry: dict[str, Any]) -> Run:
    extras = entry["onion"]
    single = max((entry["recall"][k], entry["precision"][k], k) for k in SINGLE_ENDED)
    circuits = extras.get("circuits_in_use")
    spied = extras.get("spy_entry_and_later_circuits")
    return Run(
        source=source,
        spies=entry["spies"],
        seed=entry["seed"],
        tx=entry["tx"],
        spied_tx=int(extras["spy_entry_and_later_tx"]),
        spied_circuits=None if spied is None else int(spied),
        circuits=None if circuits is None else int(circuits),
        precision=entry["precision"][COLLUSION],
        recall=entry["recall"][COLLUSION],
        single=(single[2], single[1], single[0]),
    )


def table(runs: list[Run]) -> str:
    lines = [
        "| spies | seed | floor p(1-(1-p)²) | spied tx (truth) | spied circuits (truth) "
        "| `circuit_collusion` P / R | best single-ended P / R | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (r.spies, r.seed)):
        circuits = (
            "-"
            if r.circuits is None or r.spied_circuits is None
            else f"{r.spied_circuits} / {r.circuits} ({r.spied_circuits / r.circuits:.3f})"
        )
        lines.append(
            f"| {r.spies:g} | {r.seed} | {circuit_floor(r.spies):.4f} "
            f"| {r.spied_tx} / {r.tx} ({r.spied_tx / r.tx:.3f}) | {circuits} "
            f"| {r.precision:.3f} / {r.recall:.3f} "
            f"| `{r.single[0]}` {r.single[1]:.3f} / {r.single[2]:.3f} | {r.source} |"
        )
    return "\n".join(lines)


def plot(runs: list[Run], path: Path) -> None:
    """Two panels: every spy fraction measured, and the region around the target."""
    by_fraction: dict[float, list[Run]] = defaultdict(list)
    for r in runs:
        by_fraction[r.spies].append(r)
    fractions = sorted(by_fraction)
    figure = Figure(figsize=(11, 4.2))
    whole, near = figure.subplots(1, 2)
    for ax, top in ((whole, fractions[-1] * 1.05), (near, 0.12)):
        grid = [top * k / 200 for k in range(201)]
        shown = [f for f in fractions if f <= top]
        ax.plot(grid, [circuit_floor(p) for p in grid], "k--", lw=1, label="floor p(1-(1-p)²)")
        ax.axhline(TARGET, color="tab:red", lw=0.8, label="target: precision ≤ 1 %")
        ax.plot(
            [r.spies for r in runs if r.spies <= top],
            [r.precision for r in runs if r.spies <= top],
            "o",
            color="tab:blue",
            alpha=0.5,
            label="circuit_collusion, one world",
        )
        ax.plot(
            shown,
            [mean(r.precision for r in by_fraction[f]) for f in shown],
            "-",
            color="tab:blue",
            label="circuit_collusion, mean",
        )
        ax.plot(
            shown,
            [mean(r.spied_tx / r.tx for r in by_fraction[f]) for f in shown],
            "s:",
            color="tab:green",
            label="truth: tx with spies at hop 1 and later",
        )
        ax.plot(
            shown,
            [mean(r.single[1] for r in by_fraction[f]) for f in shown],
            "^:",
            color="tab:orange",
            label="best single-ended estimator, mean",
        )
        ax.set_xlabel("spy fraction p")
        ax.set_ylabel("precision (Fanti et al.)")
        ax.grid(alpha=0.3)
    near.set_ylim(0.0, 0.03)
    whole.set_title("default level, 1,000 nodes, busy (10 tx/s)")
    near.set_title("near the target")
    whole.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    runs = [run for path in args.results for run in load(path)]
    if not runs:
        parser.error("no onion results in those files")
    print(table(runs))
    if args.plot is not None:
        plot(runs, args.plot)


if __name__ == "__main__":
    main()
