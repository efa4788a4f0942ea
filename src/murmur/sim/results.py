"""From run records to the figures we publish: per-run summaries, run averages, overheads.

Theory of operation: :func:`summarise` applies every estimator that fits the protocol to the
adversary's log and reduces one :class:`~murmur.sim.scenario.RunRecord` to a
:class:`RunSummary`. :func:`aggregate` averages summaries of independent runs (standard errors
for precision and recall). :func:`overheads` compares a protocol with the diffusion baseline run
on the same world.

Every figure is over the transactions sent (under churn, one whose origin was down at its
arrival is not: see :mod:`murmur.sim.scenario`); ``tx_sent`` and ``tx_unsent`` say how many
were and were not, so a reader knows what the figures cover.

Latency: ``reach_ms[k]`` holds the p50 and p99, over transactions, of the time from submission
until k % of the nodes up at submission (all of them without churn; see
:class:`~murmur.sim.scenario.Reach`) had the transaction in their mempool; ``latency_ms`` is the
90 % column
(the usual "broadcast" latency), over the transactions that reached that many nodes (the
delivered ratio says how many did not). ``entropy_bits`` is the lowest posterior entropy over
the estimators (the strongest adversary's view). Bandwidth is bytes sent per node per second
of the span they were counted over, and ``bandwidth_overhead`` the ratio of total bytes sent.
A run that carries its own baseline (the onion protocol's fast path) summarises it as
``RunSummary.baseline``; protocol-specific facts travel in ``extras``.

Two latency overheads: ``Overheads.latency_ms`` is the difference of the two percentiles (p99
of the protocol less p99 of the baseline), and ``Overheads.paired_latency_ms`` the percentile
of each transaction's own extra latency, the protocol's and the baseline's runs paired by
transaction (same origin and submission time: both replay one workload). The paired p99 is what
the slowest transactions pay, and is the larger of the two when the extra latency varies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from murmur.sim.estimators import ESTIMATORS
from murmur.sim.metrics import mean_and_stderr, posterior_entropy_bits, precision_recall, quantile
from murmur.sim.scenario import REACH_FRACTIONS, RunRecord

HEADLINE_REACH = "90"

TxLatency = tuple[int, float, float | None]
"""A transaction's origin, submission time and headline reach latency in ms (None: never)."""


@dataclass(frozen=True, slots=True)
class RunSummary:
    protocol: str
    nodes: int
    spies: int
    precision: dict[str, float]
    recall: dict[str, float]
    entropy_bits: float
    reach_ms: dict[str, dict[str, float]]
    bytes_sent: int
    bytes_per_node_s: float
    relay_participation: float
    delivered_ratio: float
    tx_sent: int
    tx_unsent: int
    """Arrivals not sent, their origin being down (in no other figure)."""
    events: int
    wall_s: float
    latency_by_tx: tuple[TxLatency, ...] = field(repr=False)
    """Every transaction's headline latency, keyed to pair it with a baseline's."""
    baseline: RunSummary | None = field(default=None, repr=False)
    """The same world's baseline run inside the same simulation (the onion's fast path)."""
    extras: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def latency_ms(self) -> dict[str, float]:
        return self.reach_ms[HEADLINE_REACH]

    @property
    def reach_samples_ms(self) -> tuple[float, ...]:
        """Headline reach latency of every transaction that got there (for CDF plots)."""
        return tuple(ms for _, _, ms in self.latency_by_tx if ms is not None)


@dataclass(frozen=True, slots=True)
class Aggregate:
    protocol: str
    runs: int
    nodes: int
    spies: int
    precision: dict[str, float]
    precision_se: dict[str, float]
    recall: dict[str, float]
    recall_se: dict[str, float]
    entropy_bits: float
    reach_ms: dict[str, dict[str, float]]
    bytes_sent: float
    bytes_per_node_s: float
    relay_participation: float
    delivered_ratio: float
    tx_sent: int
    """Over every run, like ``tx_unsent``."""
    tx_unsent: int
    events: int
    wall_s: float
    latency_by_tx: tuple[tuple[TxLatency, ...], ...] = field(repr=False)
    """Per run, every transaction's headline latency (see :attr:`RunSummary.latency_by_tx`)."""
    extras: dict[str, float | int | str] = field(default_factory=dict)
    """Numeric extras averaged over runs; text ones from the first run."""

    @property
    def latency_ms(self) -> dict[str, float]:
        return self.reach_ms[HEADLINE_REACH]

    @property
    def reach_samples_ms(self) -> tuple[float, ...]:
        """Every run's :attr:`RunSummary.reach_samples_ms`, one after the other."""
        return tuple(ms for run in self.latency_by_tx for _, _, ms in run if ms is not None)


