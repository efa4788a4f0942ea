"""``murmur testnet``: N real node processes on loopback, a workload, and a report.

Each node gets its own directory, identity and port; each dials a few random others. The
testnet waits for every node to join the gossip mesh, publishes messages from random nodes at a
fixed rate, waits until every node has them (or a timeout), reads each node's delivery log
through the control API, and reports delivery ratio, propagation latency and wire bytes per
delivered payload byte. With ``path="private"`` every node runs privacy level ``level`` and every
transaction asks for it; the report adds the bytes each node sends per second while idle and
during the private phase, with and without cover traffic (cover cells and link padding frames
are counted by the nodes, and each one costs exactly one link record per hop it crosses).
With ``path="dandelion"`` the transactions leave their origins on a Dandelion++ stem instead,
and the report adds how they were fluffed (by a fluff-role node, or by an embargo's fail-safe,
which is also what ends a stem that loops: its delivery wait allows for that).
Delivery times are ``time.monotonic()`` in each node process, which on Linux is one system-wide
clock, so latencies across processes are comparable. Every process it started is stopped on the
way out, and its temporary directory (the nodes' identity keys) removed, whatever happened:
an error, Ctrl-C, SIGTERM or SIGHUP (:mod:`murmur.interfaces.signals`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, TaskID

from murmur.base.errors import ConfigError, MurmurError
from murmur.base.ids import NodeId
from murmur.interfaces.api_client import ApiClient
from murmur.interfaces.signals import shielded, terminate_by_exception
from murmur.node.config import BootstrapPeer, HostPort, NodeConfig
from murmur.overlay.stem import EMBARGO_MEAN_S
from murmur.runtime.keystore import init_node_dir, read_guards
from murmur.wire.link import CELL_RECORD_BYTES

TESTNET_PATHS = ("fast", "private", "dandelion")

MIN_NODES = 2
"""Delivery and latency are measured at the nodes other than each message's origin: one node
alone has no receiver, and no peer to form a mesh with."""
MAX_PRIVATE_NODES = 255
"""The private path puts node i on its own /16, 127.(i + 1).0.0/16."""
TESTNET_TOPIC = "block_header"
PRIVATE_TOPIC = "transaction"
CIRCUIT_TIMEOUT_S = 60.0
MIN_CIRCUITS = 3
HANDSHAKE_FAILURES = frozenset(
    {"handshake_timeout", "auth_failed", "crypto", "unexpected_peer", "bad_version"}
)
STARTUP_TIMEOUT_S = 30.0
MESH_TIMEOUT_S = 30.0
DELIVERY_TIMEOUT_S = 30.0
STEM_DELIVERY_TIMEOUT_S = 5 * EMBARGO_MEAN_S
"""A stem that loops (likely among a few nodes) ends only at an embargo: exponential, mean
``EMBARGO_MEAN_S`` at each node holding the transaction, so waiting five means misses fewer
than one in a hundred such transactions even when only one node holds it."""
PEERS_DIALLED = 4
IDLE_WINDOW_S = 2.0


class TestnetError(MurmurError):
    """The testnet could not run: a node exited at start, or no port was free. The CLI prints
    it on one line (a node's exit carries the tail of its log)."""

    __test__ = False  # not a pytest class, whatever its name


@dataclass
class NetNode:
    index: int
    directory: Path
    host: str
    port: int
    node_id: str
    process: subprocess.Popen[bytes] | None = None
    client: ApiClient | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.directory / "node.log"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_LISTEN_PORT = 10_000


def _ephemeral_low() -> int:
    """The lowest port the kernel hands to outgoing connections (Linux default 32768)."""
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_listen_port(host: str, rng: random.Random, taken: set[int] | None = None) -> int:
    """A port ``host`` can listen on, below the kernel's ephemeral range.

    A port the kernel picks with ``bind(0)`` is free only until something else takes it, and
    the nodes started first dial out at once: their outgoing connections draw source ports
    from the ephemeral range and took a later node's port in CI (``EADDRINUSE`` at its start).
    Ports below that range are never used as source ports, so checking one with a bind is
    enough. ``taken`` holds the ports already handed out for this testnet.
    """
    taken = set() if taken is None else taken
    high = max(_ephemeral_low(), LOWEST_LISTEN_PORT + 1)
    for _ in range(1_000):
        port = rng.randrange(LOWEST_LISTEN_PORT, high)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise TestnetError(f"no free listen port on {host} below {high}")


def _host_for(index: int, distinct_prefixes: bool) -> str:
    """127.N.0.1 puts every node on its own /16 when the prefix rule must be exercised."""
    return f"127.{index + 1}.0.1" if distinct_prefixes else "127.0.0.1"


@contextlib.contextmanager
def running_testnet(
    n: int,
    *,
    base: Path,
    rng: random.Random,
    distinct_prefixes: bool = False,
    extra_env: dict[str, str] | None = None,
    node_config: NodeConfig | None = None,
) -> Iterator[list[NetNode]]:
    """Starts ``n`` node processes (torn down on exit, even on error)."""
    nodes: list[NetNode] = []
    ports: set[int] = set()
    # Its own unseeded stream: the workload's draws stay as they were, and a rerun with the
    # same seed does not aim at the ports of a run whose sockets may still linger.
    port_rng = random.Random()
    for i in range(n):
        host = _host_for(i, distinct_prefixes)
        directory = base / f"node{i:03d}"
        identity = init_node_dir(directory, config=node_config or NodeConfig())
        port = free_listen_port(host, port_rng, ports)
        nodes.append(NetNode(i, directory, host, port, identity.node_id.hex()))
    env = {**os.environ, **(extra_env or {})}
    try:
        for node in nodes:
            others = [o for o in nodes if o is not node]
            peers = rng.sample(others, min(PEERS_DIALLED, len(others)))
            argv = [
                sys.executable,
                "-m",
                "murmur.interfaces.cli",
                "node",
                "--dir",
                str(node.directory),
                "--listen",
                f"{node.host}:{node.port}",
            ]
            for p in peers:
                target = BootstrapPeer(HostPort(p.host, p.port), NodeId(bytes.fromhex(p.node_id)))
                argv += ["--peer", str(target)]
            with node.log.open("wb") as log, shielded():
                node.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        for node in nodes:
            while node.client is None:
                if node.process is not None and node.process.poll() is not None:
                    raise TestnetError(
                        f"node {node.index} exited at start: {node.log.read_text()[-2000:]}"
                    )
                with contextlib.suppress(Exception):
                    node.client = ApiClient.from_node_dir(node.directory)
                    node.client.call("status")
                    break
                node.client = None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"node {node.index} did not start")
                time.sleep(0.05)
        yield nodes
    finally:
        with shielded():
            stop_nodes(nodes)


