"""Which build of the node a run used: the sources as written, or the copy ``make compiled``
builds with mypyc. Results are the same either way; wall times are not, so reports say which."""

from __future__ import annotations

import murmur.node.node as node_module


def build_name() -> str:
    """``mypyc`` when the node's module is compiled, else ``interpreted``."""
    return "interpreted" if node_module.__file__.endswith(".py") else "mypyc"
