"""Hostile peers against a real node process on loopback.

Two real nodes run (node 0 and node 1, linked). The test process then attacks node 0 with raw
garbage, a truncated handshake, an oversized length, a replayed frame and a ping flood, using
the production link state machine over a real socket where it must authenticate. Node 0 must
cut each one off, ban the authenticated ones by node id, and keep serving node 1 and an honest
newcomer from the same address.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from pathlib import Path

import pytest

from murmur.crypto.identity import Identity
from murmur.interfaces.testnet import NetNode, running_testnet
from murmur.link.connection import LinkConnection, LinkState
from murmur.runtime.system import SystemRng

pytestmark = pytest.mark.integration


async def _closed_by_peer(reader: asyncio.StreamReader, timeout_s: float) -> bool:
    """True once the node closes the connection (FIN or RST), False if it is still open."""
    try:
        while await asyncio.wait_for(reader.read(65536), timeout_s):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


async def _raw(node: NetNode, data: bytes, timeout_s: float = 3.0) -> bool:
    reader, writer = await asyncio.open_connection(node.host, node.port)
    writer.write(data)
    await writer.drain()
    closed = await _closed_by_peer(reader, timeout_s)
    writer.close()
    return closed


async def _authenticated(node: NetNode, identity: Identity):
    reader, writer = await asyncio.open_connection(node.host, node.port)
    link = LinkConnection(
        initiator=True,
        identity=identity,
        rng=SystemRng(),
        now=time.monotonic(),
        expected_peer=bytes.fromhex(node.node_id),
    )
    writer.write(link.data_to_send())
    while link.state is not LinkState.ESTABLISHED:
        data = await asyncio.wait_for(reader.read(65536), 5.0)
        assert data, "node closed during handshake"
        link.receive_data(data, time.monotonic())
        writer.write(link.data_to_send())
    return reader, writer, link


def _peer_ids(node: NetNode) -> set[str]:
    assert node.client is not None
    return {p["node_id"] for p in node.client.call("status")["peers"]}


def test_node_survives_hostile_peers(tmp_path: Path) -> None:
    with running_testnet(2, base=tmp_path, rng=random.Random(7)) as (target, friend):
        deadline = time.monotonic() + 20
        while friend.node_id not in _peer_ids(target):
            assert time.monotonic() < deadline, "nodes did not connect"
            time.sleep(0.1)

        async def attack() -> None:
            # Pre-authentication garbage: cut off at once, address only throttled briefly.
            assert await _raw(target, b"GET / HTTP/1.1\r\n\r\n" * 10)
            await asyncio.sleep(1.5)
            assert await _raw(target, struct.pack(">I", 0xFFFFFFFF) + b"x" * 100)
            await asyncio.sleep(2.5)
            # Truncated handshake: the node waits out its handshake timeout, then closes.
            assert await _raw(target, struct.pack(">I", 1602) + b"\x01" * 50, timeout_s=15.0)
            await asyncio.sleep(4.5)

            # Replayed frame from an authenticated peer: cut off and banned by node id.
            replayer = Identity.from_seed(b"R" * 32)
            reader, writer, link = await _authenticated(target, replayer)
            link.send_message(b"\x01" + b"\x00" * 8, time.monotonic())
            frame = link.data_to_send()
            writer.write(frame + frame)
            assert await _closed_by_peer(reader, 5.0)
            writer.close()
            # Banned: a new handshake with the same identity is refused once it authenticates.
            reader, writer, link = await _authenticated(target, replayer)
            assert await _closed_by_peer(reader, 5.0)
            writer.close()

            # Ping flood from another authenticated peer.
            flooder = Identity.from_seed(b"F" * 32)
            reader, writer, link = await _authenticated(target, flooder)
            for _ in range(50):
                link.ping(time.monotonic())
            writer.write(link.data_to_send())
            assert await _closed_by_peer(reader, 5.0)
            writer.close()

            # An honest newcomer behind the same address is still welcome.
            honest = Identity.from_seed(b"H" * 32)
            reader, writer, link = await _authenticated(target, honest)
            await asyncio.sleep(0.5)
            assert honest.node_id.hex() in _peer_ids(target)
            writer.close()

        asyncio.run(attack())
        assert target.process is not None and target.process.poll() is None
        assert friend.node_id in _peer_ids(target)
        assert target.client is not None
        counters = target.client.call("status")["counters"]
        assert counters.get("link.protocol_error.crypto", 0) >= 1
        assert counters.get("link.protocol_error.ping_flood", 0) >= 1
        assert counters.get("refused.banned", 0) >= 1
        assert counters.get("links_closed.handshake_timeout", 0) >= 1
        assert counters.get("address_backoffs", 0) >= 2
        assert target.client.call("status")["bans"] == 2
