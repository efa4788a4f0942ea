"""The asyncio driver's write path and timer, over real TCP connections on 127.0.0.1.

The runtime listens through its ``TcpTransport`` (port 0) and the test dials it with a plain
blocking socket: that peer sees exactly what the driver wrote and when, can stop reading so the
kernel buffers fill, and counts the TCP segments that carried data (one per ``write``: the
driver's sockets have Nagle off). While a test runs synchronous code the event loop is stalled,
so bytes reaching the peer meanwhile were written within the current tick, and bytes that do not
arrive in a short bounded wait were held back for its end.
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import ConfigError
from murmur.base.ids import NodeId
from murmur.crypto.identity import Identity
from murmur.node.actions import ConnId, Dial, SendBytes
from murmur.node.config import BootstrapPeer, HostPort, NodeConfig, TxRoute
from murmur.node.private_path import DEFAULT_CAPACITY, encode_sync_request
from murmur.overlay.announce import PeerAnnouncement, sign_announcement
from murmur.overlay.circuits.guards import GuardRecord
from murmur.overlay.circuits.onion_keys import OnionKeyPair
from murmur.runtime import keystore, transport
from murmur.runtime.control_api import ApiError
from murmur.runtime.driver import FLUSH_BYTES, MAX_WRITE_BACKLOG_BYTES, NodeRuntime
from murmur.runtime.transport import StreamConnection
from murmur.sim.rng import SeededRng
from murmur.wire.cells import RelayAddress
from murmur.wire.gossip import MESSAGE_ID_BYTES

HELD_BACK_WAIT_S = 0.05
"""How long a test waits, with the loop stalled, to see that nothing was written."""
_TCPI_DATA_SEGS_IN = 152
"""Offset of ``tcpi_data_segs_in`` (u32, Linux 4.6+) in ``struct tcp_info``."""


@dataclass
class Wired:
    runtime: NodeRuntime
    peer: socket.socket
    conn_id: ConnId

    @property
    def conn(self) -> StreamConnection:
        return self.runtime._conns[self.conn_id]


@asynccontextmanager
async def _wired(*, peer_rcvbuf: int | None = None) -> AsyncIterator[Wired]:
    """A started runtime and one inbound connection to it from a blocking socket."""
    runtime = NodeRuntime(identity=Identity.from_seed(b"d" * 32), config=NodeConfig())
    await runtime.start()
    assert runtime.listen_address is not None
    peer = socket.socket()
    try:
        if peer_rcvbuf is not None:  # before connecting: it sets the window offered
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, peer_rcvbuf)
        peer.connect(runtime.listen_address)
        peer.settimeout(5.0)
        async with asyncio.timeout(5.0):
            while not runtime._conns:  # accepted on the loop
                await asyncio.sleep(0.001)
        (conn_id,) = runtime._conns
        await asyncio.sleep(0)  # the tick that accepted it ends
        yield Wired(runtime, peer, conn_id)
    finally:
        peer.close()
        await runtime.stop()


def _send(w: Wired, *chunks: bytes) -> None:
    """The node asks to send ``chunks`` in this tick, as if an input had caused it."""
    w.runtime._apply([SendBytes(w.conn_id, chunk) for chunk in chunks])
    w.runtime._after_input()  # what every input ends with: the tick's end is scheduled


def _held_back(peer: socket.socket) -> bool:
    """True if nothing arrives within ``HELD_BACK_WAIT_S`` (call with the loop stalled)."""
    readable, _, _ = select.select([peer], [], [], HELD_BACK_WAIT_S)
    return not readable


def _receive(peer: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes (blocking, up to the socket's timeout for each read)."""
    data = bytearray()
    while len(data) < size:
        chunk = peer.recv(size - len(data))
        assert chunk, f"connection closed after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


def _receive_to_eof(peer: socket.socket) -> bytes:
    data = bytearray()
    while chunk := peer.recv(1 << 20):
        data += chunk
    return bytes(data)


