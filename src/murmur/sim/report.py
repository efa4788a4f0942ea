"""Markdown reports with plots for ``murmur simulate --report DIR``.

Theory of operation: a report is a list of :class:`Entry` (one protocol at one spy fraction,
averaged over runs) plus the settings that produced it. :func:`write_report` writes
``report.md`` and three PNG plots next to it: precision and recall against the spy fraction
(first-spy and the best estimator per protocol, with the routing-only floors p^2 and p and,
with onion runs, the three-hop circuit's p(1 - (1 - p)^2)), the CDF of the headline (90 %)
reach latency per protocol, and bytes sent per node per second. Plots use matplotlib's object
API (no pyplot global state), so writing a report from a library call is safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from murmur.sim.results import HEADLINE_REACH, Aggregate
from murmur.sim.validation import ValidationRow


@dataclass(frozen=True, slots=True)
class Entry:
    spy_fraction: float
    result: Aggregate
    latency_overhead_ms: Mapping[str, float] | None = None
    """p50 / p99 of the result less the baseline's (:class:`murmur.sim.results.Overheads`)."""
    paired_latency_overhead_ms: Mapping[str, float] | None = None
    """p50 / p99 of each transaction's own extra latency."""
    bandwidth_overhead: float | None = None
    baseline: str | None = None
    """What the overheads are measured against (``diffusion``, ``fastpath``)."""


