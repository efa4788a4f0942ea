"""Production nodes on the simulated network: a TCP-like link layer for :class:`Node` objects.

Theory of operation: every simulated machine hosts one :class:`murmur.node.node.Node`, the object
the daemon runs, with its own identity, config, seeded rng and the engine's virtual clock. The
node speaks bytes (``SendBytes``, ``Dial``, ``CloseConnection``); this module is the runtime that
carries them, in place of the asyncio driver and its sockets:

* ``Dial`` opens a connection pair. A SYN crosses the link and the listener's node gets
  ``connection_opened(outbound=False)``; a SYN-ACK comes back and the dialler's node gets
  ``connection_opened(outbound=True, target=...)``, one round trip after the dial, as with TCP.
  A dial to an address nobody listens on fails at once (``dial_failed``).
* ``SendBytes`` crosses the link with the engine's model (per-link latency plus jitter, the
  sender's uplink serialisation, in-order delivery) and becomes ``data_received`` on the other
  end of the connection.
* ``CloseConnection`` forgets the pair at once, and a FIN tells the other node
  (``connection_lost``) after the link latency; bytes already in flight arrive first.

Each node has a distinct IPv4 address on its own /16 (``1.0.0.1``, ``1.1.0.1``, ...), so the
circuit path rule "no two hops on one /16" sees a network of independent operators. Bytes sent
are what the node handed to its socket (link records, encrypted); connection set-up and
tear-down cost nothing. Whoever runs the hosts subscribes through plain callbacks:
``on_delivered`` for every ``MessageDelivered`` (the node's own publishes included),
``on_failed`` for every ``PrivateSendFailed`` and ``on_inbound`` for every SYN a node receives
(what its kernel sees of a peer opening a connection to it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

from murmur.node.actions import (
    CloseConnection,
    ConnId,
    Dial,
    MessageDelivered,
    PrivateReplyArrived,
    PrivateSendFailed,
    SendBytes,
)
from murmur.node.config import HostPort
from murmur.node.node import Node
from murmur.overlay.circuits.regions import RegionMap
from murmur.sim.engine import Engine, SimNode

WALL_CLOCK_AT_ZERO_S = 1_700_000_000.0
"""The Unix time every simulated node's wall clock reads at virtual time 0 (its
``wall_clock_offset_s``): fixed, so a seed gives the same run, byte for byte, whenever it runs,
and one for all nodes, whose clocks agree."""
NODE_PORT = 8333
EPHEMERAL_PORT = 40_000
MAX_NODES = 200 * 256
"""Addresses ``a.b.0.1`` with ``a`` in 1..200 and ``b`` in 0..255: one /16 per node."""

_DATA = 0
_SYN = 1
_SYNACK = 2
_FIN = 3

OnDelivered = Callable[[int, MessageDelivered, float], None]
OnFailed = Callable[[int, PrivateSendFailed, float], None]
OnInbound = Callable[[int, int, float], None]
"""``(listener, dialler, time)``: a SYN reached ``listener``."""


def node_address(index: int) -> HostPort:
    """Node ``index``'s listening address, alone on its /16."""
    if not 0 <= index < MAX_NODES:
        raise ValueError(f"at most {MAX_NODES} simulated nodes have an address")
    return HostPort(f"{1 + index // 256}.{index % 256}.0.1", NODE_PORT)


def address_region_map(labels: Sequence[str]) -> RegionMap:
    """The region map of a world whose node ``i`` is in region ``labels[i]``: one entry per
    node, its address's /16 (which it holds alone)."""
    return RegionMap.from_entries(
        (str(ipaddress.ip_network(f"{node_address(i).host}/16", strict=False)), label)
        for i, label in enumerate(labels)
    )


