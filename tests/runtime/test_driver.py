"""The asyncio driver's write path and timer, over a fake connection (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from murmur.crypto.identity import Identity
from murmur.node.actions import ConnId, SendBytes
from murmur.node.config import NodeConfig, TxRoute
from murmur.runtime.control_api import ApiError
from murmur.runtime.driver import FLUSH_BYTES, MAX_WRITE_BACKLOG_BYTES, NodeRuntime


class FakeConnection:
    """Records writes; its unsent backlog is whatever the test sets."""

    def __init__(self) -> None:
        self.peer_host = "127.0.0.1"
        self.peer_port = 40000
        self.on_data: Callable[[bytes], None] = lambda data: None
        self.on_lost: Callable[[], None] = lambda: None
        self.writes: list[bytes] = []
        self.backlog = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def buffered_bytes(self) -> int:
        return self.backlog

    def close(self) -> None:
        self.closed = True


def _runtime_with_connection() -> tuple[NodeRuntime, FakeConnection, ConnId]:
    runtime = NodeRuntime(identity=Identity.from_seed(b"d" * 32), config=NodeConfig())
    conn = FakeConnection()
    runtime._accepted(conn)  # type: ignore[arg-type]
    return runtime, conn, ConnId(1)


async def test_small_writes_are_coalesced_until_the_end_of_the_tick() -> None:
    runtime, conn, conn_id = _runtime_with_connection()
    runtime._apply([SendBytes(conn_id, b"ab"), SendBytes(conn_id, b"cd")])
    runtime._apply([SendBytes(conn_id, b"ef")])
    assert conn.writes == []
    await asyncio.sleep(0)
    assert conn.writes == [b"abcdef"]


async def test_output_reaching_flush_bytes_leaves_within_the_tick() -> None:
    runtime, conn, conn_id = _runtime_with_connection()
    runtime._apply([SendBytes(conn_id, bytes(FLUSH_BYTES - 1))])
    assert conn.writes == []
    runtime._apply([SendBytes(conn_id, b"x"), SendBytes(conn_id, b"tail")])
    assert conn.writes == [bytes(FLUSH_BYTES - 1) + b"x"]
    await asyncio.sleep(0)
    assert conn.writes[1:] == [b"tail"]


async def test_a_connection_written_early_is_still_checked_for_backlog() -> None:
    runtime, conn, conn_id = _runtime_with_connection()
    runtime._apply([SendBytes(conn_id, bytes(FLUSH_BYTES))])
    assert len(conn.writes) == 1
    conn.backlog = MAX_WRITE_BACKLOG_BYTES + 1
    await asyncio.sleep(0)
    assert conn.closed
    assert runtime.node.counters.get("disconnected.slow_reader") == 1
    runtime._apply([SendBytes(conn_id, b"late")])
    await asyncio.sleep(0)
    assert len(conn.writes) == 1


async def test_the_timer_is_rearmed_once_per_tick() -> None:
    runtime, _, _ = _runtime_with_connection()
    await asyncio.sleep(0)
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