def _data_segments_in(peer: socket.socket) -> int:
    """TCP segments with data the peer has received: one per driver ``write`` when small."""
    if sys.platform != "linux":
        pytest.skip("counts segments with Linux's TCP_INFO")
    info = peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, _TCPI_DATA_SEGS_IN)[0])


async def test_small_writes_are_coalesced_until_the_end_of_the_tick() -> None:
    async with _wired() as w:
        segments = _data_segments_in(w.peer)
        _send(w, b"ab", b"cd")
        _send(w, b"ef")
        assert _held_back(w.peer)
        await asyncio.sleep(0)
        assert _receive(w.peer, 6) == b"abcdef"
        assert _data_segments_in(w.peer) - segments == 1  # one write for the tick
        assert _held_back(w.peer)


async def test_output_reaching_flush_bytes_leaves_within_the_tick() -> None:
    async with _wired() as w:
        _send(w, bytes(FLUSH_BYTES - 1))
        assert _held_back(w.peer)
        _send(w, b"x", b"tail")
        # the loop has not run since: these bytes were written within the tick
        assert _receive(w.peer, FLUSH_BYTES) == bytes(FLUSH_BYTES - 1) + b"x"
        assert _held_back(w.peer)
        await asyncio.sleep(0)
        assert _receive(w.peer, 4) == b"tail"


async def test_a_connection_written_early_is_still_checked_for_backlog() -> None:
    """The peer stops reading: its window and our send buffer fill, then the transport's."""
    async with _wired(peer_rcvbuf=64 * 1024) as w:
        conn, written = w.conn, 0
        while conn.buffered_bytes() <= MAX_WRITE_BACKLOG_BYTES:
            _send(w, bytes(FLUSH_BYTES))  # each written at once
            written += FLUSH_BYTES
            assert written < 256 * 1024 * 1024, "the kernel never pushed back"
        assert not _held_back(w.peer)  # written early: the first bytes are at the peer
        assert w.runtime.node.counters.get("disconnected.slow_reader") == 0
        await asyncio.sleep(0)
        assert w.runtime.node.counters.get("disconnected.slow_reader") == 1
        assert w.conn_id not in w.runtime._conns
        _send(w, b"late")
        await asyncio.sleep(0)
        # the cut connection flushes what it holds, then closes; "late" never left
        received = await asyncio.to_thread(_receive_to_eof, w.peer)
        assert len(received) == written and received == bytes(written)


