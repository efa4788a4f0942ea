"""Identifiers shared across layers."""

from __future__ import annotations

from typing import NewType

NodeId = NewType("NodeId", bytes)
"""SHA3-256 of a node's ML-DSA-87 public key: 32 bytes."""

NODE_ID_BYTES = 32


def short_id(node_id: bytes) -> str:
    """The first 8 hex digits, for logs and tables (never a secret)."""
    return node_id[:4].hex()
