"""Simulator benchmark: raw engine events per second, and full 1,000-node x 1,000-tx runs.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_sim.py [--nodes N] [--tx M] [--json]``.

* ``engine``: a relay ring of trivial hosted objects (one message in, one message out, no
  protocol logic), i.e. the cost of the event queue, the link model and the action dispatch.
* ``diffusion`` / ``dandelion``: the real protocol objects on the daemon graph, realistic network
  (10-300 ms links, jitter, 10 Mbit/s uplinks), Poisson arrivals at 10 tx/s, every transaction
  followed until it reached every node. Single process; ``murmur simulate`` runs the protocol
  and its diffusion baseline in parallel processes. Relays to an honest node that already has
  the transaction are sent but not queued (``elided``: identical figures, see
  :mod:`murmur.sim.engine`); ``diffusion_every_copy`` is the same run with every copy queued,
  side by side, for the ratio (``--skip-every-copy`` leaves it out).
* ``onion`` (``--onion-nodes``, ``--onion-tx``; ``--onion-nodes 0`` skips it): production
  :class:`murmur.node.node.Node` objects with real links, gossip and circuits, the onion phase
  and its fast-path baseline (forked after the warm-up, so it runs on the second core), with
  the keyed crypto stand-in (``--real-crypto`` to run ML-DSA-87 and ML-KEM-1024 themselves).
  Also reports the peak memory of the process and of the forked baseline (the nodes share
  decoded announcements, so n relay directories cost about n x n small entries, not
  n x n x 9 kB).

Relay decisions per second (``copies_per_s``: copies sent, queued or not) is the figure to
compare across versions: ``events_per_s`` counts only the deliveries a version queues, and a
version that elides more queues fewer events for the same work. ``fingerprint`` hashes what a
protocol run measured (reach times, the adversary's sightings, bytes): equal fingerprints mean
identical results.

``--against REV`` runs the same workloads with the code of git revision ``REV`` too (its own
``benchmarks/bench_sim.py``, from ``git archive``, in a subprocess, first, never in parallel)
and prints each workload's wall time for both and the ratio: the machines here are noisy, so
old and new are measured in the same session. ``--against-build DIR`` does the same with this
revision's code taken from ``DIR`` instead (``make compiled`` puts the mypyc-compiled copy in
``build/mypyc``): the wall-time ratio of the compiled and the interpreted build, and whether their
results are identical (they must be). ``build`` in the JSON says which one a run used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from murmur.sim.build import build_name
from murmur.sim.engine import Engine, SimNode
from murmur.sim.network import UniformLatency
from murmur.sim.onion import OnionKit
from murmur.sim.protocols import DandelionKit, DiffusionKit, ProtocolKit
from murmur.sim.rng import SeededRng
from murmur.sim.scenario import RunRecord, Scenario, draw_world, simulate


@dataclass(frozen=True, slots=True)
class Hop:
    peer: int
    message: int


class Relay:
    """Forwards every message to the next node of a ring until its hop budget is spent."""

    def __init__(self, index: int, n: int) -> None:
        self._next = (index + 1) % n
        self._out: list[Hop] = []

    def receive_message(self, peer: int, message: int, now: float) -> None:
        if message > 0:
            self._out.append(Hop(self._next, message - 1))

    def handle_timer(self, now: float) -> None:
        """No timers."""

    def next_deadline(self) -> float | None:
        return None

    def drain_actions(self) -> list[Any]:
        out, self._out = self._out, []
        return out


def bench_engine(nodes: int, messages: int) -> dict[str, float]:
    engine = Engine(latency=UniformLatency(0.01, 0.3, seed=1), rng=SeededRng(1), uplink_bps=1e7)
    for index in range(nodes):
        relay = Relay(index, nodes)
        engine.add_node(relay, relay.receive_message)

    def send(node: SimNode, hop: Hop, now: float) -> None:
        engine.transmit(node, hop.peer, hop.message, 250, 0.0)

    engine.on_action(Hop, send)
    parallel = 1000  # messages in flight at once, like a busy network
    for k in range(parallel):
        start = engine.nodes[(k * 7919) % nodes]
        engine.transmit(start, (start.index + 1) % nodes, messages // parallel, 250, k * 1e-3)
    started = time.perf_counter()
    engine.run()
    wall = time.perf_counter() - started
    return {"events": engine.events, "wall_s": wall, "events_per_s": engine.events / wall}


def bench_protocol(
    kit: ProtocolKit, nodes: int, tx: int, seed: int, *, elide: bool = True
) -> dict[str, float]:
    scenario = Scenario(
        nodes=nodes, graph="daemon", tx_count=tx, tx_rate_per_s=10.0, elide_duplicates=elide
    )
    started = time.perf_counter()
    record = simulate(draw_world(scenario, seed), kit, scenario)
    return _figures(record, time.perf_counter() - started)


def bench_onion(nodes: int, tx: int, seed: int, *, standin: bool) -> dict[str, float]:
    scenario = Scenario(nodes=nodes, graph="daemon", tx_count=tx, tx_rate_per_s=10.0)
    started = time.perf_counter()
    record = OnionKit(standin_crypto=standin).run(draw_world(scenario, seed), scenario)
    return {
        **_figures(record, time.perf_counter() - started),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_baseline_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "standin_crypto": standin,
    }


def _figures(record: RunRecord, wall_s: float) -> dict[str, Any]:
    measured = (
        [(t.tx_id, t.origin, t.injected_at, t.reach_s, t.delivered) for t in record.txs],
        [tuple(sighting) for sighting in record.log.sightings],
        record.bytes_sent,
        record.messages_sent,
    )
    return {
        "events": record.events,
        "elided": record.elided,
        "wall_s": wall_s,
        "events_per_s": record.events / record.wall_s,
        "messages": record.messages_sent,
        "copies_per_s": record.messages_sent / record.wall_s,
        "delivered": sum(t.delivered for t in record.txs) / len(record.txs),
        "fingerprint": hashlib.sha256(repr(measured).encode()).hexdigest()[:16],
    }


def bench_with(pythonpath: Path, script: Path, argv: list[str]) -> dict[str, Any]:
    """The JSON of ``script`` run in a subprocess that imports ``murmur`` from ``pythonpath``."""
    out = subprocess.run(
        [sys.executable, str(script), *argv, "--json"],
        env={**os.environ, "PYTHONPATH": str(pythonpath)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    results: dict[str, Any] = json.loads(out)
    return results


def bench_at(rev: str, argv: list[str]) -> dict[str, Any]:
    """This benchmark's JSON with the code of git revision ``rev`` (see the module docstring)."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", rev, "src", "benchmarks"],
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tree:
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        return bench_with(Path(tree, "src"), Path(tree, "benchmarks", "bench_sim.py"), argv)