def stop_nodes(nodes: list[NetNode]) -> None:
    for node in nodes:
        if node.client is not None and node.process is not None and node.process.poll() is None:
            with contextlib.suppress(Exception):
                node.client.call("shutdown", timeout_s=2.0)
    deadline = time.monotonic() + 5.0
    for node in nodes:
        if node.process is None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        if node.process.poll() is None:
            node.process.kill()
            node.process.wait()


def wait_for_mesh(nodes: list[NetNode], topic: str, timeout_s: float = MESH_TIMEOUT_S) -> float:
    """Seconds until every node has peers and a mesh for ``topic``."""
    start = time.monotonic()
    want = min(2, len(nodes) - 1)
    while True:
        ready = 0
        for node in nodes:
            assert node.client is not None
            status = node.client.call("status")
            mesh = status["topics"].get("mesh", {}).get(topic, 0)
            if len(status["peers"]) >= want and mesh >= want:
                ready += 1
        if ready == len(nodes):
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"mesh not formed: {ready}/{len(nodes)} nodes ready")
        time.sleep(0.2)


def _statuses(nodes: list[NetNode]) -> list[dict[str, Any]]:
    statuses = []
    for node in nodes:
        assert node.client is not None
        statuses.append(node.client.call("status"))
    return statuses


def _wire_bytes(nodes: list[NetNode]) -> int:
    return sum(sum(p["bytes_out"] for p in s["peers"]) for s in _statuses(nodes))


@dataclass(frozen=True)
class Traffic:
    """What the nodes have sent so far: wire bytes, and the cover they counted."""

    at: float
    wire_bytes: int
    cover_cells: int
    padding_frames: int

    @classmethod
    def now(cls, nodes: list[NetNode]) -> Traffic:
        statuses = _statuses(nodes)
        return cls(
            time.monotonic(),
            sum(sum(p["bytes_out"] for p in s["peers"]) for s in statuses),
            sum(s["circuits"].get("client.cover_cells_sent", 0) for s in statuses),
            sum(s["counters"].get("link.frames_sent.padding", 0) for s in statuses),
        )


