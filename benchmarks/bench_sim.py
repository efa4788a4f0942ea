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
  and its fast-path baseline, with the keyed crypto stand-in (``--real-crypto`` to run
  ML-DSA-87 and ML-KEM-1024 themselves). Also reports the peak memory of the process (the
  nodes share decoded announcements, so n relay directories cost about n x n small entries,
  not n x n x 9 kB).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import dataclass
from typing import Any

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
        "standin_crypto": standin,
    }


def _figures(record: RunRecord, wall_s: float) -> dict[str, float]:
    return {
        "events": record.events,
        "elided": record.elided,
        "wall_s": wall_s,
        "events_per_s": record.events / record.wall_s,
        "messages": record.messages_sent,
        "delivered": sum(t.delivered for t in record.txs) / len(record.txs),
    }


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
    args = parser.parse_args()
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
        print(json.dumps({"nodes": args.nodes, "tx": args.tx, **results}, indent=2))
        return
    print(f"{args.nodes} nodes x {args.tx} transactions (daemon graph, realistic network)")
    for name, r in results.items():
        print(
            f"  {name:20s} {r['events']:>11,.0f} events  {r.get('elided', 0):>11,.0f} elided  "
            f"{r['wall_s']:7.1f} s  {r['events_per_s']:>9,.0f} events/s"
        )


if __name__ == "__main__":
    main()
