"""``murmur bench``: the benchmark suite of ``benchmarks/`` as one JSON object or a table.

Every figure is paired with a baseline measured in the same run (raw primitives, raw AEAD),
because this machine is noisy: the ratios are what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TypedDict

from rich.console import Console
from rich.progress import Progress


class Budget(TypedDict):
    handshake_s: float
    framing_s: float
    gossip_messages: int
    circuits_s: float


QUICK: Budget = {"handshake_s": 0.5, "framing_s": 0.3, "gossip_messages": 5_000, "circuits_s": 1.0}
FULL: Budget = {
    "handshake_s": 6.0,
    "framing_s": 4.0,
    "gossip_messages": 60_000,
    "circuits_s": 10.0,
}


def run_benchmarks(*, quick: bool, console: Console | None = None) -> dict[str, Any]:
    from benchmarks.bench_circuits import run as bench_circuits
    from benchmarks.bench_gossip_relay import bench_gossip_relay
    from benchmarks.bench_link import run as bench_link

    budget = QUICK if quick else FULL
    console = console or Console(stderr=True)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("handshakes and framing", total=3)
        result: dict[str, Any] = bench_link(budget["handshake_s"], budget["framing_s"])
        progress.update(task, advance=1, description="gossip relay over loopback")
        result.update(bench_gossip_relay(budget["gossip_messages"], 1024))
        progress.update(task, advance=1, description="onion cells and circuit builds")
        circuits = bench_circuits(budget["circuits_s"])
        cells, builds = circuits["cells"], circuits["builds"]
        assert isinstance(cells, dict) and isinstance(builds, dict)
        result.update(
            {
                "cells_relayed_per_s": round(cells["relay_forward_cells_per_s"], 1),
                "cells_vs_link_ceiling": round(cells["relay_forward_vs_link_ceiling"], 3),
                "cell_bytes": circuits["cell_bytes"],
                "circuit_builds_per_s": round(builds["circuit_builds_per_s"], 1),
                "creates_per_s": round(builds["creates_per_s"], 1),
            }
        )
        progress.advance(task)
    return result


def run_bench_command(args: argparse.Namespace) -> int:
    result = run_benchmarks(quick=args.quick)
    if args.json:
        print(json.dumps(result))
        return 0
    from murmur.interfaces.report import print_figures

    print_figures("murmur bench", result)
    return 0
