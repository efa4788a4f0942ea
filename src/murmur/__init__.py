"""Murmur: a post-quantum privacy network layer for cryptocurrency nodes.

Layers, bottom up (see docs/architecture.md): base, crypto, wire, link, overlay, node form the
protocol core, which does no I/O; runtime (asyncio) and sim (discrete events) drive it;
interfaces (CLI, API, dashboard) sit on top.
"""

__version__ = "0.1.0"
