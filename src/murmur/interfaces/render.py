"""Human-readable rendering of status and reports (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_status(status: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]node[/bold] {status['node_id']}  listening on {status.get('listen')}")
    console.print(f"uptime {status['uptime_s']:.1f} s, bans {status['bans']}")
    peers = Table(title=f"peers ({len(status['peers'])})")
    for column in ("node id", "address", "direction", "rtt ms", "bytes in", "bytes out"):
        peers.add_column(column)
    for p in status["peers"]:
        peers.add_row(
            p["node_id"][:16],
            p["address"],
            p["direction"],
            "-" if p["rtt_ms"] is None else f"{p['rtt_ms']:.2f}",
            str(p["bytes_in"]),
            str(p["bytes_out"]),
        )
    console.print(peers)
    console.print(f"topics: {status['topics']}")
    counters = Table(title="counters")
    counters.add_column("name")
    counters.add_column("value", justify="right")
    for name, value in status["counters"].items():
        counters.add_row(name, str(value))
    console.print(counters)