def write_report(
    directory: Path, *, title: str, settings: Mapping[str, object], entries: Sequence[Entry]
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    _plot_privacy(directory / "privacy.png", entries)
    _plot_latency(directory / "latency_cdf.png", entries)
    _plot_bandwidth(directory / "bandwidth.png", entries)
    lines = [f"# {title}", "", "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in settings.items()]
    lines += [
        "",
        "## Privacy",
        "",
        "Precision and recall as defined by Fanti et al. (Dandelion++, 2018); entropy is the",
        "adversary's posterior entropy in bits (strongest estimator).",
        "",
        "| protocol | spies | estimator | precision | recall | entropy (bits) |",
        "|---|---|---|---|---|---|",
    ]
    for entry in entries:
        r = entry.result
        for name in r.precision:
            lines.append(
                f"| {r.protocol} | {entry.spy_fraction:g} | {name} "
                f"| {plus_minus(r.precision[name], r.precision_se[name])} "
                f"| {plus_minus(r.recall[name], r.recall_se[name])} | {_num(r.entropy_bits, 2)} |"
            )
    lines += [
        "",
        "![precision and recall against the spy fraction](privacy.png)",
        "",
        "## Latency and cost",
        "",
        "Latency: time until 50 / 90 / 99 % of the nodes up when it was sent have the",
        "transaction (p50 / p99 over transactions, ms). Overheads are against the baseline",
        "named in the last column, on the same network and workload: plain diffusion for",
        "Dandelion++, and for the onion protocol the fast-path gossip of the same production",
        'nodes (``fastpath``), run in the same simulation. "overhead" is a percentile less',
        "the baseline's; \"paired\" the percentile of each transaction's own extra latency",
        "(what the slowest ones pay).",
        "Latency percentiles are over the transactions that got there (see delivered).",
        "",
        "| protocol | spies | reach 50 % | reach 90 % | reach 99 % | overhead p50 / p99 "
        "| paired p50 / p99 | bytes/node/s | bandwidth x | relay participation | delivered "
        "| vs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        r = entry.result
        reach = " | ".join(
            f"{_num(r.reach_ms[k]['p50'], 0)} / {_num(r.reach_ms[k]['p99'], 0)}" for k in r.reach_ms
        )
        overhead, paired = (
            f"{_num(q['p50'], 0)} / {_num(q['p99'], 0)}" if q is not None else "-"
            for q in (entry.latency_overhead_ms, entry.paired_latency_overhead_ms)
        )
        bandwidth = _num(entry.bandwidth_overhead, 2) if entry.bandwidth_overhead else "-"
        lines.append(
            f"| {r.protocol} | {entry.spy_fraction:g} | {reach} | {overhead} | {paired} "
            f"| {_num(r.bytes_per_node_s, 0)} | {bandwidth} | {_num(r.relay_participation, 3)} "
            f"| {_num(r.delivered_ratio, 3)} | {entry.baseline or '-'} |"
        )
    if unsent := unsent_notes(entries):
        lines += ["", *(f"* {note}" for note in unsent)]
    lines += _onion_section(entries)
    lines += [
        "",
        "![CDF of the 90 % reach latency](latency_cdf.png)",
        "",
        "![bytes sent per node per second](bandwidth.png)",
        "",
    ]
    path = directory / "report.md"
    path.write_text("\n".join(lines))
    return path


def unsent_notes(entries: Sequence[Entry]) -> list[str]:
    """One line per entry that did not send every transaction (under churn, one whose origin
    is down at its arrival is not sent): otherwise nothing says what the figures cover."""
    return [
        f"{r.protocol} at {entry.spy_fraction:g} spies: {r.tx_unsent} of "
        f"{r.tx_sent + r.tx_unsent} transactions not sent (origin down at arrival); every "
        f"figure is over the {r.tx_sent} sent."
        for entry in entries
        if (r := entry.result).tx_unsent
    ]


def _onion_section(entries: Sequence[Entry]) -> list[str]:
    """How the onion runs were made (crypto stand-in, directories, warm-up, hop-1 facts)."""
    onion = [e for e in entries if e.result.protocol == "onion" and e.result.extras]
    if not onion:
        return []
    keys = list(onion[0].result.extras)
    lines = [
        "",
        "### Onion runs",
        "",
        "``crypto: standin`` means ML-DSA-87 and ML-KEM-1024 were replaced by same-size keyed",
        "stand-ins (``--standin-crypto``); ``spy_hop1_*`` count circuits in which a spy was hop 1",
        "(ground truth), those its cell log told it so, and how many of those were right.",
        "",
        "| spies | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for entry in onion:
        values = [_extra(entry.result.extras[k]) for k in keys]
        lines.append(f"| {entry.spy_fraction:g} | " + " | ".join(values) + " |")
    return lines


def _extra(value: float | int | str) -> str:
    if isinstance(value, str):
        return value
    return f"{value:g}" if float(value).is_integer() else f"{value:.3f}"


def validation_markdown(rows: Sequence[ValidationRow]) -> str:
    """The comparison table of :mod:`murmur.sim.validation` as Markdown."""
    lines = [
        "| setting | paper precision | ours | paper recall | ours | runs | within 3 SE | floors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        f = row.figure
        ok = "yes" if row.precision_ok and row.recall_ok else "NO"
        lines.append(
            f"| {f.label} | {plus_minus(f.precision, f.precision_se)} "
            f"| {plus_minus(row.precision, row.precision_se, 4)} "
            f"| {plus_minus(f.recall, f.recall_se)} "
            f"| {plus_minus(row.recall, row.recall_se, 4)} | {row.runs} | {ok} "
            f"| {'yes' if row.floors_ok else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def circuit_floor(p: float) -> float:
    """The share of transactions a three-hop circuit gives away to colluding spies: hop 1 is a
    spy and so is either hop after it (docs/evaluation.md §6, session 14)."""
    return p * (1.0 - (1.0 - p) ** 2)


def _plot_privacy(path: Path, entries: Sequence[Entry]) -> None:
    """Per protocol, first-spy and the best of its estimators at each spy fraction (pointwise:
    the adversary runs them all), against the routing-only floors and, with onion runs, the
    three-hop circuit's."""
    figure = Figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    fractions = sorted({e.spy_fraction for e in entries})
    circuits = any(e.result.protocol == "onion" for e in entries)
    for ax, metric, floor, label in (
        (axes[0], "precision", lambda p: p * p, "p²"),
        (axes[1], "recall", lambda p: p, "p"),
    ):
        for colour, protocol in enumerate(_protocols(entries)):
            points = sorted(
                (e.spy_fraction, getattr(e.result, metric))
                for e in entries
                if e.result.protocol == protocol
            )
            xs = [f for f, _ in points]
            ax.plot(
                xs,
                [values["first_spy"] for _, values in points],
                ":",
                color=f"C{colour}",
                marker="o",
                label=f"{protocol} (first_spy)",
            )
            if len(points[0][1]) > 1:
                ax.plot(
                    xs,
                    [max(values.values()) for _, values in points],
                    "-",
                    color=f"C{colour}",
                    marker="s",
                    label=f"{protocol} (best of {len(points[0][1])})",
                )
        ax.plot(
            fractions,
            [floor(p) for p in fractions],
            color="grey",
            lw=0.8,
            label=f"routing-only floor {label}",
        )
        if circuits:
            ax.plot(
                fractions,
                [circuit_floor(p) for p in fractions],
                "--",
                color="black",
                lw=0.8,
                label="3-hop circuit floor p(1-(1-p)²)",
            )
        ax.set_xlabel("spy fraction")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _plot_latency(path: Path, entries: Sequence[Entry]) -> None:
    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    for protocol in _protocols(entries):
        samples = sorted(
            x for e in entries if e.result.protocol == protocol for x in e.result.reach_samples_ms
        )
        if samples:
            ax.plot(samples, [(i + 1) / len(samples) for i in range(len(samples))], label=protocol)
    ax.set_xlabel(f"time to reach {HEADLINE_REACH} % of nodes (ms)")
    ax.set_ylabel("fraction of transactions")
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _plot_bandwidth(path: Path, entries: Sequence[Entry]) -> None:
    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    protocols = _protocols(entries)
    values = []
    for protocol in protocols:
        rates = [e.result.bytes_per_node_s for e in entries if e.result.protocol == protocol]
        values.append(sum(rates) / len(rates))
    ax.bar(protocols, values)
    ax.set_ylabel("bytes sent per node per second")
    ax.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _protocols(entries: Sequence[Entry]) -> list[str]:
    return list(dict.fromkeys(e.result.protocol for e in entries))


def _num(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def plus_minus(mean: float, se: float, digits: int = 3) -> str:
    """``mean ± se``; the mean alone where there is no standard error (a single run)."""
    if math.isnan(se):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}"
