"""Onion circuits (the private path): 3-hop telescoped circuits over fixed-size cells.

The node drives one :class:`CircuitHost` (client and relay together); the pieces are importable
on their own for tests and the simulator. Protocol: docs/protocol/circuits.md.
"""

from murmur.overlay.circuits.client import CircuitClient
from murmur.overlay.circuits.config import ClientConfig, RelayConfig
from murmur.overlay.circuits.events import (
    CircuitAction,
    CircuitBuilt,
    CircuitFailed,
    ConnectTo,
    OnionKeysRotated,
    PublishFromExit,
    ReplyReceived,
    RequestFailed,
    SendCell,
    SendFailed,
)
from murmur.overlay.circuits.host import CircuitHost
from murmur.overlay.circuits.onion_keys import OnionKeyPair, OnionKeyRing, OnionPublicKeys
from murmur.overlay.circuits.relay import Answer, CircuitRelay, Validate
from murmur.overlay.circuits.selection import (
    NatType,
    NoCircuitAvailable,
    RelayCapacity,
    RelayDirectory,
    RelayInfo,
    relay_score,
    select_path,
)

__all__ = [
    "Answer",
    "CircuitAction",
    "CircuitBuilt",
    "CircuitClient",
    "CircuitFailed",
    "CircuitHost",
    "CircuitRelay",
    "ClientConfig",
    "ConnectTo",
    "NatType",
    "NoCircuitAvailable",
    "OnionKeyPair",
    "OnionKeyRing",
    "OnionKeysRotated",
    "OnionPublicKeys",
    "PublishFromExit",
    "RelayCapacity",
    "RelayConfig",
    "RelayDirectory",
    "RelayInfo",
    "ReplyReceived",
    "RequestFailed",
    "SendCell",
    "SendFailed",
    "Validate",
    "relay_score",
    "select_path",
]