def summarise(record: RunRecord) -> RunSummary:
    origins = record.origins
    precision: dict[str, float] = {}
    recall: dict[str, float] = {}
    entropies = []
    for name in record.estimators:
        guesses = ESTIMATORS[name](record.log)
        precision[name], recall[name] = precision_recall(guesses, origins)
        entropies.append(posterior_entropy_bits(guesses, origins, record.honest))
    reach_ms: dict[str, dict[str, float]] = {}
    by_tx: tuple[TxLatency, ...] = ()
    for i, fraction in enumerate(REACH_FRACTIONS):
        key = f"{fraction * 100:g}"
        times = [t * 1000.0 for tx in record.txs if (t := tx.reach_s[i]) is not None]
        if not record.latency_measured:
            times = []
        reach_ms[key] = {"p50": quantile(times, 0.5), "p99": quantile(times, 0.99)}
        if key == HEADLINE_REACH and record.latency_measured:
            by_tx = tuple(
                (tx.origin, tx.injected_at, None if (t := tx.reach_s[i]) is None else t * 1000.0)
                for tx in record.txs
            )
    txs = len(record.txs)
    return RunSummary(
        protocol=record.protocol,
        nodes=record.nodes,
        spies=len(record.spies),
        precision=precision,
        recall=recall,
        entropy_bits=min(entropies) if entropies else math.nan,
        reach_ms=reach_ms,
        bytes_sent=record.bytes_sent,
        bytes_per_node_s=record.bytes_sent / record.nodes / max(record.bytes_span_s, 1e-9),
        relay_participation=record.relay_participants / max(record.honest, 1),
        delivered_ratio=(
            sum(tx.delivered for tx in record.txs) / txs
            if txs and record.latency_measured
            else math.nan
        ),
        tx_sent=txs,
        tx_unsent=record.unsent,
        events=record.events,
        wall_s=record.wall_s,
        latency_by_tx=by_tx,
        baseline=None if record.baseline is None else summarise(record.baseline),
        extras=dict(record.extras),
    )


def aggregate(summaries: Sequence[RunSummary]) -> Aggregate:
    if not summaries:
        raise ValueError("nothing to aggregate")
    first = summaries[0]

    def mean(values: Sequence[float]) -> float:
        finite = [v for v in values if not math.isnan(v)]
        return sum(finite) / len(finite) if finite else math.nan

    precision, precision_se, recall, recall_se = {}, {}, {}, {}
    for name in first.precision:
        precision[name], precision_se[name] = mean_and_stderr(
            [s.precision[name] for s in summaries]
        )
        recall[name], recall_se[name] = mean_and_stderr([s.recall[name] for s in summaries])
    reach_ms = {
        key: {q: mean([s.reach_ms[key][q] for s in summaries]) for q in ("p50", "p99")}
        for key in first.reach_ms
    }
    return Aggregate(
        protocol=first.protocol,
        runs=len(summaries),
        nodes=first.nodes,
        spies=first.spies,
        precision=precision,
        precision_se=precision_se,
        recall=recall,
        recall_se=recall_se,
        entropy_bits=mean([s.entropy_bits for s in summaries]),
        reach_ms=reach_ms,
        bytes_sent=mean([float(s.bytes_sent) for s in summaries]),
        bytes_per_node_s=mean([s.bytes_per_node_s for s in summaries]),
        relay_participation=mean([s.relay_participation for s in summaries]),
        delivered_ratio=mean([s.delivered_ratio for s in summaries]),
        tx_sent=sum(s.tx_sent for s in summaries),
        tx_unsent=sum(s.tx_unsent for s in summaries),
        events=sum(s.events for s in summaries),
        wall_s=sum(s.wall_s for s in summaries),
        latency_by_tx=tuple(s.latency_by_tx for s in summaries),
        extras=_mean_extras([s.extras for s in summaries]),
    )


def _mean_extras(extras: Sequence[dict[str, float | int | str]]) -> dict[str, float | int | str]:
    merged: dict[str, float | int | str] = {}
    for key, value in extras[0].items():
        if isinstance(value, str):
            merged[key] = value
        else:
            values = [float(e[key]) for e in extras if isinstance(e.get(key), int | float)]
            merged[key] = sum(values) / len(values)
    return merged


@dataclass(frozen=True, slots=True)
class Overheads:
    """What ``result`` costs over ``baseline`` (see the module docstring)."""

    latency_ms: dict[str, float]
    """p50 / p99 of the result less the same percentile of the baseline."""
    paired_latency_ms: dict[str, float]
    """p50 / p99 over transactions of each one's extra latency (NaN: nothing to pair)."""
    bandwidth: float
    """Ratio of total bytes sent."""


def overheads(result: Aggregate, baseline: Aggregate) -> Overheads:
    latency = {q: result.latency_ms[q] - baseline.latency_ms[q] for q in ("p50", "p99")}
    extra = paired_extra_latency_ms(result, baseline)
    paired = {"p50": quantile(extra, 0.5), "p99": quantile(extra, 0.99)}
    ratio = result.bytes_sent / baseline.bytes_sent if baseline.bytes_sent else math.nan
    return Overheads(latency, paired, ratio)


def paired_extra_latency_ms(result: Aggregate, baseline: Aggregate) -> list[float]:
    """Each transaction's latency in ``result`` less its latency in ``baseline``, run by run,
    over the transactions both reached (paired by origin and submission time)."""
    extra: list[float] = []
    for ours, theirs in zip(result.latency_by_tx, baseline.latency_by_tx, strict=False):
        base = {(origin, at): ms for origin, at, ms in theirs if ms is not None}
        for origin, at, ms in ours:
            other = base.get((origin, at))
            if ms is not None and other is not None:
                extra.append(ms - other)
    return extra
