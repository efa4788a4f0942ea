"""Replaceable transports: what carries a link's bytes between two hosts.

The link protocol consumes and produces an opaque byte stream and never assumes it owns the
first bytes of a TCP connection, so any transport that delivers a reliable ordered stream can
carry it: plain TCP here; a TLS tunnel, obfs4 via a managed pluggable-transport process or a
WebRTC data channel implement the same two calls later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, cast

ConnectionHandler = Callable[["StreamConnection"], None]
CLOSE_GRACE_S = 5.0
"""How long a closed connection may take to hand its peer what it still holds. A peer that
stops reading would otherwise keep the socket, and everything written to it, for good: the
node has already forgotten the connection, so no limit counts it."""


class Transport(Protocol):
    async def listen(
        self, host: str, port: int, on_connection: ConnectionHandler
    ) -> tuple[asyncio.AbstractServer, tuple[str, int]]: ...

    async def connect(self, host: str, port: int, timeout_s: float) -> StreamConnection: ...


class StreamConnection(asyncio.Protocol):
    """An asyncio protocol that hands received bytes, and its loss, to callbacks the driver
    binds once it has registered the connection with the node.

    A dialled connection is made, and reads, before the dial returns it to the driver, so a
    peer that writes (or closes) at once acts before the driver can register it. What arrives
    until ``bind`` is held and handed over then: dropped, it left the link waiting for bytes
    it had already been sent, dead until the handshake timed out."""

    def __init__(self, on_made: ConnectionHandler | None = None) -> None:
        self.peer_host = ""
        self.peer_port = 0
        self.on_data: Callable[[bytes], None] | None = None
        self.on_lost: Callable[[], None] | None = None
        self._on_made = on_made
        self._transport: asyncio.Transport | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        self._held: list[bytes] = []
        self._lost = False

    def bind(self, on_data: Callable[[bytes], None], on_lost: Callable[[], None]) -> None:
        """From now on received bytes go to ``on_data`` and the loss to ``on_lost``; what came
        before goes to them at once, in order."""
        self.on_data, self.on_lost = on_data, on_lost
        held, self._held = self._held, []
        for data in held:
            on_data(data)
        if self._lost:
            on_lost()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer_host, self.peer_port = str(peer[0]), int(peer[1])
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        if self.on_data is None:
            self._held.append(data)
        else:
            self.on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        if self.on_lost is None:
            self._lost = True
        else:
            self.on_lost()

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def buffered_bytes(self) -> int:
        return 0 if self._transport is None else self._transport.get_write_buffer_size()

    def close(self) -> None:
        """Closes once the peer has read what is buffered, or aborts ``CLOSE_GRACE_S`` later."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        if transport.get_write_buffer_size():
            loop = asyncio.get_running_loop()
            self._abort_timer = loop.call_later(CLOSE_GRACE_S, transport.abort)


class TcpTransport:
    """Plain TCP, with Nagle off (links batch their own writes per loop tick)."""

    async def listen(
        self, host: str, port: int, on_connection: ConnectionHandler
    ) -> tuple[asyncio.AbstractServer, tuple[str, int]]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: StreamConnection(on_connection), host, port)
        sockname = server.sockets[0].getsockname()
        return server, (str(sockname[0]), int(sockname[1]))

    async def connect(self, host: str, port: int, timeout_s: float) -> StreamConnection:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(StreamConnection, host, port), timeout_s
        )
        return conn