async def test_a_cut_connection_whose_peer_never_reads_is_aborted_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closing waits for the buffer to drain; a peer that never reads must not hold the socket
    and the megabytes written to it once the node has forgotten the connection."""
    monkeypatch.setattr(transport, "CLOSE_GRACE_S", 0.2)
    async with _wired(peer_rcvbuf=64 * 1024) as w:
        conn, written = w.conn, 0
        lost = asyncio.Event()
        conn.on_lost = lost.set
        while conn.buffered_bytes() <= MAX_WRITE_BACKLOG_BYTES:
            _send(w, bytes(FLUSH_BYTES))
            written += FLUSH_BYTES
        await asyncio.sleep(0)
        assert w.runtime.node.counters.get("disconnected.slow_reader") == 1
        assert not lost.is_set() and conn.buffered_bytes() > 0  # still trying to hand it over
        async with asyncio.timeout(2.0):
            await lost.wait()
        assert conn.buffered_bytes() == 0
        # what the kernel already held still arrives, the rest was dropped with the transport
        received = await asyncio.to_thread(_receive_to_eof, w.peer)
        assert len(received) < written - MAX_WRITE_BACKLOG_BYTES


@pytest.mark.interpreted_only
async def test_the_timer_is_rearmed_once_per_tick() -> None:
    async with _wired() as w:
        runtime = w.runtime
        calls = []
        next_deadline = runtime.node.next_deadline

        def counting() -> float | None:
            calls.append(1)
            return next_deadline()

        runtime.node.next_deadline = counting  # type: ignore[method-assign]
        for _ in range(5):
            runtime._after_input()
        assert calls == []
        await asyncio.sleep(0)
        assert len(calls) == 1
        assert runtime._timer is not None


async def test_publish_takes_the_route_asked_for_or_the_configured_one() -> None:
    default_stem = NodeConfig(tx_route=TxRoute.DANDELION)
    runtime = NodeRuntime(identity=Identity.from_seed(b"d" * 32), config=default_stem)
    publish = runtime._api_handlers()["publish"]
    tx = {"topic": "transaction", "data_hex": "ab"}
    cases = [
        ({**tx, "route": "mixnet"}, "bad_route", "unknown transaction route 'mixnet'"),
        (tx, "no_stem_peer", "no outbound peer"),  # the config's route: dandelion
        ({**tx, "route": "dandelion", "level": "standard"}, "bad_params", "not the stem"),
        ({"topic": "block_header", "data_hex": "ab", "route": "dandelion"}, "bad_params", ""),
        ({**tx, "route": 1}, "bad_params", "'route'"),
    ]
    for params, code, text in cases:
        with pytest.raises(ApiError) as err:
            await publish(params)
        assert err.value.code == code and text in err.value.message, params


_json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_json_values = st.recursive(
    _json_leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _param(*names: str) -> st.SearchStrategy[object]:
    """A parameter: left out (None reads as absent), one of ``names`` (twice as likely: the
    paths behind a valid value are the deep ones), or any JSON value."""
    named = st.sampled_from(names)
    return st.one_of(st.none(), named, named, _json_values)


_api_params = st.fixed_dictionaries(
    {
        "topic": _param("transaction", "block_header", "sync_request", "nope!"),
        "data_hex": st.one_of(
            st.none(), *[st.binary(max_size=64).map(bytes.hex)] * 2, _json_values
        ),
        "level": _param("standard", "maximum", "loud"),
        "route": _param("circuit", "dandelion", "carrier pigeon"),
        "message_ids": st.none() | st.lists(st.text(max_size=8), max_size=3) | _json_values,
    }
)


def test_api_handlers_answer_any_params_with_a_result_or_an_api_error() -> None:
    """Whatever a local client sends, a handler of a real started node returns a result or
    raises ``ApiError``; anything else would reach the client as a bare 500."""
    loop = asyncio.new_event_loop()
    runtime = NodeRuntime(identity=Identity.from_seed(b"f" * 32), config=NodeConfig())
    loop.run_until_complete(runtime.start())
    handlers = runtime._api_handlers()

    @settings(max_examples=500, deadline=None)
    @given(
        method=st.sampled_from(["publish", "publish", "sync", "status", "deliveries"]),
        params=_api_params,
    )
    def answers(method: str, params: dict[str, object]) -> None:
        try:
            result = loop.run_until_complete(asyncio.wait_for(handlers[method](params), 5.0))
        except ApiError as exc:
            assert 400 <= exc.status <= 599 and exc.code
            return
        assert isinstance(result, dict)

    try:
        answers()
    finally:
        loop.run_until_complete(runtime.stop())
        loop.close()


async def test_a_second_node_on_one_directory_is_refused_and_leaves_the_first_reachable(
    tmp_path: Path,
) -> None:
    identity = keystore.init_node_dir(tmp_path)
    first = NodeRuntime(identity=identity, config=NodeConfig(), node_dir=tmp_path)
    await first.start()
    try:
        info = keystore.read_node_info(tmp_path)
        second = NodeRuntime(identity=identity, config=NodeConfig(), node_dir=tmp_path)
        with pytest.raises(ConfigError, match="another murmur node is running"):
            await second.start()
        assert keystore.read_node_info(tmp_path) == info  # the first one's card, untouched
        assert second._server is None
    finally:
        await first.stop()
    assert not (tmp_path / keystore.NODE_INFO_FILE).exists()
    third = NodeRuntime(identity=identity, config=NodeConfig(), node_dir=tmp_path)
    await third.start()  # the lock was given back
    await third.stop()


async def test_a_node_with_regional_paths_places_itself_and_relays_with_its_region_map(
    tmp_path: Path,
) -> None:
    identity = keystore.init_node_dir(tmp_path)
    (tmp_path / "regions.txt").write_text("127.0.0.0/8 lo\n")
    config = NodeConfig(regional_paths=True, region_map="regions.txt")
    runtime = NodeRuntime(identity=identity, config=config, node_dir=tmp_path)
    await runtime.start()
    try:
        client = runtime.node.circuits.client
        assert client.config.regions is not None and client.own_host == "127.0.0.1"
        assert client.config.regions.region_of(client.own_host) == "lo"
    finally:
        await runtime.stop()
    with pytest.raises(ConfigError, match="regional paths need a region map"):
        NodeRuntime(identity=identity, config=config)  # no node directory to read it from


async def test_a_start_that_fails_undoes_what_it_opened(tmp_path: Path) -> None:
    identity = keystore.init_node_dir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = NodeConfig(api_listen=HostPort("127.0.0.1", port))
        runtime = NodeRuntime(identity=identity, config=config, node_dir=tmp_path)
        with pytest.raises(OSError):
            await runtime.start()
    assert runtime._server is None and runtime._api is None
    assert not (tmp_path / keystore.COOKIE_FILE).exists()
    assert not (tmp_path / keystore.NODE_INFO_FILE).exists()
    keystore.lock_node_dir(tmp_path).release()


class _ConnectsDespiteCancel(transport.TcpTransport):
    """Dials like TCP, but the connection lands after the dialling task was cancelled: what
    ``asyncio.wait_for`` returns on Python 3.11 when the connection completes as the cancel
    arrives (it swallows the cancel and returns the result)."""

    def __init__(self) -> None:
        self.dialling = asyncio.Event()

    async def connect(self, host: str, port: int, timeout_s: float) -> StreamConnection:
        self.dialling.set()
        with suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        return await super().connect(host, port, timeout_s)


class _FailsAsItStops(transport.TcpTransport):
    """The first dial fails after the dialling task was cancelled (``asyncio.wait_for`` on
    Python 3.11 raises the connect's error when it fails as the cancel arrives); any later
    dial is recorded and never ends."""

    def __init__(self) -> None:
        self.dialling = asyncio.Event()
        self.dialled: list[tuple[str, int]] = []

    async def connect(self, host: str, port: int, timeout_s: float) -> StreamConnection:
        self.dialled.append((host, port))
        if len(self.dialled) > 1:
            await asyncio.sleep(3600)
        self.dialling.set()
        with suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        raise ConnectionRefusedError(111, "Connection refused")


@pytest.mark.interpreted_only
async def test_a_dial_that_fails_as_the_runtime_stops_starts_no_other_dial() -> None:
    """Told of the failure, the node may ask for another dial (a circuit whose guard could
    not be reached is built through another guard), which the stopped runtime then made."""
    first = BootstrapPeer(HostPort("127.0.0.1", 9))
    dialler = _FailsAsItStops()
    runtime = NodeRuntime(
        identity=Identity.from_seed(b"d" * 32),
        config=NodeConfig(bootstrap=(first,)),
        transport=dialler,
    )
    dial_failed = runtime.node.dial_failed

    def fails_over(target: BootstrapPeer, now: float) -> None:
        dial_failed(target, now)
        runtime.node._actions.append(Dial(BootstrapPeer(HostPort("127.0.0.1", 10))))

    runtime.node.dial_failed = fails_over  # type: ignore[method-assign]
    await runtime.start()
    async with asyncio.timeout(5.0):
        await dialler.dialling.wait()
    await runtime.stop()
    await asyncio.sleep(0.1)  # the cancelled dial fails and returns
    assert dialler.dialled == [("127.0.0.1", 9)]
    assert runtime._tasks == set()


def _relay(k: int, port: int) -> PeerAnnouncement:
    """Relay ``k``'s announcement, signed now, at 127.k.0.1:``port``: each relay on a network
    prefix of its own, none on the node's (127.0.0.1)."""
    return sign_announcement(
        Identity.from_seed(bytes([k]) * 32),
        address=RelayAddress(f"127.{k}.0.1", port),
        onion_keys=OnionKeyPair.generate(SeededRng(k)).public,
        capacity=DEFAULT_CAPACITY,
        sequence=int(time.time() * 1000),
    )


def _entering_through(
    node_dir: Path, relays: list[PeerAnnouncement], dialler: transport.Transport | None = None
) -> NodeRuntime:
    """A runtime on ``node_dir`` that knows ``relays`` and kept the first as its entry guard
    (with its announcement, as a run before it would have): it builds circuits through it at
    once, not after the guard list's settling time."""
    identity = keystore.init_node_dir(node_dir)
    guard = relays[0]
    now = time.time()
    keystore.write_guards(
        node_dir,
        [GuardRecord(guard.node_id, now, now + 40 * 86_400.0)],
        {guard.node_id: guard.encode()},
    )
    runtime = NodeRuntime(
        identity=identity, config=NodeConfig(), node_dir=node_dir, transport=dialler
    )
    taken = runtime.node.restore_announcements([r.encode() for r in relays], time.monotonic())
    assert taken == len(relays) - 1  # the guard's came from the directory
    return runtime


async def test_stop_fails_a_request_still_waiting_for_its_circuit(tmp_path: Path) -> None:
    """No link ``stop`` reports lost carries a circuit the request is on: it waits for one
    still being built (its guard accepts the link and never answers), and it waited out its
    whole timeout after the runtime had stopped."""
    with socket.socket() as guard_host:
        guard_host.bind(("127.1.0.1", 0))
        guard_host.listen()
        runtime = _entering_through(
            tmp_path, [_relay(k, guard_host.getsockname()[1]) for k in (1, 2, 3)]
        )
        await runtime.start()
        request = asyncio.create_task(runtime.request_private("sync_request", b"\x00" * 20, 30.0))
        guard_host.settimeout(5.0)
        accepted, _ = await asyncio.to_thread(guard_host.accept)  # the circuit's first link
        with accepted:
            assert not request.done()
            await runtime.stop()
            with pytest.raises(ApiError, match="private_send_failed: node_stopped"):
                async with asyncio.timeout(1.0):
                    await request


class _RecordsDials(transport.TcpTransport):
    """TCP, noting the address of each dial."""

    def __init__(self) -> None:
        self.dialled: list[tuple[str, int]] = []

    async def connect(self, host: str, port: int, timeout_s: float) -> StreamConnection:
        self.dialled.append((host, port))
        return await super().connect(host, port, timeout_s)


@asynccontextmanager
async def _relays(*ks: int) -> AsyncIterator[list[NodeRuntime]]:
    """Started relay runtimes, relay ``k`` listening on 127.k.0.1 (each on a network prefix of
    its own, none on the node's), once each has signed its announcement; stopped at the end."""
    relays = [
        NodeRuntime(
            identity=Identity.from_seed(bytes([k]) * 32),
            config=NodeConfig(listen=HostPort(f"127.{k}.0.1", 0)),
        )
        for k in ks
    ]
    try:
        for relay in relays:
            await relay.start()
        async with asyncio.timeout(5.0):
            while any(relay.node.private.own_announcement is None for relay in relays):
                await asyncio.sleep(0.001)
        yield relays
    finally:
        for relay in relays:
            await relay.stop()


def _announcement(runtime: NodeRuntime) -> PeerAnnouncement:
    own = runtime.node.private.own_announcement
    assert own is not None
    return PeerAnnouncement.decode(own)


def _unanswered(relays: list[NodeRuntime]) -> int:
    """Private requests that reached an exit among ``relays`` and got no reply from it."""
    return sum(
        relay.node.circuits.metrics().get("relay.exit_requests_unanswered", 0) for relay in relays
    )


async def test_stop_fails_a_request_on_a_built_circuit_and_dials_nothing_for_another(
    tmp_path: Path,
) -> None:
    """The links ``stop`` reports lost take their circuits with them: a request the exit has
    not answered fails at once (it used to wait out its whole timeout), and the dial the node
    asks for to build another circuit through its guard is neither made nor left queued in the
    node. Three relay runtimes carry the circuit; the request asks the exit for a message it
    does not hold, so it has nothing to send back."""
    async with _relays(1, 2, 3) as relays:
        dialler = _RecordsDials()
        runtime = _entering_through(tmp_path, [_announcement(relay) for relay in relays], dialler)
        await runtime.start()
        try:
            asked = encode_sync_request([bytes(MESSAGE_ID_BYTES)])
            request = asyncio.create_task(runtime.request_private("sync_request", asked, 30.0))
            async with asyncio.timeout(5.0):
                while not _unanswered(relays):  # through hop 1 and hop 2, to the exit
                    await asyncio.sleep(0.001)
            assert not request.done()
            node = runtime.node
            dials_asked = node.counters.get("dials.for_circuit")
            dialled = list(dialler.dialled)
            assert dialled == [relays[0].listen_address]  # the guard, for the circuit
        finally:
            await runtime.stop()
        with pytest.raises(ApiError, match="private_send_failed: circuit_closed"):
            async with asyncio.timeout(1.0):
                await request
        assert node.counters.get("dials.for_circuit") > dials_asked  # the guard, again
        assert node.drain_actions() == []
        await asyncio.sleep(0.05)  # a dial made would have begun
        assert dialler.dialled == dialled and runtime._tasks == set()


def _sees_eof(peer: socket.socket) -> bool:
    peer.settimeout(2.0)
    try:
        return peer.recv(1) == b""
    except ConnectionResetError:
        return True


async def test_a_dial_that_completes_as_the_runtime_stops_is_closed_not_adopted() -> None:
    """Adopted, the stopped node would keep the link open and, through the timer its
    handshake re-arms, wake again to dial its peers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        peer = BootstrapPeer(HostPort("127.0.0.1", listener.getsockname()[1]))
        dialler = _ConnectsDespiteCancel()
        runtime = NodeRuntime(
            identity=Identity.from_seed(b"d" * 32),
            config=NodeConfig(bootstrap=(peer,)),
            transport=dialler,
        )
        await runtime.start()
        async with asyncio.timeout(5.0):
            await dialler.dialling.wait()
        await runtime.stop()
        await asyncio.sleep(0.1)  # the cancelled dial connects and returns
        accepted, _ = listener.accept()
        with accepted:
            assert runtime._conns == {}
            assert runtime._timer is None or runtime._timer.cancelled()
            assert await asyncio.to_thread(_sees_eof, accepted)


async def test_a_connection_accepted_as_the_runtime_stops_is_closed_not_adopted() -> None:
    """The listener may hand over a connection it accepted just before it was closed."""
    runtime = NodeRuntime(identity=Identity.from_seed(b"d" * 32), config=NodeConfig())
    await runtime.start()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        host, port = listener.getsockname()
        conn = await transport.TcpTransport().connect(host, port, 5.0)
        await runtime.stop()
        runtime._accepted(conn)
        await asyncio.sleep(0)
        accepted, _ = listener.accept()
        with accepted:
            assert runtime._conns == {}
            assert runtime._timer is None or runtime._timer.cancelled()
            assert await asyncio.to_thread(_sees_eof, accepted)


def _signed_at(runtime: NodeRuntime, now: float) -> PeerAnnouncement:
    """The announcement ``runtime``'s node signs at monotonic time ``now``."""
    runtime.node.set_advertised_address("127.0.0.1", 9, now)
    runtime.node.handle_timer(now)
    own = runtime.node.private.own_announcement
    assert own is not None
    return PeerAnnouncement.decode(own)


def test_the_runtime_gives_the_node_its_wall_clock() -> None:
    """Announcements are dated on the wall clock, which the core cannot read: the runtime
    hands the node its offset from the monotonic clock, so a record signed two hours into
    the node's life says so (it used to say the start time, plus one per re-announcement)."""
    identity = Identity.from_seed(b"w" * 32)
    runtime = NodeRuntime(identity=identity, config=NodeConfig())
    later = time.monotonic() + 7_200.0
    expected = time.time() + 7_200.0
    assert abs(_signed_at(runtime, later).issued_at - expected) < 5.0


def test_a_runtime_restarted_later_signs_a_newer_announcement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    identity = Identity.from_seed(b"w" * 32)
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    first = _signed_at(NodeRuntime(identity=identity, config=NodeConfig()), time.monotonic())
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.5)  # half a second later
    restarted = NodeRuntime(identity=identity, config=NodeConfig())
    assert _signed_at(restarted, time.monotonic()).sequence > first.sequence


