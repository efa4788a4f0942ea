"""What the circuit cores ask the node to do (actions) and tell it (events).

Actions are imperative (:class:`SendCell`, :class:`ConnectTo`); events are in the past tense.
Both come out of one ``drain_actions()`` list, in the order they happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from murmur.base.ids import NodeId
from murmur.overlay.circuits.onion_keys import OnionPublicKeys
from murmur.wire.cells import RelayAddress


@dataclass(frozen=True, slots=True)
class SendCell:
    """Send these :data:`~murmur.wire.cells.CELL_BYTES` bytes to ``peer`` over its link."""

    peer: NodeId
    cell: bytes = field(repr=False)

    def __init__(self, peer: NodeId, cell: bytes) -> None:
        # Written out: mypyc compiles this one, the dataclasses module's runs interpreted
        # (about 12 x slower), and one is built for every cell.
        object.__setattr__(self, "peer", peer)
        object.__setattr__(self, "cell", cell)


@dataclass(frozen=True, slots=True)
class ConnectTo:
    """Open a link to ``peer`` (expecting that node id), then call ``link_ready``/``link_failed``.

    Several cores may ask for the same peer: a dial already in progress satisfies them all.
    """

    peer: NodeId
    address: RelayAddress
    own_circuit: bool = False
    """For a circuit of this node's own (its hop 1), not one it relays: peers' EXTENDs must
    not be able to use up the links this node needs to send at all."""


@dataclass(frozen=True, slots=True)
class CircuitBuilt:
    circuit: int
    """The client's handle for the circuit (never sent on the wire)."""
    hops: tuple[NodeId, ...]


@dataclass(frozen=True, slots=True)
class CircuitFailed:
    circuit: int
    reason: str
    was_ready: bool


@dataclass(frozen=True, slots=True)
class SendFailed:
    send_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    request_id: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class RequestFailed:
    request_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class PublishFromExit:
    """A valid payload left a circuit here: publish it to gossip as this node's own."""

    topic: str
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class OnionKeysRotated:
    """The relay has a new onion key pair: re-sign and re-publish the peer announcement."""

    public: OnionPublicKeys


CircuitAction = (
    SendCell
    | ConnectTo
    | CircuitBuilt
    | CircuitFailed
    | SendFailed
    | ReplyReceived
    | RequestFailed
    | PublishFromExit
    | OnionKeysRotated
)
