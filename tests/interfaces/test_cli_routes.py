"""The CLI's route choices: names it knows reach the control API, others are refused.

The CLI talks to a real control API server on 127.0.0.1, started in a temporary node directory
with a ``publish`` handler that records what it was asked; the CLI runs in a thread (it blocks
on its HTTP call) while the loop serves it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from murmur.interfaces.cli import build_parser, main
from murmur.runtime.control_api import ControlApiServer
from murmur.runtime.keystore import write_cookie, write_node_info

MESSAGE_ID = "5a" * 20


class _Node:
    """A node directory whose control API records every publish it is asked for."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.published: list[dict[str, Any]] = []

    async def publish(self, params: dict[str, Any]) -> dict[str, Any]:
        self.published.append(params)
        return {"message_id": MESSAGE_ID, "published_at": 1.0, "path": "dandelion"}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[_Node]:
    recorder = _Node(tmp_path)
    server = ControlApiServer(cookie=write_cookie(tmp_path), handlers={"publish": recorder.publish})
    host, port = await server.start()
    write_node_info(tmp_path, {"pid": 1, "listen": "127.0.0.1:1", "api": f"{host}:{port}"})
    yield recorder
    await server.close()


async def test_send_tx_passes_the_route_to_the_node(
    node: _Node, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = str(node.directory)
    routed = ["send-tx", "--dir", directory, "--route", "dandelion", "abcd"]
    assert await asyncio.to_thread(main, routed) == 0
    assert await asyncio.to_thread(main, ["send-tx", "--dir", directory, "ABCD"]) == 0
    assert node.published == [
        {"topic": "transaction", "data_hex": "abcd", "route": "dandelion"},
        {"topic": "transaction", "data_hex": "abcd"},  # no route: the node's configured one
    ]
    assert capsys.readouterr().out == f"{MESSAGE_ID}\n" * 2


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