def test_a_stepped_wall_clock_reaches_the_node_which_announces_again_dated_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A machine with no clock of its own boots in 1970 and NTP sets it later: the node,
    started before that, dated its record 1970 (stale to every peer). When the runtime sees
    the wall clock step, the node takes the new offset and signs again within a minute."""
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: 3_600.0)  # an hour after the epoch
    runtime = NodeRuntime(identity=Identity.from_seed(b"w" * 32), config=NodeConfig())
    now = time.monotonic()
    assert abs(_signed_at(runtime, now).issued_at - 3_600.0) < 1.0
    runtime._follow_wall_clock(now)  # no step: nothing changes
    assert runtime.node.private.next_announcement_at != now
    monkeypatch.setattr(time, "time", real_time)  # NTP sets the clock
    runtime._follow_wall_clock(now)
    due = runtime.node.private.next_announcement_at
    assert due is not None and due <= now + 60.0
    runtime.node.handle_timer(due)
    own = runtime.node.private.own_announcement
    assert own is not None
    assert abs(PeerAnnouncement.decode(own).issued_at - (time.time() + due - now)) < 5.0
    assert runtime.node.private.book.wall_clock_offset_s == runtime.node.private.wall_clock_offset_s


def test_a_runtime_enters_through_the_guards_its_directory_kept(tmp_path: Path) -> None:
    """The node directory's guard list reaches the node at start, and the list the node holds
    is written back whenever it changes (at the end of a tick)."""
    identity = keystore.init_node_dir(tmp_path)
    now = time.time()
    kept = [
        GuardRecord(NodeId(b"\x07" * 32), now - 50 * 86_400.0, now + 10 * 86_400.0),
        GuardRecord(NodeId(b"\x08" * 32), now - 60 * 86_400.0, now - 1.0),  # its time is up
    ]
    keystore.write_guards(tmp_path, kept, {})
    runtime = NodeRuntime(identity=identity, config=NodeConfig(), node_dir=tmp_path)
    assert runtime.node.guard_records() == kept
    runtime.node.handle_timer(time.monotonic())  # the pool tries to build: the list is pruned
    runtime._save_guards(time.monotonic())
    (saved,) = keystore.read_guards(tmp_path).records
    assert saved.unlisted_since is not None  # no directory yet: skipped, kept for 20 days
    assert abs(saved.unlisted_since - time.time()) < 60.0
    assert replace(saved, unlisted_since=None) == kept[0]


def test_a_guard_list_that_cannot_be_written_is_counted_and_the_node_runs_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = keystore.init_node_dir(tmp_path)
    runtime = NodeRuntime(identity=identity, config=NodeConfig(), node_dir=tmp_path)

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keystore, "write_guards", disk_full)
    now = time.monotonic()
    runtime._save_guards(now, force=True)  # raised out of the tick before: no timer re-armed
    assert runtime.node.counters.get("guards_save_failed") == 1
    runtime._save_guards(now + 1.0)  # not retried at every tick
    assert runtime.node.counters.get("guards_save_failed") == 1


def test_a_guard_path_bias_disables_is_logged_once_and_kept_disabled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    identity = keystore.init_node_dir(tmp_path)
    now = time.time()
    guard = NodeId(b"\x09" * 32)
    keystore.write_guards(tmp_path, [GuardRecord(guard, now, now + 40 * 86_400.0)], {})
    runtime = NodeRuntime(identity=identity, config=NodeConfig(), node_dir=tmp_path)
    guards = runtime.node.circuits.client.guards
    disabled = [guards.circuit_ended(guard, ok=False, wall_now=now) for _ in range(20)]
    assert disabled == [False] * 19 + [True]
    with caplog.at_level("WARNING", logger="murmur.runtime.driver"):
        runtime._save_guards(time.monotonic())
        runtime._save_guards(time.monotonic(), force=True)
    warnings = [r.getMessage() for r in caplog.records if "path bias" in r.getMessage()]
    assert warnings == [f"entry guard {guard.hex()[:16]} disabled: circuits through it failed, "
                        "or lost what they carried, far more often than circuits do (path "
                        "bias); using the next guard"]  # fmt: skip
    (saved,) = keystore.read_guards(tmp_path).records
    assert saved.disabled_at == now and saved.path_bias.outcomes == 20.0


class _Noting(StreamConnection):
    """A connection that says when its first bytes, or its end, have come in."""

    def __init__(self) -> None:
        super().__init__()
        self.came = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.came.set()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.came.set()


class _ReturnsAfterThePeerActs(transport.TcpTransport):
    """Dials like TCP, but returns the connection only once the peer's first bytes (or its
    close) have been read: what happens whenever the peer acts before the dialling task
    resumes, as a listener that writes on accept does every time."""

    async def connect(self, host: str, port: int, timeout_s: float) -> StreamConnection:
        _, conn = await asyncio.get_running_loop().create_connection(_Noting, host, port)
        await conn.came.wait()
        return conn


@asynccontextmanager
async def _dialling(listener: socket.socket) -> AsyncIterator[tuple[NodeRuntime, socket.socket]]:
    """A started runtime whose one bootstrap peer is ``listener``, and the link it dialled."""
    peer = BootstrapPeer(HostPort("127.0.0.1", listener.getsockname()[1]))
    runtime = NodeRuntime(
        identity=Identity.from_seed(b"d" * 32),
        config=NodeConfig(bootstrap=(peer,)),
        transport=_ReturnsAfterThePeerActs(),
    )
    await runtime.start()
    try:
        accepted, _ = await asyncio.to_thread(listener.accept)
        with accepted:
            yield runtime, accepted
    finally:
        await runtime.stop()


async def test_bytes_a_dialled_peer_sends_before_the_dial_returns_reach_the_node() -> None:
    """They were dropped: the link waited for a reply it had already been sent, dead until
    the handshake timed out. Here the reply is malformed, so the node closes the link at once
    when it reads it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        async with _dialling(listener) as (runtime, accepted):
            accepted.sendall(b"\xff" * 8)  # a record header claiming 4 GiB
            accepted.settimeout(2.0)
            await asyncio.to_thread(_receive_to_eof, accepted)  # the hello, then the close
            assert runtime._conns == {}


async def test_a_dialled_peer_that_closes_before_the_dial_returns_is_seen_gone() -> None:
    """Its close was missed too: the node held the dead link, and its outbound slot, until
    the handshake timed out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        async with _dialling(listener) as (runtime, accepted):
            accepted.close()
            async with asyncio.timeout(2.0):
                while runtime._conns or runtime.node.counters.get("connections_lost") == 0:
                    await asyncio.sleep(0.01)
