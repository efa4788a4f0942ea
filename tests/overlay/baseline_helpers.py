"""Shared by the diffusion and Dandelion++ tests."""

from __future__ import annotations

from murmur.overlay.diffusion import Broadcast, SendMessage


def sends(actions: list[object]) -> list[SendMessage[str]]:
    """Every send, a broadcast expanded into one per peer (as a runtime performs it)."""
    out: list[SendMessage[str]] = []
    for action in actions:
        if isinstance(action, SendMessage):
            out.append(action)
        elif isinstance(action, Broadcast):
            pairs = zip(action.peers, action.delays_s, strict=True)
            out.extend(SendMessage(peer, action.message, delay) for peer, delay in pairs)
    return out
