"""Gossip messages per second through one relaying node, over real sockets on loopback.

Theory of operation. The relay is a real ``murmur node`` process (the production driver,
links and gossip router). This process plays two authenticated peers with the production link
state machine: a *source*, not in the relay's mesh, that streams pre-encoded gossip RPCs of one
1 KiB message each, and a *sink* that subscribes to the topic, so the relay grafts it into its
mesh and forwards every new message to it. The figure is messages the sink received per second
of wall time in the steady state, which is what one relay core sustains (source and sink share
the other core). The relay's per-peer rate limits are raised for the run: with the defaults
(2,000 messages/s per peer) the limiter, not the relay, would be measured.

Run ``python -m benchmarks.bench_gossip_relay [--messages N] [--size B]``; it prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from murmur.crypto.identity import Identity
from murmur.interfaces.testnet import NetNode, free_listen_port, stop_nodes
from murmur.link.connection import LinkConnection, LinkState, MessageReceived
from murmur.node.config import NodeConfig
from murmur.overlay.peers.limits import PeerLimits
from murmur.runtime.keystore import init_node_dir
from murmur.runtime.system import SystemRng
from murmur.wire.envelope import Channel, unwrap, wrap
from murmur.wire.gossip import Message, Rpc, Subscription, decode_rpc, encode_rpc

TOPIC = "block_header"
SEND_BATCH = 64
"""Messages written per loop turn by the source (one RPC each)."""


def _start_relay(base: Path) -> NetNode:
    import subprocess

    from murmur.interfaces.api_client import ApiClient

    limits = PeerLimits(
        messages_per_s=10_000_000,
        messages_burst=10_000_000,
        bytes_per_s=10_000_000_000,
        bytes_burst=10_000_000_000,
    )
    identity = init_node_dir(base / "relay", config=replace(NodeConfig(), limits=limits))
    port = free_listen_port("127.0.0.1", random.Random())
    node = NetNode(0, base / "relay", "127.0.0.1", port, identity.node_id.hex())
    argv = [
        sys.executable,
        "-m",
        "murmur.interfaces.cli",
        "node",
        "--dir",
        str(node.directory),
        "--listen",
        f"{node.host}:{node.port}",
    ]
    with node.log.open("wb") as log:
        node.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            node.client = ApiClient.from_node_dir(node.directory)
            node.client.call("status")
            return node
        except Exception:
            if time.monotonic() > deadline or node.process.poll() is not None:
                raise RuntimeError(f"relay did not start: {node.log.read_text()[-2000:]}") from None
            time.sleep(0.05)


class _Peer:
    """One authenticated link to the relay, driven by hand over asyncio streams."""

    def __init__(self, identity: Identity, relay_id: bytes) -> None:
        self.link = LinkConnection(
            initiator=True,
            identity=identity,
            rng=SystemRng(),
            now=time.monotonic(),
            expected_peer=relay_id,  # type: ignore[arg-type]
        )
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def connect(self, host: str, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self.writer.write(self.link.data_to_send())
        while self.link.state is not LinkState.ESTABLISHED:
            data = await asyncio.wait_for(self.reader.read(65536), 10.0)
            if not data:
                raise RuntimeError("relay closed the link during the handshake")
            self.link.receive_data(data, time.monotonic())
            self.writer.write(self.link.data_to_send())
        self.link.drain_events()

    def send_rpc(self, rpc_bytes: bytes) -> None:
        self.link.send_message(wrap(Channel.GOSSIP, rpc_bytes), time.monotonic())


async def _run(relay: NetNode, n_messages: int, size: int) -> dict[str, float]:
    relay_id = bytes.fromhex(relay.node_id)
    source = _Peer(Identity.from_seed(b"S" * 32), relay_id)
    sink = _Peer(Identity.from_seed(b"K" * 32), relay_id)
    await source.connect(relay.host, relay.port)
    await sink.connect(relay.host, relay.port)
    sink.send_rpc(encode_rpc(Rpc(subscriptions=(Subscription(TOPIC, True),))))
    sink.writer.write(sink.link.data_to_send())
    assert relay.client is not None
    deadline = time.monotonic() + 10
    while relay.client.call("status")["topics"]["mesh"].get(TOPIC, 0) < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("sink was not grafted into the relay's mesh")
        await asyncio.sleep(0.1)

    prefix = n_messages.to_bytes(4, "big")
    rpcs = [
        encode_rpc(
            Rpc(messages=(Message(TOPIC, prefix + i.to_bytes(8, "big") + bytes(size - 12)),))
        )
        for i in range(n_messages)
    ]
    received = 0
    first_at = last_at = 0.0
    done = asyncio.Event()

    async def consume() -> None:
        nonlocal received, first_at, last_at
        while not done.is_set():
            data = await sink.reader.read(1 << 20)
            if not data:
                return
            sink.link.receive_data(data, time.monotonic())
            pending = sink.link.data_to_send()
            if pending:
                sink.writer.write(pending)
            for event in sink.link.drain_events():
                if isinstance(event, MessageReceived):
                    channel, body = unwrap(event.payload)
                    if channel is Channel.GOSSIP:
                        count = sum(m.topic == TOPIC for m in decode_rpc(body).messages)
                        if count and received == 0:
                            first_at = time.monotonic()
                        received += count
            last_at = time.monotonic()
            if received >= n_messages:
                done.set()

    consumer = asyncio.create_task(consume())
    started = time.monotonic()
    for start in range(0, n_messages, SEND_BATCH):
        for rpc in rpcs[start : start + SEND_BATCH]:
            source.send_rpc(rpc)
        source.writer.write(source.link.data_to_send())
        await source.writer.drain()
        await asyncio.sleep(0)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 60.0)
    consumer.cancel()
    source.writer.close()
    sink.writer.close()
    elapsed = max(last_at - first_at, 1e-9)
    return {
        "gossip_msgs_per_s": round(received / elapsed, 1),
        "gossip_messages_sent": n_messages,
        "gossip_messages_relayed": received,
        "gossip_message_bytes": size,
        "gossip_wall_s": round(time.monotonic() - started, 3),
    }


def bench_gossip_relay(n_messages: int = 50_000, size: int = 1024) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="murmur-bench-") as tmp:
        relay = _start_relay(Path(tmp))
        try:
            return asyncio.run(_run(relay, n_messages, size))
        finally:
            stop_nodes([relay])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_gossip_relay")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args(argv)
    print(json.dumps(bench_gossip_relay(args.messages, args.size), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