def _bytes_per_node_per_s(
    before: Traffic, after: Traffic, nodes: int, hops: int
) -> dict[str, float]:
    """Sent bytes per node per second between two readings, with and without the cover.

    A cover cell crosses ``hops`` links (the exit drops it), one cell record on each; a padding
    frame is one record on one link. Readings of the live links only, so a link that closed in
    between makes the figures a lower bound."""
    seconds = max(after.at - before.at, 1e-9)
    total = after.wire_bytes - before.wire_bytes
    cover = CELL_RECORD_BYTES * (
        (after.cover_cells - before.cover_cells) * hops
        + after.padding_frames
        - before.padding_frames
    )
    return {
        "with_cover": round(total / nodes / seconds, 1),
        "without_cover": round(max(total - cover, 0) / nodes / seconds, 1),
        "cover": round(cover / nodes / seconds, 1),
    }


def _handshake_failures(statuses: list[dict[str, Any]]) -> int:
    failures = 0
    for status in statuses:
        for name, value in status["counters"].items():
            if name.startswith("links_closed.") and name.split(".", 1)[1] in HANDSHAKE_FAILURES:
                failures += value
    return failures


def wait_for_circuits(nodes: list[NetNode], timeout_s: float = CIRCUIT_TIMEOUT_S) -> float:
    """Seconds until every node knows every relay and has built its pool of circuits."""
    start = time.monotonic()
    while True:
        statuses = _statuses(nodes)
        ready = sum(
            1
            for s in statuses
            if s["relays_known"] >= len(nodes) - 1
            and s["circuits"].get("client.circuits_built", 0) >= MIN_CIRCUITS
        )
        if ready == len(nodes):
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"circuits not ready: {ready}/{len(nodes)} nodes")
        time.sleep(0.2)


@dataclass
class PhaseResult:
    """One workload on one path: who published what when, who saw it when, and the bytes."""

    latencies_ms: list[float]
    delivery_ratio: float
    wire_bytes: int
    payload_bytes: int


def _run_phase(
    net: list[NetNode],
    *,
    topic: str,
    count: int,
    size: int,
    rate: float,
    rng: random.Random,
    progress: Progress,
    task: TaskID,
    include_origin: bool,
    level: str | None = None,
    route: str | None = None,
) -> PhaseResult:
    bytes_before = _wire_bytes(net)
    published: dict[str, tuple[int, float]] = {}
    progress.update(task, description=f"publishing on {topic}", total=count, completed=0)
    for _ in range(count):
        origin = rng.choice(net)
        assert origin.client is not None
        params = {"topic": topic, "data_hex": rng.randbytes(size).hex()}
        if level is not None:
            params["level"] = level
        if route is not None:
            params["route"] = route
        result = origin.client.call("publish", params)
        published[result["message_id"]] = (origin.index, result["published_at"])
        progress.advance(task)
        time.sleep(1.0 / rate)
    progress.update(task, description=f"waiting for delivery on {topic}", total=None)
    timeout_s = STEM_DELIVERY_TIMEOUT_S if route == "dandelion" else DELIVERY_TIMEOUT_S
    logs = _collect_deliveries(net, set(published), timeout_s)
    wire_bytes = _wire_bytes(net) - bytes_before
    latencies: list[float] = []
    for msg_id, (origin_index, t0) in published.items():
        for index, log in enumerate(logs):
            if index == origin_index and not include_origin:
                continue
            t = log.get(msg_id)
            if t is not None:
                latencies.append((t - t0) * 1000.0)
    receivers = len(net) if include_origin else len(net) - 1
    expected = len(published) * receivers
    return PhaseResult(
        latencies_ms=latencies,
        delivery_ratio=len(latencies) / expected if expected else 1.0,
        wire_bytes=wire_bytes,
        payload_bytes=len(published) * size,
    )


def _latency_summary(latencies: list[float]) -> dict[str, float | None]:
    return {
        "p50": round(percentile(latencies, 0.50), 3),
        "p95": round(percentile(latencies, 0.95), 3),
        "p99": round(percentile(latencies, 0.99), 3),
        "max": round(max(latencies), 3) if latencies else None,
    }


