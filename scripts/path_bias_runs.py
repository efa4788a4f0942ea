"""Spies that deny service selectively, against nodes with and without path bias.

One arm per invocation (so arms run side by side on the cores): the production onion protocol
in the simulator, entry guards on (the default), spies following the protocol (``none``) or
serving circuits from honest relays only towards fellow spies (``extend``: refusing the
extension; ``carry``: dropping what the circuit carries), and nodes' path bias on or off, its
bar fixed or lowered by the relay-side baseline (``--baseline``), in a healthy network or
one whose honest relays refuse a share of the circuits extended to them (``--overload``), at
the preset's privacy level or another (``--level``).
Heavy senders and circuits rotated every 20 s, so that each sender goes through about thirty
circuits and its guard's outcomes pile up within the run (as docs/evaluation.md §6, "Entry
guards", measured exposure over rotations). The fast-path baseline is not run: the figures
here are privacy and delivery, not overheads. Writes one JSON object: the estimators'
precision and recall, the delivered share and the run's extras (ground truth: transactions on
circuits with spies at hop 1 and a later hop, guards disabled, nodes behind a spy guard).

Run: ``PYTHONPATH=build/mypyc .venv/bin/python scripts/path_bias_runs.py --denial extend
--path-bias on --seed 1 > docs/results/path_bias/extend_on_seed1.json``
"""

from __future__ import annotations

import argparse
import json
import time

from murmur.node.levels import LEVELS
from murmur.sim.build import build_name
from murmur.sim.denial import DENIAL_MODES
from murmur.sim.onion import OnionKit
from murmur.sim.results import summarise
from murmur.sim.scenario import Scenario, draw_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--denial", choices=("none", *DENIAL_MODES), default="none")
    parser.add_argument("--path-bias", choices=("on", "off"), default="on")
    parser.add_argument("--baseline", choices=("on", "off"), default="on")
    parser.add_argument("--overload", type=float, default=0.0)
    parser.add_argument("--level", choices=tuple(LEVELS), default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--origins", type=int, default=20)
    parser.add_argument("--tx", type=int, default=600)
    parser.add_argument("--tx-rate", type=float, default=1.0)
    parser.add_argument("--circuit-lifetime", type=float, default=20.0)
    args = parser.parse_args()
    scenario = Scenario(
        nodes=args.nodes,
        spy_fraction=0.1,
        tx_count=args.tx,
        tx_rate_per_s=args.tx_rate,
        origin_count=args.origins,
    )
    kit = OnionKit(
        standin_crypto=True,
        fast_path=False,
        selective_denial=None if args.denial == "none" else args.denial,
        path_bias=args.path_bias == "on",
        path_bias_baseline=args.baseline == "on",
        overload=args.overload,
        level=args.level,
        circuit_lifetime_s=args.circuit_lifetime,
    )
    started = time.perf_counter()
    record = kit.run(draw_world(scenario, args.seed), scenario)
    summary = summarise(record)
    result = {
        "denial": args.denial,
        "path_bias": args.path_bias,
        "baseline": args.baseline,
        "overload": args.overload,
        "level": kit.privacy().level.name,
        "seed": args.seed,
        "nodes": args.nodes,
        "origins": args.origins,
        "tx": args.tx,
        "tx_rate_per_s": args.tx_rate,
        "circuit_lifetime_s": args.circuit_lifetime,
        "precision": summary.precision,
        "recall": summary.recall,
        "delivered_ratio": summary.delivered_ratio,
        "extras": record.extras,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "build": build_name(),
    }
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
