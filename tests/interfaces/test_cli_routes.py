"""The CLI's route choices: names it knows reach a real node, others are refused.

The CLI talks to a real node runtime (its control API on 127.0.0.1, its node directory in a
temporary folder) that has no peers yet, so each route answers with its own refusal: the stem
has no outbound peer, the circuit path no relays. The CLI runs in a thread (it blocks on its
HTTP call) while the loop serves it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from murmur.crypto.identity import Identity
from murmur.interfaces.cli import build_parser, main
from murmur.node.config import BootstrapPeer, HostPort, NodeConfig, TxRoute
from murmur.runtime.driver import NodeRuntime
from murmur.wire.gossip import message_id

NO_STEM_PEER = "murmur: no_stem_peer: no outbound peer to stem through yet"
NO_CIRCUIT = "murmur: no_circuit: need 3 relays on distinct network prefixes"


@pytest.mark.parametrize(
    ("configured", "route", "answer"),
    [
        (TxRoute.CIRCUIT, "dandelion", NO_STEM_PEER),
        (TxRoute.CIRCUIT, None, NO_CIRCUIT),
        (TxRoute.DANDELION, None, NO_STEM_PEER),
        (TxRoute.DANDELION, "circuit", NO_CIRCUIT),
    ],
)
async def test_send_tx_takes_the_route_asked_for_or_the_nodes_own(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    configured: TxRoute,
    route: str | None,
    answer: str,
) -> None:
    runtime = NodeRuntime(
        identity=Identity.from_seed(b"c" * 32),
        config=NodeConfig(tx_route=configured),
        node_dir=tmp_path,
    )
    await runtime.start()
    try:
        argv = ["send-tx", "--dir", str(tmp_path), *(["--route", route] if route else []), "ab"]
        assert await asyncio.to_thread(main, argv) == 2
    finally:
        await runtime.stop()
    assert capsys.readouterr().err.startswith(answer)


async def test_send_tx_prints_the_message_id_the_node_stemmed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With an outbound peer the stem takes the transaction; the CLI prints its gossip id."""
    peer = NodeRuntime(identity=Identity.from_seed(b"p" * 32), config=NodeConfig())
    await peer.start()
    assert peer.listen_address is not None
    host, port = peer.listen_address
    bootstrap = BootstrapPeer(HostPort(host, port), peer.node.node_id)
    runtime = NodeRuntime(
        identity=Identity.from_seed(b"c" * 32),
        config=NodeConfig(bootstrap=(bootstrap,)),
        node_dir=tmp_path,
    )
    await runtime.start()
    try:
        async with asyncio.timeout(10.0):
            while not runtime.node.status(0.0)["peers"]:
                await asyncio.sleep(0.01)
        argv = ["send-tx", "--dir", str(tmp_path), "--route", "dandelion", "abcd"]
        assert await asyncio.to_thread(main, argv) == 0
    finally:
        await runtime.stop()
        await peer.stop()
    assert capsys.readouterr().out == message_id("transaction", bytes.fromhex("abcd")).hex() + "\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["send-tx", "--dir", "d", "--route", "mixnet", "abcd"],
        ["testnet", "--path", "mixnet"],
    ],
)
def test_unknown_route_names_are_refused(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "invalid choice: 'mixnet'" in capsys.readouterr().err


def test_testnet_accepts_the_dandelion_path() -> None:
    assert build_parser().parse_args(["testnet", "--path", "dandelion"]).path == "dandelion"