class NodeHost:
    """The simulated sockets of a set of nodes hosted on one engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        on_delivered: OnDelivered | None = None,
        on_failed: OnFailed | None = None,
        on_inbound: OnInbound | None = None,
    ) -> None:
        self.engine = engine
        self.nodes: list[Node] = []
        self.on_delivered = on_delivered
        self.on_failed = on_failed
        self.on_inbound = on_inbound
        self._index_of_address: dict[HostPort, int] = {}
        self._peer: dict[tuple[int, ConnId], tuple[int, ConnId]] = {}
        """(node, its conn id) -> (other node, the other end's conn id), for open pairs."""
        self._next_conn = 0
        engine.on_action(SendBytes, self._send)
        engine.on_action(CloseConnection, self._close)
        engine.on_action(Dial, self._dial)
        engine.on_action(MessageDelivered, self._delivered)
        engine.on_action(PrivateSendFailed, self._failed)
        engine.on_action(PrivateReplyArrived, _ignore)

    def add(self, node: Node, address: HostPort) -> SimNode:
        """Hosts ``node`` (it must be the next index) listening on ``address``."""
        index = len(self.nodes)
        self.nodes.append(node)
        self._index_of_address[address] = index
        return self.engine.add_node(node, self._receiver(index, node))

    @property
    def open_connections(self) -> int:
        return len(self._peer) // 2

    # -- actions ----------------------------------------------------------------------------

    def _send(self, sim: SimNode, action: SendBytes, now: float) -> None:
        peer = self._peer.get((sim.index, action.conn_id))
        if peer is not None:
            data = action.data
            self.engine.transmit(sim, peer[0], (_DATA, peer[1], data), len(data), 0.0)

    def _close(self, sim: SimNode, action: CloseConnection, now: float) -> None:
        peer = self._peer.pop((sim.index, action.conn_id), None)
        if peer is not None:
            del self._peer[peer]
            self.engine.transmit(sim, peer[0], (_FIN, peer[1], None), 0, 0.0)

    def _dial(self, sim: SimNode, action: Dial, now: float) -> None:
        target = action.target
        listener = self._index_of_address.get(target.address)
        if listener is None or listener == sim.index:
            self.engine.at(now, lambda t: self._dial_failed(sim, action, t))
            return
        self._next_conn += 2
        mine, theirs = ConnId(self._next_conn - 1), ConnId(self._next_conn)
        syn = (_SYN, theirs, (sim.index, mine, action))
        self.engine.transmit(sim, listener, syn, 0, 0.0)

    def _dial_failed(self, sim: SimNode, action: Dial, now: float) -> None:
        sim.protocol.dial_failed(action.target, now)
        self.engine.pump(sim)

    def _delivered(self, sim: SimNode, action: MessageDelivered, now: float) -> None:
        if self.on_delivered is not None:
            self.on_delivered(sim.index, action, now)

    def _failed(self, sim: SimNode, action: PrivateSendFailed, now: float) -> None:
        if self.on_failed is not None:
            self.on_failed(sim.index, action, now)

    # -- arrivals ---------------------------------------------------------------------------

    def _receiver(self, index: int, node: Node) -> Callable[[int, object, float], None]:
        peers = self._peer
        engine = self.engine

        def receive(src: int, message: object, now: float) -> None:
            kind: int
            conn: ConnId
            body: Any
            kind, conn, body = message  # type: ignore[misc]
            if kind == _DATA:
                node.data_received(conn, body, now)
            elif kind == _FIN:
                node.connection_lost(conn, now)
            elif kind == _SYN:
                dialler, dialler_conn, action = body
                peers[(index, conn)] = (dialler, dialler_conn)
                peers[(dialler, dialler_conn)] = (index, conn)
                engine.transmit(engine.nodes[index], src, (_SYNACK, dialler_conn, action), 0, 0.0)
                if self.on_inbound is not None:
                    self.on_inbound(index, dialler, now)
                source = self.nodes[src].config.listen
                node.connection_opened(
                    conn, outbound=False, host=source.host, port=EPHEMERAL_PORT, now=now
                )
            else:
                # SYN-ACK. If the listener refused at once, its FIN follows (connection_lost).
                target = body.target
                node.connection_opened(
                    conn,
                    outbound=True,
                    host=target.address.host,
                    port=target.address.port,
                    now=now,
                    target=target,
                )

        return receive


def _ignore(sim: SimNode, action: object, now: float) -> None:
    """Replies to private requests are not part of the simulated workload."""
