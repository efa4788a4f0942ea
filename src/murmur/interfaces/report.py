"""Testnet reports: a table on the terminal, and Markdown with a latency plot on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def print_figures(title: str, result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        table.add_row(key, str(value))
    console.print(table)


def write_testnet_report(
    directory: Path,
    result: dict[str, Any],
    latencies: list[float],
    fast_latencies: list[float] | None = None,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "testnet.json").write_text(json.dumps(result, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = [(f"{result.get('path', 'fast')} path", latencies)]
    if fast_latencies is not None and result.get("path", "fast") != "fast":
        curves.append(("fast path (same run)", fast_latencies))
    for label, values in curves:
        ordered = sorted(values)
        if ordered:
            ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
    ax.set_xscale("log")
    ax.legend()
    ax.set_xlabel("propagation latency (ms, log scale)")
    ax.set_ylabel("fraction of deliveries")
    ax.set_title(f"{result['nodes']} nodes on loopback")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(directory / "latency_cdf.png", dpi=120)
    plt.close(fig)
    lines = [
        f"# Testnet report: {result['nodes']} nodes, {result.get('path', 'fast')} path",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in result.items()),
        "",
        "![latency CDF](latency_cdf.png)",
        "",
    ]
    path = directory / "report.md"
    path.write_text("\n".join(lines))
    return path
