"""Per-connection bookkeeping: one :class:`Session` per transport connection."""

from __future__ import annotations

from dataclasses import dataclass

from murmur.base.ids import NodeId
from murmur.link.connection import LinkConnection
from murmur.node.actions import ConnId
from murmur.node.config import BootstrapPeer


@dataclass(slots=True, eq=False)
class Session:
    conn_id: ConnId
    link: LinkConnection
    outbound: bool
    host: str
    port: int
    opened_at: float
    bootstrap: BootstrapPeer | None = None
    peer_id: NodeId | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    closing: bool = False
    for_circuit: bool = False
    """Opened because a circuit needed to extend here, not one of our bootstrap peers."""
    unused_since: float | None = None
    """A link opened for circuits: since when none has run through it (None: one does)."""
    close_unused_at: float = 0.0
    """When it is closed if still unused (``Node.CIRCUIT_LINK_IDLE_S`` after ``unused_since``)."""
    retired: bool = False
    """Lost to another link with the same peer: nothing more is sent on it, but what the peer
    already sent on it is still read until it is closed (see ``Node._retire``)."""

    @property
    def ready(self) -> bool:
        return self.peer_id is not None and not self.closing and not self.retired
