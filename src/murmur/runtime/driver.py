"""The asyncio driver: real sockets and timers around the sans-I/O :class:`Node`.

Theory of operation (the aioquic ``asyncio/`` adapter, for a whole node): every transport
callback feeds the node with ``now = time.monotonic()`` (system-wide on Linux, so node
processes on one machine can compare delivery times), then the driver applies the actions the
node returned. Writes are coalesced per connection until the end of the loop tick (one
``write`` per peer per tick), or until ``FLUSH_BYTES`` are pending: one tick can hold many reads
(libuv reads a busy socket up to 32 times, 8 MiB, per tick), and holding their output back until
the tick ends would let it outgrow the socket buffer tick after tick. At the end of the tick the
one timer is re-armed to the node's next deadline (once per tick, not once per read). A peer
whose unsent backlog exceeds ``MAX_WRITE_BACKLOG_BYTES`` is cut off, so a slow reader cannot
grow our memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from murmur.base.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from murmur.base.ids import short_id
from murmur.crypto.identity import Identity
from murmur.node.actions import (
    CloseConnection,
    ConnId,
    Dial,
    MessageDelivered,
    NodeAction,
    PrivateReplyArrived,
    PrivateSendFailed,
    SendBytes,
)
from murmur.node.config import BootstrapPeer, NodeConfig, TxRoute, route_named
from murmur.node.node import Node
from murmur.node.private_path import (
    check_sync_response,
    decode_sync_response,
    encode_sync_request,
)
from murmur.overlay.circuits.selection import NoCircuitAvailable
from murmur.overlay.routing import MessagePath, MessageType, PrivatePathUnavailable, path_for_topic
from murmur.overlay.shaping.origin import QueueFull
from murmur.overlay.stem import NoStemPeer
from murmur.runtime import keystore
from murmur.runtime.control_api import ApiError, ControlApiServer
from murmur.runtime.system import SystemRng
from murmur.runtime.transport import StreamConnection, TcpTransport, Transport
from murmur.wire.gossip import message_id as gossip_message_id

MAX_WRITE_BACKLOG_BYTES = 16 * 1024 * 1024
FLUSH_BYTES = 64 * 1024
"""Output pending for one connection that is written at once instead of at the end of the tick."""
DIAL_TIMEOUT_S = 5.0
MAX_PUBLISH_BYTES = 131_072
SYNC_TIMEOUT_S = 30.0
GUARDS_SAVE_INTERVAL_S = 600.0
"""How often the guards' announcements are written again (they are renewed hourly and live
three hours, so a restart finds the saved one alive)."""
WALL_CLOCK_STEP_S = 1.0
"""A change of the wall clock against the monotonic one that the node is told of."""

_log = logging.getLogger(__name__)


class NodeRuntime:
    def __init__(
        self,
        *,
        identity: Identity,
        config: NodeConfig,
        node_dir: Path | None = None,
        transport: Transport | None = None,
        on_delivery: Callable[[MessageDelivered], None] | None = None,
    ) -> None:
        self.config = config
        self.node_dir = node_dir
        self.transport = transport or TcpTransport()
        now = time.monotonic()
        kept = keystore.KeptGuards() if node_dir is None else keystore.read_guards(node_dir)
        regions = None if node_dir is None else keystore.load_region_map(node_dir, config)
        self.node = Node(
            identity=identity,
            config=config,
            rng=SystemRng(),
            now=now,
            # Announcements carry their issue time; the core reads no clock.
            wall_clock_offset_s=time.time() - now,
            guards=kept.records,
            regions=regions,
        )
        self.node.restore_announcements(kept.announcements, now)
        self._guards_saved = self.node.guards_version
        self._guards_saved_at = now
        self._guards_disabled = {g.node_id for g in kept.records if g.disabled_at is not None}
        self.listen_address: tuple[str, int] | None = None
        self.api_address: tuple[str, int] | None = None
        self._on_delivery = on_delivery
        self._conns: dict[ConnId, StreamConnection] = {}
        self._next_conn_id = 0
        self._pending: dict[ConnId, _Outbox] = {}
        """Connections written to in this tick (their backlog is checked at its end)."""
        self._tick_end_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._server: asyncio.AbstractServer | None = None
        self._api: ControlApiServer | None = None
        self._lock: keystore.NodeDirLock | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._requests: dict[int, asyncio.Future[bytes]] = {}
        self._stopping = False
        """Set as ``stop`` begins: a connection that lands after it (a dial that completed as
        its task was cancelled, one the listener accepted before it closed) is closed, not
        adopted, a dial that fails after it is not reported to the node, and the timer is not
        re-armed while ``stop`` awaits the API's close."""
        self.stopped = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Listens for peers and, with a node directory, takes its lock, writes the cookie and
        serves the control API. If a step fails (a port in use, another node on the directory),
        what the earlier steps opened or wrote is undone before the error propagates."""
        try:
            if self.node_dir is not None:
                self._lock = keystore.lock_node_dir(self.node_dir)
            listen = self.config.listen
            self._server, self.listen_address = await self.transport.listen(
                listen.host, listen.port, self._accepted
            )
            if self.node_dir is not None:
                await self._serve_api(self.node_dir, self.listen_address)
        except BaseException:
            await self._close_listeners()
            raise
        self.node.set_advertised_address(*self.listen_address, time.monotonic())
        _log.info(
            "node %s listening on %s:%d",
            short_id(self.node.node_id),
            *self.listen_address,
        )
        self._after_input()

    async def _serve_api(self, node_dir: Path, listen_address: tuple[str, int]) -> None:
        cookie = keystore.write_cookie(node_dir)
        self._api = ControlApiServer(
            cookie=cookie, handlers=self._api_handlers(), counters=self.node.counters
        )
        api = self.config.api_listen
        self.api_address = await self._api.start(api.host, api.port)
        keystore.write_node_info(
            node_dir,
            {
                "pid": os.getpid(),
                "node_id": self.node.node_id.hex(),
                "listen": f"{listen_address[0]}:{listen_address[1]}",
                "api": f"{self.api_address[0]}:{self.api_address[1]}",
            },
        )

    async def _close_listeners(self) -> None:
        """Stops listening and serving the API, and gives the node directory back."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._api is not None:
            await self._api.close()
            self._api = None
        if self._lock is not None:
            assert self.node_dir is not None
            keystore.clear_node_info(self.node_dir)  # ours: we held the lock
            self._lock.release()
            self._lock = None

    async def stop(self) -> None:
        """Closes every connection, telling the node each was lost, then that it stops, and
        applies its answer before anything else runs: the circuits through those links fail,
        and the requests waiting on them or still waiting for a circuit fail with them (else
        they waited out their timeouts), while the writes, closes and dials it asks for are
        not made (the connections are gone and the runtime is stopping). Nothing is left
        queued in the node to be applied later."""
        self._stopping = True
        now = time.monotonic()
        self._save_guards(now, force=True)
        for conn_id in list(self._conns):
            self.node.connection_lost(conn_id, now)
        self.node.stop(now)
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        self._pending.clear()
        self._apply([a for a in self.node.drain_actions() if not isinstance(a, Dial)])
        if self._timer is not None:
            self._timer.cancel()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        await self._close_listeners()
        self.stopped.set()

    # --- node commands -------------------------------------------------------------------

    def publish(self, topic: str, data: bytes) -> bytes:
        message_id = self.node.publish(topic, data, time.monotonic())
        self._after_input()
        return message_id

    def send_private(self, topic: str, data: bytes, level: str | None = None) -> int:
        send_id = self.node.send_private(topic, data, time.monotonic(), level)
        self._after_input()
        return send_id

    def send_stem(self, topic: str, data: bytes) -> bytes:
        message_id = self.node.send_stem(topic, data, time.monotonic())
        self._after_input()
        return message_id

    async def request_private(self, topic: str, data: bytes, timeout_s: float) -> bytes:
        request_id = self.node.request_private(topic, data, time.monotonic())
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = future
        self._after_input()
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._requests.pop(request_id, None)

    # --- transport callbacks -------------------------------------------------------------

    def _new_conn_id(self) -> ConnId:
        self._next_conn_id += 1
        return ConnId(self._next_conn_id)

    def _attach(
        self,
        conn: StreamConnection,
        *,
        outbound: bool,
        host: str,
        port: int,
        target: BootstrapPeer | None = None,
    ) -> None:
        """Registers ``conn`` with the node, then binds it: bytes a dialled peer sent before
        this (held by the connection) reach the node after ``connection_opened``."""
        conn_id = self._new_conn_id()
        self._conns[conn_id] = conn
        self.node.connection_opened(
            conn_id, outbound=outbound, host=host, port=port, now=time.monotonic(), target=target
        )
        self._after_input()

        def on_data(data: bytes) -> None:
            self.node.data_received(conn_id, data, time.monotonic())
            self._after_input()

        def on_lost() -> None:
            if self._conns.pop(conn_id, None) is not None:
                self._pending.pop(conn_id, None)
                self.node.connection_lost(conn_id, time.monotonic())
                self._after_input()

        conn.bind(on_data, on_lost)

    def _accepted(self, conn: StreamConnection) -> None:
        if self._stopping:
            conn.close()
            return
        self._attach(conn, outbound=False, host=conn.peer_host, port=conn.peer_port)

    async def _dial(self, target: BootstrapPeer) -> None:
        """Dials ``target`` and tells the node how it went, unless ``stop`` began meanwhile: a
        connection is then closed, and a failure kept from the node, which may answer it with
        another dial (a circuit's guard out of reach, it builds through another)."""
        address = target.address
        try:
            conn = await self.transport.connect(address.host, address.port, DIAL_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            _log.debug("dial %s failed: %s", address, exc)
            if self._stopping:
                return
            self.node.dial_failed(target, time.monotonic())
            self._after_input()
            return
        if self._stopping:
            conn.close()
            return
        self._attach(conn, outbound=True, host=address.host, port=address.port, target=target)

    # --- applying actions ----------------------------------------------------------------

    def _after_input(self) -> None:
        self._apply(self.node.drain_actions())
        if not self._tick_end_scheduled:
            self._tick_end_scheduled = True
            asyncio.get_running_loop().call_soon(self._end_of_tick)

    def _apply(self, actions: list[NodeAction]) -> None:
        for action in actions:
            if isinstance(action, MessageDelivered):  # first: one per message relayed
                if self._on_delivery is not None:
                    self._on_delivery(action)
            elif isinstance(action, SendBytes):
                self._queue_write(action.conn_id, action.data)
            elif isinstance(action, CloseConnection):
                conn = self._conns.pop(action.conn_id, None)
                if conn is not None:
                    self._flush_one(action.conn_id, conn)
                    conn.close()
            elif isinstance(action, Dial):
                task = asyncio.get_running_loop().create_task(self._dial(action.target))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif isinstance(action, PrivateReplyArrived):
                future = self._requests.get(action.request_id)
                if future is not None and not future.done():
                    future.set_result(action.payload)
            elif isinstance(action, PrivateSendFailed):
                self.node.counters.inc(f"private_failed.{action.reason}")
                future = self._requests.get(action.send_id)
                if future is not None and not future.done():
                    future.set_exception(ApiError("private_send_failed", action.reason))

    def _queue_write(self, conn_id: ConnId, data: bytes) -> None:
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        outbox = self._pending.get(conn_id)
        if outbox is None:
            outbox = self._pending[conn_id] = _Outbox()
        outbox.chunks.append(data)
        outbox.size += len(data)
        if outbox.size >= FLUSH_BYTES:
            outbox.write_to(conn)

    def _end_of_tick(self) -> None:
        self._tick_end_scheduled = False
        if self._stopping:
            return
        now = None
        for conn_id in list(self._pending):
            conn = self._conns.get(conn_id)
            if conn is None:
                self._pending.pop(conn_id, None)
                continue
            self._flush_one(conn_id, conn)
            if conn.buffered_bytes() > MAX_WRITE_BACKLOG_BYTES:
                now = now or time.monotonic()
                self.node.counters.inc("disconnected.slow_reader")
                self._conns.pop(conn_id, None)
                conn.close()
                self.node.connection_lost(conn_id, now)
        if now is not None:
            self._apply(self.node.drain_actions())
            self._end_of_tick()
            return
        self._save_guards(time.monotonic())
        self._rearm_timer()

    def _save_guards(self, now: float, *, force: bool = False) -> None:
        """Keeps the entry guards in the node directory, so a restart enters through them:
        when the list changes (a guard is drawn at first start, then every month or so), and
        every ``GUARDS_SAVE_INTERVAL_S`` for their announcements, which a restart within
        their lifetime uses at once."""
        version = self.node.guards_version
        if version != self._guards_saved:
            self._warn_disabled_guards()
        due = now >= self._guards_saved_at + GUARDS_SAVE_INTERVAL_S
        if self.node_dir is None or not (version != self._guards_saved or due or force):
            return
        # Tried once per interval whatever happens: a full disk must not stop the node.
        self._guards_saved, self._guards_saved_at = version, now
        try:
            keystore.write_guards(
                self.node_dir, self.node.guard_records(), self.node.guard_announcements()
            )
        except OSError as exc:
            self.node.counters.inc("guards_save_failed")
            _log.warning("could not save the entry guards: %s", exc.strerror or exc)

    def _warn_disabled_guards(self) -> None:
        """Says so when path bias disables an entry guard: either it is an adversary that
        serves only circuits leading to its accomplices, or something near it fails."""
        for guard in self.node.guard_records():
            if guard.disabled_at is not None and guard.node_id not in self._guards_disabled:
                self._guards_disabled.add(guard.node_id)
                _log.warning(
                    "entry guard %s disabled: circuits through it failed, or lost what they "
                    "carried, far more often than circuits do (path bias); using the next guard",
                    guard.node_id.hex()[:16],
                )

    def _flush_one(self, conn_id: ConnId, conn: StreamConnection) -> None:
        outbox = self._pending.pop(conn_id, None)
        if outbox is not None:
            outbox.write_to(conn)

    def _rearm_timer(self) -> None:
        deadline = self.node.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = time.monotonic()
        self._follow_wall_clock(now)
        self.node.handle_timer(now)
        self._after_input()

    def _follow_wall_clock(self, now: float) -> None:
        """Tells the node when the wall clock was stepped (NTP setting the clock of a machine
        that has none after boot, an operator's correction): its announcements are dated on
        it. Drift below a second is left alone."""
        offset = time.time() - now
        if abs(offset - self.node.private.wall_clock_offset_s) >= WALL_CLOCK_STEP_S:
            self.node.set_wall_clock(offset, now)

    # --- control API ---------------------------------------------------------------------

    def _api_handlers(self) -> dict[str, Any]:
        async def status(params: dict[str, Any]) -> dict[str, Any]:
            info = self.node.status(time.monotonic())
            assert self.listen_address is not None
            info["listen"] = f"{self.listen_address[0]}:{self.listen_address[1]}"
            return info

        async def publish(params: dict[str, Any]) -> dict[str, Any]:
            topic = params.get("topic")
            data_hex = params.get("data_hex")
            level = params.get("level")
            route_name = params.get("route")
            if not isinstance(topic, str) or not isinstance(data_hex, str):
                raise ApiError("bad_params", "publish needs string 'topic' and 'data_hex'")
            if level is not None and not isinstance(level, str):
                raise ApiError("bad_params", "'level' must be a privacy level name")
            if route_name is not None and not isinstance(route_name, str):
                raise ApiError("bad_params", "'route' must be a route name")
            try:
                route = self.node.config.tx_route if route_name is None else route_named(route_name)
            except ConfigError as exc:
                raise ApiError("bad_route", str(exc)) from None
            try:
                data = bytes.fromhex(data_hex)
            except ValueError:
                raise ApiError("bad_params", "'data_hex' is not hexadecimal") from None
            if len(data) > MAX_PUBLISH_BYTES:
                raise ApiError("too_large", f"message over {MAX_PUBLISH_BYTES} bytes")
            published_at = time.monotonic()
            try:
                private = path_for_topic(topic) is MessagePath.PRIVATE
                if not private and (level is not None or route_name is not None):
                    raise ApiError("bad_params", "'level' and 'route' apply to private topics")
                if private and route is TxRoute.DANDELION:
                    if level is not None:
                        raise ApiError("bad_params", "'level' shapes circuits, not the stem")
                    message_id = self.send_stem(topic, data)
                    path = "dandelion"
                elif private:
                    self.send_private(topic, data, level)
                    message_id = gossip_message_id(topic, data)
                    path = "private"
                else:
                    message_id = self.publish(topic, data)
                    path = "fast"
            except ConfigError as exc:
                raise ApiError("bad_level", str(exc)) from None
            except QueueFull as exc:
                raise ApiError("queue_full", str(exc), status=503) from None
            except PrivatePathUnavailable as exc:
                raise ApiError("private_path_unavailable", str(exc)) from None
            except NoCircuitAvailable as exc:
                raise ApiError("no_circuit", str(exc)) from None
            except NoStemPeer as exc:
                raise ApiError("no_stem_peer", str(exc), status=503) from None
            except (ValueError, LocalProtocolError) as exc:
                raise ApiError("bad_params", str(exc)) from None
            return {"message_id": message_id.hex(), "published_at": published_at, "path": path}

        async def sync(params: dict[str, Any]) -> dict[str, Any]:
            ids = params.get("message_ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ApiError("bad_params", "sync needs 'message_ids', a list of hex ids")
            try:
                asked = [bytes.fromhex(i) for i in ids]
                request = encode_sync_request(asked)
                reply = await self.request_private(
                    MessageType.SYNC_REQUEST.value, request, SYNC_TIMEOUT_S
                )
                found = decode_sync_response(reply)
                check_sync_response(found, asked, self.node.gossip.topics)
            except (ValueError, LocalProtocolError) as exc:
                raise ApiError("bad_params", str(exc)) from None
            except NoCircuitAvailable as exc:
                raise ApiError("no_circuit", str(exc)) from None
            except RemoteProtocolError as exc:
                self.node.counters.inc("sync.bad_replies")
                raise ApiError("bad_reply", str(exc)) from None
            except TimeoutError:
                raise ApiError("timeout", "no reply through the circuit in time") from None
            return {"messages": {k.hex(): v.hex() for k, v in found.items()}}

        async def deliveries(params: dict[str, Any]) -> dict[str, Any]:
            return {"deliveries": {k.hex(): t for k, t in self.node.deliveries.items()}}

        async def shutdown(params: dict[str, Any]) -> dict[str, Any]:
            asyncio.get_running_loop().call_soon(self._request_stop)
            return {"stopping": True}

        return {
            "status": status,
            "publish": publish,
            "sync": sync,
            "deliveries": deliveries,
            "shutdown": shutdown,
        }

    def _request_stop(self) -> None:
        task = asyncio.get_running_loop().create_task(self.stop())
        self._tasks.add(task)


class _Outbox:
    """Bytes waiting to be written to one connection."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def write_to(self, conn: StreamConnection) -> None:
        if self.chunks:
            conn.write(b"".join(self.chunks))
            self.chunks.clear()
            self.size = 0


async def run_node(
    node_dir: Path, config: NodeConfig, identity: Identity, stop: asyncio.Event | None = None
) -> None:
    """Runs a node until ``stop`` is set, the API asks it to stop, or the task is cancelled."""
    runtime = NodeRuntime(identity=identity, config=config, node_dir=node_dir)
    await runtime.start()
    waiters = [asyncio.ensure_future(runtime.stopped.wait())]
    if stop is not None:
        waiters.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        if not runtime.stopped.is_set():
            with contextlib.suppress(Exception):
                await runtime.stop()
