"""The synchronous API client against a real control API server on 127.0.0.1."""

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import ConfigError
from murmur.interfaces.api_client import ApiClient, ApiError, NodeNotRunning, _decode
from murmur.runtime.control_api import ControlApiServer
from murmur.runtime.keystore import write_cookie, write_node_info
from tests.damage import damaged


async def status(params: dict[str, Any]) -> dict[str, Any]:
    return {"node_id": "ab" * 32, "peers": [], "asked": params}


async def publish(params: dict[str, Any]) -> dict[str, Any]:
    raise ApiError("private_topic", "topic 'transaction' must travel the private path", 422)


async def hangs(params: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(3600)
    return {}


@pytest.fixture
async def node_dir(tmp_path: Path) -> AsyncIterator[Path]:
    cookie = write_cookie(tmp_path)
    server = ControlApiServer(
        cookie=cookie, handlers={"status": status, "publish": publish, "hangs": hangs}
    )
    host, port = await server.start()
    write_node_info(tmp_path, {"pid": 1, "listen": "127.0.0.1:1", "api": f"{host}:{port}"})
    yield tmp_path
    await server.close()


async def test_call(node_dir: Path) -> None:
    client = ApiClient.from_node_dir(node_dir)
    result = await asyncio.to_thread(client.call, "status", {"verbose": True})
    assert result == {"node_id": "ab" * 32, "peers": [], "asked": {"verbose": True}}
    assert await asyncio.to_thread(client.call, "status") == {
        "node_id": "ab" * 32,
        "peers": [],
        "asked": {},
    }


async def test_error_answers_raise_api_error(node_dir: Path) -> None:
    client = ApiClient.from_node_dir(node_dir)
    with pytest.raises(ApiError) as info:
        await asyncio.to_thread(client.call, "publish", {"topic": "transaction"})
    assert (info.value.code, info.value.status) == ("private_topic", 422)
    assert "private path" in info.value.message
    with pytest.raises(ApiError) as info:
        await asyncio.to_thread(client.call, "no_such_method")
    assert info.value.code == "unknown_method"


async def test_wrong_cookie(node_dir: Path) -> None:
    good = ApiClient.from_node_dir(node_dir)
    client = ApiClient(good.host, good.port, "00" * 32)
    with pytest.raises(ApiError) as info:
        await asyncio.to_thread(client.call, "status")
    assert (info.value.code, info.value.status) == ("unauthorized", 401)
    assert "00" * 32 not in repr(client)


async def test_timeout(node_dir: Path) -> None:
    client = ApiClient.from_node_dir(node_dir)
    with pytest.raises(ApiError) as info:
        await asyncio.to_thread(client.call, "hangs", None, 0.2)
    assert info.value.code == "timeout"


def test_not_running_without_node_files(tmp_path: Path) -> None:
    with pytest.raises(NodeNotRunning, match="murmur node --dir"):
        ApiClient.from_node_dir(tmp_path)
    write_node_info(tmp_path, {"api": "127.0.0.1:5"})
    with pytest.raises(NodeNotRunning, match=r"api\.cookie is missing"):
        ApiClient.from_node_dir(tmp_path)


def test_not_running_when_nothing_listens(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_cookie(tmp_path)
    write_node_info(tmp_path, {"api": f"127.0.0.1:{port}"})
    client = ApiClient.from_node_dir(tmp_path)
    with pytest.raises(NodeNotRunning, match=f"127.0.0.1:{port}"):
        client.call("status")


@pytest.mark.parametrize("api", [None, 5, "0.0.0.0:5", "127.0.0.1:0", "nonsense"])
def test_bad_node_info(tmp_path: Path, api: object) -> None:
    write_cookie(tmp_path)
    write_node_info(tmp_path, {} if api is None else {"api": api})
    with pytest.raises(ConfigError, match="'api'"):
        ApiClient.from_node_dir(tmp_path)


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "bad_response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", "bad_response"),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{"result":1}', "bad_response"),
        (b"HTTP/1.1 502 Bad\r\nContent-Length: 2\r\n\r\n{}", "bad_response"),
        (b"garbage\r\n\r\n", "connection"),
        (b"", "connection"),
    ],
)
async def test_malformed_answers(tmp_path: Path, reply: bytes, code: str) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = ApiClient("127.0.0.1", port, "aa" * 32)
    try:
        with pytest.raises(ApiError) as info:
            await asyncio.to_thread(client.call, "status")
        assert info.value.code == code
    finally:
        server.close()
        await server.wait_closed()


_answer_keys = st.sampled_from(["result", "error", "code", "message"])
_answer_values = st.none() | st.integers() | st.text(max_size=10)
answers = st.dictionaries(
    _answer_keys, _answer_values | st.dictionaries(_answer_keys, _answer_values), max_size=3
).map(lambda answer: json.dumps(answer).encode())


@settings(max_examples=300)
@given(st.integers(100, 599), st.one_of(st.binary(max_size=100), damaged(answers)))
def test_any_answer_is_a_result_or_an_api_error(status: int, body: bytes) -> None:
    try:
        result = _decode(status, body)
    except ApiError:
        return
    assert status == 200 and isinstance(result, dict)
