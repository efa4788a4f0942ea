"""``murmur simulate``: run the simulator from the command line.

Three modes share one parser:

* ``murmur simulate [run] --protocol P ...``: one protocol on ``--runs`` independent worlds,
  with its baseline run alongside on each same world for the overheads (plain diffusion for
  diffusion and Dandelion++; for the onion protocol, the fast-path gossip of the same
  production nodes, run in the same simulation); prints one JSON object with ``--json`` (keys:
  protocol, nodes, spies, precision, recall, entropy_bits, latency_ms, latency_overhead_ms
  (a percentile less the baseline's), latency_overhead_paired_ms (a percentile of each
  transaction's own extra latency),
  bandwidth_overhead, relay_participation, delivered_ratio, tx_sent and tx_unsent (over all
  runs: under churn a transaction whose origin is down at its arrival is not sent, and no
  other figure counts it), wall_seconds, baseline, and more;
  for the onion protocol also ``crypto``, ``real`` or ``standin``; ``build``, ``mypyc`` when the
  compiled copy ran (``make compiled``), which changes wall times and nothing else), a table
  otherwise.
* ``murmur simulate sweep``: every protocol at spy fractions 0.05, 0.1, 0.2, 0.3.
* ``murmur simulate validate``: the Dandelion++ paper's first-spy figures, ours against theirs
  (exit status 1 if a figure is off by more than three of the paper's standard errors).

``--report DIR`` writes a Markdown report with plots. Progress goes to stderr (when it is a
terminal), results to stdout. The lead registers the parser with :func:`add_simulate_parser`;
``args.func`` is :func:`run_simulate`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from murmur.base.errors import ConfigError, LocalProtocolError
from murmur.interfaces.arguments import fraction, integer, real
from murmur.node.levels import LEVELS
from murmur.overlay.dandelion import DandelionConfig
from murmur.overlay.shaping.config import DelayRange, TimingLaw
from murmur.sim.build import build_name
from murmur.sim.denial import DENIAL_MODES
from murmur.sim.graphs import GRAPHS
from murmur.sim.network import NetworkConfig
from murmur.sim.onion import OnionKit
from murmur.sim.parallel import Job, run_jobs
from murmur.sim.protocols import DandelionKit, DiffusionKit, HostedKit, ProtocolKit
from murmur.sim.report import Entry, plus_minus, unsent_notes, validation_markdown, write_report
from murmur.sim.results import Aggregate, Overheads, aggregate, overheads
from murmur.sim.scenario import MIN_NODES, Scenario
from murmur.sim.validation import PAPER_RUNS, validate

PROTOCOLS = ("diffusion", "dandelion", "onion")
SWEEP_FRACTIONS = (0.05, 0.1, 0.2, 0.3)
ONION_PARALLEL_MAX_NODES = 300
"""Above this, onion runs go one at a time: each holds every node's relay directory (about
n x n x 9 kB: 9 GB at 1,000 nodes)."""

ProgressFn = Callable[[str, int, int], None]


def add_simulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="measure privacy, latency and bandwidth in the discrete-event simulator",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "mode",
        nargs="?",
        choices=("run", "sweep", "validate"),
        default="run",
        help="run one protocol (default), sweep spy fractions, or validate against the paper",
    )
    parser.add_argument("--nodes", type=integer(MIN_NODES), default=1000, metavar="N")
    parser.add_argument(
        "--spies",
        type=fraction(below_one=True),
        default=0.1,
        metavar="F",
        help="fraction of nodes that are spies (default 0.1)",
    )
    parser.add_argument(
        "--tx",
        type=integer(1),
        default=200,
        metavar="M",
        help="transactions per run (Poisson arrivals, uniform honest origins)",
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="dandelion")
    parser.add_argument(
        "--graph",
        choices=tuple(GRAPHS),
        default="daemon",
        help="peer graph (default: the graph the daemon builds)",
    )
    parser.add_argument(
        "--runs",
        type=integer(1),
        default=None,
        metavar="R",
        help=f"independent runs (default 1; {PAPER_RUNS} for validate)",
    )
    parser.add_argument("--seed", type=int, default=1, metavar="S")
    parser.add_argument(
        "--network",
        choices=("realistic", "ideal"),
        default="realistic",
        help="realistic: 10-300 ms links, jitter, 10 Mbit/s uplinks; ideal: none",
    )
    parser.add_argument("--tx-rate", type=real(0.0, above=True), default=10.0, metavar="PER_S")
    parser.add_argument(
        "--origins",
        type=integer(1),
        default=None,
        metavar="K",
        help="transactions come from K random honest nodes only (repeated origins)",
    )
    parser.add_argument(
        "--fluff",
        type=fraction(),
        default=0.1,
        metavar="Q",
        help="Dandelion++ fluff probability q (default 0.1)",
    )
    parser.add_argument(
        "--churn",
        type=real(0.0),
        default=0.0,
        metavar="PER_HOUR",
        help="rate at which each node leaves (per hour; default 0)",
    )
    parser.add_argument(
        "--taps",
        type=fraction(),
        default=0.0,
        metavar="F",
        help="fraction of honest nodes whose links a link observer taps",
    )
    parser.add_argument(
        "--standin-crypto",
        action="store_true",
        help="onion: replace ML-DSA-87 and ML-KEM-1024 by same-size keyed stand-ins (fast; "
        "off by default, reported when on)",
    )
    parser.add_argument(
        "--announce-flood",
        action="store_true",
        help="onion: flood peer announcements by gossip at start instead of handing every "
        "node the finished directory (slow beyond a few hundred nodes)",
    )
    parser.add_argument(
        "--level",
        choices=tuple(LEVELS),
        default=None,
        help="onion: every node's privacy level (default: the standard preset's)",
    )
    parser.add_argument(
        "--cover-rate",
        type=real(0.0),
        default=None,
        metavar="PER_S",
        help="onion: override the level's background cover rate (0: none), for tuning",
    )
    parser.add_argument(
        "--cover-to-second-hop",
        action="store_true",
        help="onion: address cover to hop 2 instead of the exit, for tuning",
    )
    parser.add_argument(
        "--origin-delay",
        type=_delay_range_ms,
        default=None,
        metavar="MIN,MAX",
        help="onion: hold each private message at its origin for a uniform delay (ms), for tuning",
    )
    parser.add_argument(
        "--relay-delay",
        type=_delay_range_ms,
        default=None,
        metavar="MIN,MAX",
        help="onion: relays hold each cell they forward for a uniform delay (ms; 0,0: none), "
        "overriding the level's, for tuning",
    )
    parser.add_argument(
        "--slot-law",
        choices=tuple(law.value for law in TimingLaw),
        default=None,
        help="onion: time the level's sending slots by this law (levels with slots), for tuning",
    )
    parser.add_argument(
        "--build-race",
        type=integer(1),
        default=None,
        metavar="K",
        help="onion: override the candidate circuits raced per pool slot, for tuning",
    )
    parser.add_argument(
        "--near-first-hops",
        type=integer(0),
        default=None,
        metavar="K",
        help=(
            "onion: draw hop 1 from the K lowest-latency outbound links (0: any relay); "
            "the near_entry estimator measures what that tells a spy at hop 2"
        ),
    )
    parser.add_argument(
        "--regional-paths",
        action="store_true",
        help="onion: draw every hop (entry guards included) from relays in the origin's own "
        "region, placed by a region map of the world's addresses, for tuning",
    )
    parser.add_argument(
        "--race-before-exit",
        action="store_true",
        default=None,
        help="onion: decide build races before the exit (the exit's link stays a random draw)",
    )
    parser.add_argument(
        "--entry-guards",
        type=integer(0),
        default=None,
        metavar="K",
        help="onion: take hop 1 from K entry guards (0: from every relay), for tuning",
    )
    parser.add_argument(
        "--circuit-lifetime",
        type=real(0.0, above=True),
        default=None,
        metavar="S",
        help="onion: rotate circuits after S seconds (plus jitter), to fit many rotations in a run",
    )
    parser.add_argument(
        "--path-bias",
        choices=("on", "off"),
        default=None,
        help="onion: whether nodes disable entry guards whose circuits fail past them "
        "(default: on, as in every preset)",
    )
    parser.add_argument(
        "--path-bias-baseline",
        choices=("on", "off"),
        default=None,
        help="onion: whether path bias lowers its bar when the node's own relay sees circuits "
        "fail too (default: on, as in every preset)",
    )
    parser.add_argument(
        "--overload",
        type=fraction(),
        default=0.0,
        metavar="SHARE",
        help="onion: every honest relay refuses this share of the circuits other relays "
        "extend to it (a network in trouble; path bias's false alarms)",
    )
    parser.add_argument(
        "--selective-denial",
        choices=DENIAL_MODES,
        default=None,
        help="onion: spies serve circuits from honest relays only towards fellow spies, "
        "refusing to extend them (extend) or dropping what they carry (carry)",
    )
    parser.add_argument(
        "--upkeep-window",
        type=real(0.0),
        default=0.0,
        metavar="S",
        help="onion: then measure directory upkeep, every node re-announcing within S seconds",
    )
    parser.add_argument(
        "--eager-announcements",
        action="store_true",
        help="onion: push announcements in full to the mesh (the comparison for lazy forwarding)",
    )
    parser.add_argument(
        "--jobs",
        type=integer(1),
        default=os.cpu_count() or 1,
        metavar="J",
        help=(
            "runs side by side in J processes (default: one per CPU); an onion run forks its"
            " fast-path baseline into a second process whatever J is"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="write a Markdown report with plots into DIR",
    )
    parser.set_defaults(func=run_simulate)
    return parser


def run_simulate(args: argparse.Namespace) -> int:
    """Runs the mode asked for. A setting the simulator refuses raises ``ConfigError``, which
    ``murmur``'s ``main`` reports on one line with exit status 2, like every other command's."""
    with _progress(Console(stderr=True)) as progress:
        if args.mode == "validate":
            return _validate(args, progress)
        if args.mode == "sweep":
            return _sweep(args, progress)
        return _run(args, progress)


# -- modes --------------------------------------------------------------------------------


def _run(args: argparse.Namespace, progress: ProgressFn) -> int:
    started = time.perf_counter()
    result, baseline = _measure(args, args.protocol, args.spies, progress)
    cost = overheads(result, baseline)
    wall = time.perf_counter() - started
    entry = _entry(args.spies, result, baseline, cost)
    report = _result_json(args, entry, wall)
    if args.report is not None:
        entries = [entry] if result is baseline else [entry, Entry(args.spies, baseline)]
        write_report(
            args.report,
            title=f"murmur simulate: {args.protocol}",
            settings=_settings(args),
            entries=entries,
        )
    _emit(args, report, [entry])
    return 0


def _sweep(args: argparse.Namespace, progress: ProgressFn) -> int:
    started = time.perf_counter()
    entries: list[Entry] = []
    for spies in SWEEP_FRACTIONS:
        for protocol in ("dandelion", "onion"):
            result, baseline = _measure(args, protocol, spies, progress)
            entries.append(_entry(spies, baseline, baseline, overheads(baseline, baseline)))
            entries.append(_entry(spies, result, baseline, overheads(result, baseline)))
    wall = time.perf_counter() - started
    if args.report is not None:
        settings = _settings(args)
        settings["spy fraction"] = ", ".join(f"{f:g}" for f in SWEEP_FRACTIONS)
        write_report(args.report, title="murmur simulate sweep", settings=settings, entries=entries)
    if args.json:
        payload = {
            "mode": "sweep",
            "spy_fractions": list(SWEEP_FRACTIONS),
            "results": [_result_json(args, e, None) for e in entries],
            "wall_seconds": round(wall, 3),
        }
        print(json.dumps(_clean(payload), indent=2))
    else:
        _emit(args, {}, entries)
    return 0


def _validate(args: argparse.Namespace, progress: ProgressFn) -> int:
    runs = args.runs or PAPER_RUNS
    rows = validate(
        runs=runs,
        nodes=args.nodes,
        seed=args.seed,
        workers=args.jobs,
        progress=lambda job, done, total: progress(job.label, done, total),
    )
    table = validation_markdown(rows)
    if args.report is not None:
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "validation.md").write_text(
            f"# Validation against Dandelion++ (n = {args.nodes}, p = 0.1, seed {args.seed})\n\n"
            + table
        )
    ok = all(row.precision_ok and row.recall_ok and row.floors_ok for row in rows)
    if args.json:
        payload = {
            "mode": "validate",
            "ok": ok,
            "rows": [
                {
                    "setting": row.figure.label,
                    "protocol": row.figure.protocol,
                    "graph": row.figure.graph,
                    "runs": row.runs,
                    "nodes": row.nodes,
                    "paper": {
                        "precision": row.figure.precision,
                        "precision_se": row.figure.precision_se,
                        "recall": row.figure.recall,
                        "recall_se": row.figure.recall_se,
                    },
                    "ours": {
                        "precision": row.precision,
                        "precision_se": row.precision_se,
                        "recall": row.recall,
                        "recall_se": row.recall_se,
                    },
                    "within_3_se": row.precision_ok and row.recall_ok,
                    "floors_hold": row.floors_ok,
                    "wall_seconds": round(row.wall_s, 3),
                }
                for row in rows
            ],
        }
        print(json.dumps(_clean(payload), indent=2))
    else:
        print(table, end="")
    return 0 if ok else 1


# -- measuring ----------------------------------------------------------------------------


def _measure(
    args: argparse.Namespace, protocol: str, spy_fraction: float, progress: ProgressFn
) -> tuple[Aggregate, Aggregate]:
    """``protocol`` and its baseline on the same ``--runs`` worlds: diffusion, or for the onion
    protocol the fast path each run carries (``RunSummary.baseline``)."""
    scenario = _scenario(args, spy_fraction)
    runs = args.runs or 1
    kit = _kit(protocol, args)
    kits: list[ProtocolKit | HostedKit] = [kit]
    if protocol == "dandelion":
        kits.append(DiffusionKit())
    jobs = [
        Job(scenario, k, args.seed + run, f"{k.name} f={spy_fraction:g} run {run + 1}/{runs}")
        for k in kits
        for run in range(runs)
    ]
    workers = args.jobs
    if isinstance(kit, OnionKit) and args.nodes > ONION_PARALLEL_MAX_NODES:
        workers = 1
    summaries = run_jobs(
        jobs,
        workers=workers,
        progress=lambda job, done, total: progress(job.label, done, total),
    )
    result = aggregate(summaries[:runs])
    if protocol == "dandelion":
        return result, aggregate(summaries[runs:])
    if protocol == "onion":
        fast = [s.baseline for s in summaries[:runs] if s.baseline is not None]
        return result, aggregate(fast)
    return result, result


def _entry(spies: float, result: Aggregate, baseline: Aggregate, cost: Overheads) -> Entry:
    return Entry(
        spies,
        result,
        latency_overhead_ms=cost.latency_ms,
        paired_latency_overhead_ms=cost.paired_latency_ms,
        bandwidth_overhead=cost.bandwidth,
        baseline=baseline.protocol,
    )


def _scenario(args: argparse.Namespace, spy_fraction: float) -> Scenario:
    network = NetworkConfig.ideal() if args.network == "ideal" else NetworkConfig()
    if args.churn:
        network = NetworkConfig(
            latency=network.latency,
            jitter_fraction=network.jitter_fraction,
            uplink_mbps=network.uplink_mbps,
            churn_per_node_per_hour=args.churn,
        )
    return Scenario(
        nodes=args.nodes,
        graph=args.graph,
        spy_fraction=spy_fraction,
        tap_fraction=args.taps,
        tx_count=args.tx,
        tx_rate_per_s=args.tx_rate,
        origin_count=args.origins,
        network=network,
    )


def _delay_range_ms(text: str) -> DelayRange:
    """``MIN,MAX`` in milliseconds, as argparse reads ``--origin-delay`` and ``--relay-delay``."""
    try:
        low, high = (float(part) / 1000.0 for part in text.split(","))
        return DelayRange(low, high)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"want MIN,MAX in milliseconds with 0 <= MIN <= MAX, got {text!r}"
        ) from None


def _kit(protocol: str, args: argparse.Namespace) -> ProtocolKit | HostedKit:
    if protocol == "diffusion":
        return DiffusionKit()
    if protocol == "onion":
        if args.churn:
            raise ConfigError("the onion protocol is not simulated under churn yet")
        try:
            return OnionKit(
                standin_crypto=args.standin_crypto,
                announce_flood=args.announce_flood,
                level=args.level,
                cover_rate_per_s=args.cover_rate,
                cover_to_second_hop=args.cover_to_second_hop or None,
                build_race=args.build_race,
                near_first_hops=args.near_first_hops,
                regional_paths=args.regional_paths or None,
                race_through_exit=False if args.race_before_exit else None,
                entry_guards=args.entry_guards,
                circuit_lifetime_s=args.circuit_lifetime,
                path_bias=None if args.path_bias is None else args.path_bias == "on",
                path_bias_baseline=None
                if args.path_bias_baseline is None
                else args.path_bias_baseline == "on",
                overload=args.overload,
                selective_denial=args.selective_denial,
                origin_delay=args.origin_delay,
                relay_delay=args.relay_delay,
                slot_law=None if args.slot_law is None else TimingLaw(args.slot_law),
                upkeep_window_s=args.upkeep_window,
                eager_announcements=args.eager_announcements,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    try:
        config = DandelionConfig(fluff_probability=args.fluff)
    except LocalProtocolError as exc:
        raise ConfigError(str(exc)) from exc
    # On the exact 4-regular graph the stem graph is the graph itself (2 out, 2 in per node).
    return DandelionKit(config=config, exact_stem=args.graph == "regular4")


@contextmanager
def _progress(console: Console) -> Iterator[ProgressFn]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total)
        bar.update(tasks[label], completed=done)

    with bar:
        yield update


# -- output -------------------------------------------------------------------------------


def _result_json(args: argparse.Namespace, entry: Entry, wall: float | None) -> dict[str, Any]:
    r = entry.result
    payload: dict[str, Any] = {
        "protocol": r.protocol,
        "nodes": r.nodes,
        "spies": entry.spy_fraction,
        "spy_count": r.spies,
        "graph": args.graph,
        "network": args.network,
        "taps": args.taps,
        "tx": args.tx,
        "tx_sent": r.tx_sent,
        "tx_unsent": r.tx_unsent,
        "runs": r.runs,
        "seed": args.seed,
        "precision": r.precision,
        "recall": r.recall,
        "precision_se": r.precision_se,
        "recall_se": r.recall_se,
        "entropy_bits": r.entropy_bits,
        "latency_ms": r.latency_ms,
        "reach_ms": r.reach_ms,
        "latency_overhead_ms": entry.latency_overhead_ms,
        "latency_overhead_paired_ms": entry.paired_latency_overhead_ms,
        "bandwidth_overhead": entry.bandwidth_overhead,
        "bytes_per_node_s": r.bytes_per_node_s,
        "relay_participation": r.relay_participation,
        "delivered_ratio": r.delivered_ratio,
        "events_per_s": r.events / r.wall_s if r.wall_s else None,
        "baseline": entry.baseline,
    }
    if r.protocol == "onion":
        payload["crypto"] = r.extras.get("crypto")
        payload["directory"] = r.extras.get("directory")
        payload["level"] = r.extras.get("level")
        shown = ("crypto", "directory", "level")
        payload["onion"] = {k: v for k, v in r.extras.items() if k not in shown}
    if wall is not None:
        payload["wall_seconds"] = round(wall, 3)
    payload["build"] = build_name()
    return payload


def _emit(args: argparse.Namespace, payload: dict[str, Any], entries: list[Entry]) -> None:
    if args.json:
        print(json.dumps(_clean(payload), indent=2))
        return
    privacy = Table(title="privacy (Fanti et al. precision / recall)")
    for column in ("protocol", "spies", "estimator", "precision", "recall"):
        privacy.add_column(column)
    cost = Table(title="anonymity, latency (reach 90 %) and cost, versus the baseline")
    columns = (
        "protocol",
        "spies",
        "entropy bits",
        "ms p50/p99",
        "+ms p50/p99",
        "+ms paired",
        "bytes x",
        "vs",
    )
    for column in columns:
        cost.add_column(column)
    for entry in entries:
        r = entry.result
        spies = f"{entry.spy_fraction:g}"
        for name in r.precision:
            privacy.add_row(
                r.protocol,
                spies,
                name,
                plus_minus(r.precision[name], r.precision_se[name]),
                plus_minus(r.recall[name], r.recall_se[name]),
            )
        overhead, paired = entry.latency_overhead_ms, entry.paired_latency_overhead_ms
        cost.add_row(
            r.protocol,
            spies,
            f"{r.entropy_bits:.2f}",
            f"{r.latency_ms['p50']:.0f} / {r.latency_ms['p99']:.0f}",
            f"{overhead['p50']:.0f} / {overhead['p99']:.0f}" if overhead else "-",
            f"{paired['p50']:.0f} / {paired['p99']:.0f}" if paired else "-",
            f"{entry.bandwidth_overhead:.2f}" if entry.bandwidth_overhead else "-",
            entry.baseline or "-",
        )
    console = Console()
    console.print(privacy)
    console.print(cost)
    for line in unsent_notes(entries):
        console.print(line)


def _settings(args: argparse.Namespace) -> dict[str, object]:
    return {
        "nodes": args.nodes,
        "spy fraction": args.spies,
        "transactions per run": args.tx,
        "transaction rate (per s)": args.tx_rate,
        "origins": args.origins or "every honest node",
        "graph": args.graph,
        "network": args.network,
        "Dandelion++ fluff probability q": args.fluff,
        "churn (per node per hour)": args.churn,
        "link observer (honest nodes tapped)": args.taps,
        "onion crypto": "stand-in (ML-DSA, ML-KEM)" if args.standin_crypto else "real",
        "onion directories": "announcement flood" if args.announce_flood else "preloaded",
        "onion level": args.level or "standard (preset)",
        "onion cover rate override (per s)": args.cover_rate,
        "onion cover to hop 2": args.cover_to_second_hop or None,
        "onion origin delay (ms)": (
            None if args.origin_delay is None else args.origin_delay.label_ms()
        ),
        "onion relay delay override (ms)": (
            None if args.relay_delay is None else args.relay_delay.label_ms()
        ),
        "onion slot law override": args.slot_law,
        "onion build race override": args.build_race,
        "onion near first hops override": args.near_first_hops,
        "onion regional paths": args.regional_paths or None,
        "onion race decided before the exit": args.race_before_exit,
        "onion entry guards override": args.entry_guards,
        "onion circuit lifetime override (s)": args.circuit_lifetime,
        "onion path bias override": args.path_bias,
        "onion path bias baseline override": args.path_bias_baseline,
        "onion relays overloaded (share refused)": args.overload or None,
        "onion spies' selective denial": args.selective_denial,
        "onion directory upkeep window (s)": args.upkeep_window or None,
        "onion announcements": "eager push" if args.eager_announcements else "lazy",
        "runs": args.runs or 1,
        "seed": args.seed,
    }


def _clean(value: Any) -> Any:
    """JSON has no NaN: missing measurements become null."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