def _print_against(rev: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    print(f"against {rev}: wall s there / here (the same work: copies sent, results)")
    for name, r in new.items():
        o = old.get(name)
        if not isinstance(r, dict) or not isinstance(o, dict):
            continue
        work = ""
        if "messages" in o and "messages" in r:
            work = "same copies" if o["messages"] == r["messages"] else "OTHER copies"
        if "fingerprint" in o and "fingerprint" in r:
            same = o["fingerprint"] == r["fingerprint"]
            work += ", same results" if same else ", DIFFERENT results"
        print(
            f"  {name:20s} {o['wall_s']:7.1f} s / {r['wall_s']:7.1f} s = "
            f"{o['wall_s'] / r['wall_s']:5.2f}x  {work}"
        )


def _forwarded(args: argparse.Namespace) -> list[str]:
    """The arguments that choose the workloads, for the run at another revision."""
    argv = [
        *("--nodes", str(args.nodes), "--tx", str(args.tx), "--seed", str(args.seed)),
        *("--engine-messages", str(args.engine_messages)),
        *("--onion-nodes", str(args.onion_nodes), "--onion-tx", str(args.onion_tx)),
    ]
    if args.real_crypto:
        argv.append("--real-crypto")
    if args.skip_every_copy:
        argv.append("--skip-every-copy")
    return argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--tx", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine-messages", type=int, default=2_000_000)
    parser.add_argument("--onion-nodes", type=int, default=1000)
    parser.add_argument("--onion-tx", type=int, default=200)
    parser.add_argument("--real-crypto", action="store_true")
    parser.add_argument("--skip-every-copy", action="store_true")
    parser.add_argument("--json", action="store_true")
    against = parser.add_mutually_exclusive_group()
    against.add_argument("--against", metavar="REV", help="also run the code of git revision REV")
    against.add_argument(
        "--against-build", metavar="DIR", help="also run this code as built in DIR (build/mypyc)"
    )
    args = parser.parse_args()
    old: dict[str, Any] | None = None
    if args.against:
        old = bench_at(args.against, _forwarded(args))
    elif args.against_build:
        old = bench_with(Path(args.against_build).resolve(), Path(__file__), _forwarded(args))
    other = args.against or args.against_build
    build = build_name()
    results = {
        "engine": bench_engine(args.nodes, args.engine_messages),
        "diffusion": bench_protocol(DiffusionKit(), args.nodes, args.tx, args.seed),
        "dandelion": bench_protocol(DandelionKit(), args.nodes, args.tx, args.seed),
    }
    if not args.skip_every_copy:
        results["diffusion_every_copy"] = bench_protocol(
            DiffusionKit(), args.nodes, args.tx, args.seed, elide=False
        )
    if args.onion_nodes:
        results["onion"] = bench_onion(
            args.onion_nodes, args.onion_tx, args.seed, standin=not args.real_crypto
        )
    if args.json:
        against = {} if old is None else {"against": {"rev": other, **old}}
        head = {"nodes": args.nodes, "tx": args.tx, "build": build}
        print(json.dumps({**head, **results, **against}, indent=2))
        return
    print(f"{args.nodes} nodes x {args.tx} transactions (daemon graph, realistic network, {build})")
    for name, r in results.items():
        copies = f"{r['copies_per_s']:>9,.0f} copies/s" if "copies_per_s" in r else ""
        print(
            f"  {name:20s} {r['events']:>11,.0f} events  {r.get('elided', 0):>11,.0f} elided  "
            f"{r['wall_s']:7.1f} s  {r['events_per_s']:>9,.0f} events/s  {copies}"
        )
    if old is not None:
        _print_against(other, old, results)


if __name__ == "__main__":
    main()