def _check_node_count(nodes: int, hops: int | None) -> None:
    """Refuses, before any process starts, a count the testnet cannot measure. ``hops``: the
    circuit length on the private path, whose circuits need that many relays on /16s distinct
    from each other and from their origin's."""
    if nodes < MIN_NODES:
        raise ConfigError(f"a testnet needs at least {MIN_NODES} nodes, got {nodes}")
    if hops is None:
        return
    if nodes < hops + 1:
        raise ConfigError(
            f"the private path needs at least {hops + 1} nodes ({hops}-hop circuits of relays "
            f"on distinct /16s, none the origin's), got {nodes}"
        )
    if nodes > MAX_PRIVATE_NODES:
        raise ConfigError(
            f"the private path gives each node its own /16 of 127.0.0.0/8: "
            f"at most {MAX_PRIVATE_NODES} nodes, got {nodes}"
        )


@contextlib.contextmanager
def _scratch_directory() -> Iterator[Path]:
    """The nodes' directories, removed on the way out (shielded: a signal must not stop the
    removal halfway and leave identity keys behind)."""
    base = Path(tempfile.mkdtemp(prefix="murmur-testnet-"))
    try:
        yield base
    finally:
        with shielded():
            shutil.rmtree(base, ignore_errors=True)


def run_testnet(
    *,
    nodes: int,
    messages: int,
    tx: int = 0,
    path: str = "fast",
    size: int = 512,
    rate: float = 50.0,
    seed: int = 1,
    level: str = "standard",
    console: Console | None = None,
) -> dict[str, Any]:
    """Runs the testnet. ``path="private"`` also sends ``tx`` transactions through circuits,
    after the fast-path workload, so both are measured on the same network in one run; every
    node runs privacy ``level`` and every transaction asks for it. ``path="dandelion"`` sends
    them on Dandelion++ stems instead."""
    if path not in TESTNET_PATHS:
        raise ValueError(f"unknown path {path!r} (one of {', '.join(TESTNET_PATHS)})")
    private = path == "private"
    stem = path == "dandelion"
    node_config = NodeConfig(privacy_level=level) if private else NodeConfig()
    hops = node_config.privacy().preset.hops
    _check_node_count(nodes, hops if private else None)
    console = console or Console(stderr=True)
    rng = random.Random(seed)
    started = time.monotonic()
    idle_rate = phase_rate = None
    with (
        terminate_by_exception(),
        _scratch_directory() as base,
        Progress(console=console, transient=True) as progress,
    ):
        task = progress.add_task(f"starting {nodes} nodes", total=None)
        with running_testnet(
            nodes, base=base, rng=rng, distinct_prefixes=private, node_config=node_config
        ) as net:
            progress.update(task, description="waiting for the gossip mesh")
            mesh_s = wait_for_mesh(net, TESTNET_TOPIC)
            circuits_s = None
            if private:
                progress.update(task, description="waiting for announcements and circuits")
                circuits_s = wait_for_circuits(net)
                progress.update(task, description="measuring idle traffic")
                idle_start = Traffic.now(net)
                time.sleep(IDLE_WINDOW_S)
                idle_rate = _bytes_per_node_per_s(idle_start, Traffic.now(net), nodes, hops)
            phase = functools.partial(
                _run_phase, net, size=size, rate=rate, rng=rng, progress=progress, task=task
            )
            fast = phase(topic=TESTNET_TOPIC, count=messages, include_origin=False)
            onion = stemmed = None
            if stem:
                stemmed = phase(
                    topic=PRIVATE_TOPIC, count=tx, include_origin=True, route="dandelion"
                )
            if private:
                phase_start = Traffic.now(net)
                onion = phase(topic=PRIVATE_TOPIC, count=tx, include_origin=True, level=level)
                phase_rate = _bytes_per_node_per_s(phase_start, Traffic.now(net), nodes, hops)
            statuses = _statuses(net)
            saved_guards = [
                [g.node_id.hex() for g in read_guards(node.directory).records] for node in net
            ]
    main = onion or stemmed or fast
    result: dict[str, Any] = {
        "nodes": nodes,
        "path": path,
        "messages": messages,
        "tx": tx if private or stem else 0,
        "message_bytes": size,
        "delivery_ratio": round(main.delivery_ratio, 6),
        "latency_ms": _latency_summary(main.latencies_ms),
        "fast_path_delivery_ratio": round(fast.delivery_ratio, 6),
        "fast_path_latency_ms": _latency_summary(fast.latencies_ms),
        "wire_bytes_per_payload_byte": (
            round(main.wire_bytes / (main.payload_bytes * (nodes - 1)), 3)
            if main.payload_bytes and nodes > 1
            else None
        ),
        "handshake_failures": _handshake_failures(statuses),
        "mesh_formed_s": round(mesh_s, 3),
    }
    if stemmed is not None:
        counters = [s["counters"] for s in statuses]
        result.update(
            {
                "latency_overhead_ms": _overhead(stemmed, fast),
                "wire_bytes_per_tx_byte": round(stemmed.wire_bytes / stemmed.payload_bytes, 3),
                "fluffs": {
                    why: sum(c.get(f"stem.fluffed.{why}", 0) for c in counters)
                    for why in ("role", "embargo", "no_stem_peer", "stempool_full")
                },
                "stem_hops": sum(c.get("stem.stemmed", 0) for c in counters),
                "duplicate_deliveries": _duplicates(statuses, tx),
            }
        )
    if onion is not None:
        result.update(
            {
                "level": level,
                "bytes_per_node_per_s_idle": idle_rate,
                "bytes_per_node_per_s_private_phase": phase_rate,
                "latency_overhead_ms": _overhead(onion, fast),
                "wire_bytes_per_tx_byte": round(onion.wire_bytes / onion.payload_bytes, 3),
                "fast_wire_bytes_per_message_byte": round(fast.wire_bytes / fast.payload_bytes, 3)
                if fast.payload_bytes
                else None,
                "relay_participation": round(
                    sum(
                        1
                        for s in statuses
                        if s["circuits"].get("relay.cells_relayed", 0)
                        + s["circuits"].get("relay.cells_recognized", 0)
                        > 0
                    )
                    / len(statuses),
                    3,
                ),
                "exit_publications": sum(
                    s["circuits"].get("relay.exit_publications", 0) for s in statuses
                ),
                "duplicate_deliveries": _duplicates(statuses, tx),
                "circuits_ready_s": round(circuits_s or 0.0, 3),
                "entry_guards": node_config.privacy().preset.entry_guards,
                "nodes_with_guards_saved": sum(
                    1
                    for saved in saved_guards
                    if len(saved) >= node_config.privacy().preset.entry_guards
                ),
            }
        )
    result["wall_seconds"] = round(time.monotonic() - started, 3)
    result["latencies_ms"] = main.latencies_ms
    result["fast_latencies_ms"] = fast.latencies_ms
    return result


def _overhead(phase: PhaseResult, fast: PhaseResult) -> dict[str, float]:
    return {
        q: round(percentile(phase.latencies_ms, p) - percentile(fast.latencies_ms, p), 3)
        for q, p in (("p50", 0.5), ("p99", 0.99))
    }


def _duplicates(statuses: list[dict[str, Any]], tx: int) -> int:
    return sum(max(0, s["counters"].get(f"delivered.{PRIVATE_TOPIC}", 0) - tx) for s in statuses)


def _collect_deliveries(
    net: list[NetNode], wanted: set[str], timeout_s: float
) -> list[dict[str, float]]:
    deadline = time.monotonic() + timeout_s
    while True:
        logs = []
        for node in net:
            assert node.client is not None
            logs.append(node.client.call("deliveries")["deliveries"])
        if all(wanted <= log.keys() for log in logs) or time.monotonic() > deadline:
            return logs
        time.sleep(0.2)


def run_testnet_command(args: argparse.Namespace) -> int:
    from murmur.interfaces.report import print_figures, write_testnet_report

    result = run_testnet(
        nodes=args.nodes,
        messages=args.messages,
        tx=args.tx,
        path=args.path,
        size=args.size,
        rate=args.rate,
        seed=args.seed,
        level=args.level,
    )
    latencies = result.pop("latencies_ms")
    fast_latencies = result.pop("fast_latencies_ms")
    if args.report is not None:
        write_testnet_report(args.report, result, latencies, fast_latencies)
    if args.json:
        print(json.dumps(result))
    else:
        print_figures(f"testnet: {result['nodes']} nodes, {result['path']} path", result)
    return 0 if result["delivery_ratio"] == 1.0 else 1
