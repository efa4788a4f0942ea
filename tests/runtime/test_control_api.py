"""The control API over real sockets on 127.0.0.1, and its head parser under fuzzing."""

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import ConfigError, LocalProtocolError
from murmur.runtime.control_api import (
    MAX_BODY_BYTES,
    MAX_CONNECTIONS,
    ApiError,
    ControlApiServer,
    HttpError,
    RequestHead,
    parse_request_head,
)
from murmur.sim.rng import SeededRng
from tests.damage import damaged

COOKIE = "c0" * 32


async def echo(params: dict[str, Any]) -> dict[str, Any]:
    return {"echo": params}


async def fails(params: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("secret detail from /home/alice")


async def refuses(params: dict[str, Any]) -> dict[str, Any]:
    raise ApiError("no_such_topic", "topic 'x' is not subscribed", 409)


async def unserializable(params: dict[str, Any]) -> dict[str, Any]:
    return {"value": object()}


async def hangs(params: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(3600)
    return {}


HANDLERS = {
    "echo": echo,
    "fails": fails,
    "refuses": refuses,
    "unserializable": unserializable,
    "hangs": hangs,
}


@pytest.fixture
async def server() -> AsyncIterator[tuple[ControlApiServer, int]]:
    api = ControlApiServer(cookie=COOKIE, handlers=HANDLERS, request_timeout_s=0.5)
    host, port = await api.start()
    assert host == "127.0.0.1"
    yield api, port
    await api.close()


async def exchange(port: int, data: bytes, timeout_s: float = 5.0) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"Content-Type: application/json" in head
    return status, json.loads(body)


def post(method: str, body: bytes = b"{}", cookie: str | None = COOKIE, extra: str = "") -> bytes:
    auth = f"Authorization: Bearer {cookie}\r\n" if cookie is not None else ""
    return (
        f"POST /v1/{method} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def error_code(answer: dict[str, Any]) -> str:
    return answer["error"]["code"]


async def test_refuses_non_loopback_hosts() -> None:
    for host in ("0.0.0.0", "localhost", "::1", "192.168.1.1"):
        with pytest.raises(ConfigError):
            await ControlApiServer(cookie=COOKIE, handlers={}).start(host)


async def test_authenticated_call(server: tuple[ControlApiServer, int]) -> None:
    _, port = server
    status, answer = await exchange(port, post("echo", b'{"topic": "t", "n": [1, 2]}'))
    assert (status, answer) == (200, {"result": {"echo": {"topic": "t", "n": [1, 2]}}})
    status, answer = await exchange(port, post("echo", b""))
    assert (status, answer) == (200, {"result": {"echo": {}}})


@pytest.mark.parametrize(
    "request_bytes",
    [
        post("echo", cookie=None),
        post("echo", cookie="c0" * 31 + "c1"),
        post("echo", cookie="c0"),
        post("echo", cookie=None, extra=f"Authorization: Basic {COOKIE}\r\n"),
        post("nope", cookie="wrong"),
    ],
)
async def test_unauthenticated_is_401(
    server: tuple[ControlApiServer, int], request_bytes: bytes
) -> None:
    status, answer = await exchange(server[1], request_bytes)
    assert (status, error_code(answer)) == (401, "unauthorized")
    assert server[0].counters.get("api.bad_request.unauthorized") == 1


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (post("nope"), 404, "unknown_method"),
        (post("Echo"), 404, "unknown_method"),
        (post("echo?x=1"), 404, "unknown_method"),
        (post("echo").replace(b"POST", b"GET", 1), 405, "method_not_allowed"),
        (post("echo", b"{"), 400, "bad_json"),
        (post("echo", b"[1]"), 400, "bad_params"),
        (post("echo", b'{"a": NaN}'), 400, "bad_json"),
        (post("echo", b"\xff\xfe"), 400, "bad_json"),
        (post("echo", b"[" * 100_000), 400, "bad_json"),
        (post("fails"), 500, "internal"),
        (post("unserializable"), 500, "internal"),
        (post("refuses"), 409, "no_such_topic"),
        (post("echo").replace(b"HTTP/1.1", b"HTTP/2.0"), 505, "http_version"),
        (post("echo", extra="Transfer-Encoding: chunked\r\n"), 400, "transfer_encoding"),
        (post("echo", extra="X-A: 1\r\nx-a: 2\r\n"), 400, "duplicate_header"),
        (
            b"POST /v1/echo HTTP/1.1\r\nAuthorization: Bearer " + COOKIE.encode() + b"\r\n\r\n",
            411,
            "length_required",
        ),
    ],
)
async def test_error_answers(
    server: tuple[ControlApiServer, int], request_bytes: bytes, status: int, code: str
) -> None:
    got_status, answer = await exchange(server[1], request_bytes)
    assert (got_status, error_code(answer)) == (status, code)
    assert "secret" not in answer["error"]["message"]
    assert "Traceback" not in answer["error"]["message"]


async def test_oversized_body_is_refused_unread(server: tuple[ControlApiServer, int]) -> None:
    head = post("echo", b"").replace(
        b"Content-Length: 0", f"Content-Length: {MAX_BODY_BYTES + 1}".encode()
    )
    status, answer = await exchange(server[1], head)
    assert (status, error_code(answer)) == (413, "body_too_large")
    status, answer = await exchange(server[1], post("echo").replace(b"Length: 2", b"Length: -2"))
    assert (status, error_code(answer)) == (400, "bad_content_length")


async def test_body_at_the_limit_is_served(server: tuple[ControlApiServer, int]) -> None:
    body = json.dumps({"pad": "x" * (MAX_BODY_BYTES - 20)}).encode()
    assert len(body) <= MAX_BODY_BYTES
    status, answer = await exchange(server[1], post("echo", body))
    assert status == 200 and len(answer["result"]["echo"]["pad"]) == MAX_BODY_BYTES - 20


async def test_oversized_head_is_431(server: tuple[ControlApiServer, int]) -> None:
    status, answer = await exchange(server[1], b"POST /v1/echo HTTP/1.1\r\nX: " + b"a" * 70_000)
    assert (status, error_code(answer)) == (431, "head_too_large")
    assert server[0].counters.get("api.bad_request.head_too_large") == 1


async def test_garbage_never_kills_the_server(server: tuple[ControlApiServer, int]) -> None:
    _, port = server
    rng = SeededRng(2024)
    for round_ in range(40):
        junk = rng.random_bytes(rng.randrange(300))
        if round_ % 2:
            junk += b"\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(junk)
        writer.write_eof()
        async with asyncio.timeout(2.0):
            raw = await reader.read()
        writer.close()
        assert raw == b"" or raw.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5"))
    status, _ = await exchange(port, post("echo"))
    assert status == 200


async def test_request_sent_one_byte_at_a_time(server: tuple[ControlApiServer, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server[1])
    for byte in post("echo", b'{"k": 1}'):
        writer.write(bytes([byte]))
        await writer.drain()
    async with asyncio.timeout(2.0):
        raw = await reader.read()
    writer.close()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(b'{"result":{"echo":{"k":1}}}')


async def test_slowloris_is_cut_off(server: tuple[ControlApiServer, int]) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", server[1])
    started = loop.time()
    raw = b""
    async with asyncio.timeout(3.0):
        for piece in (b"POST /v1/echo HTTP/1.1\r\n", b"X-Slow: 1\r\n", b"X-Slow2: 1\r\n"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.2)
        raw = await reader.read()
    writer.close()
    assert raw.startswith(b"HTTP/1.1 408")
    assert loop.time() - started < 1.5
    assert server[0].counters.get("api.bad_request.timeout") == 1


async def test_slow_body_is_cut_off(server: tuple[ControlApiServer, int]) -> None:
    request = post("echo", b'{"a": 1}')
    status, answer = await exchange(server[1], request[:-3], timeout_s=3.0)
    assert (status, error_code(answer)) == (408, "timeout")


async def test_idle_connections_cannot_lock_the_owner_out(
    server: tuple[ControlApiServer, int],
) -> None:
    """Every slot held by a connection that never sent its head (any local user can open
    them): the owner's request evicts the oldest and is served at once."""
    api, port = server
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_CONNECTIONS)]
    for _, idle_writer in idle:
        idle_writer.write(b"P")
    await asyncio.sleep(0.05)
    async with asyncio.timeout(0.4):  # well before the idle ones would time out
        status, _ = await exchange(port, post("echo"))
        assert status == 200
        assert await idle[0][0].read() == b""  # the oldest was evicted
    assert api.counters.get("api.evicted_unauthenticated") == 1
    for _, idle_writer in idle:
        idle_writer.close()


async def test_a_full_house_of_authenticated_requests_refuses_newcomers(
    server: tuple[ControlApiServer, int],
) -> None:
    api, port = server
    busy = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_CONNECTIONS)]
    for _, busy_writer in busy:
        busy_writer.write(post("hangs"))
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("echo"))
    async with asyncio.timeout(0.4):
        with contextlib.suppress(ConnectionResetError):  # it sent bytes the server never read
            assert await reader.read() == b""  # refused: no one to evict
    writer.close()
    assert api.counters.get("api.refused_full") == 1
    assert api.counters.get("api.evicted_unauthenticated") == 0
    for _, busy_writer in busy:
        busy_writer.close()


async def test_close_cancels_in_flight_requests() -> None:
    api = ControlApiServer(cookie=COOKIE, handlers=HANDLERS)
    _, port = await api.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("hangs"))
    await writer.drain()
    await asyncio.sleep(0.05)
    async with asyncio.timeout(2.0):
        await api.close()
        assert await reader.read() == b""
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_closing_with_an_idle_connection_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = ControlApiServer(cookie=COOKIE, handlers=HANDLERS)
    _, port = await api.start()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"P")
    await asyncio.sleep(0.05)
    with caplog.at_level(logging.ERROR):
        await api.close()
        await asyncio.sleep(0.05)  # the streams' done-callbacks run
    assert caplog.records == []
    writer.close()


BIG_ANSWER_BYTES = 16 * 1024 * 1024
"""Far more than the kernel buffers on both ends of a loopback connection hold."""


async def big(params: dict[str, Any]) -> dict[str, Any]:
    return {"data": "x" * BIG_ANSWER_BYTES}


async def test_a_client_that_never_reads_its_answer_loses_the_socket() -> None:
    """Past the drain timeout and the close's grace, the answer a client leaves unread is
    dropped with its socket: such connections no longer count against MAX_CONNECTIONS, so
    kept, each would hold its socket and megabytes of answer for good."""
    api = ControlApiServer(cookie=COOKIE, handlers={"big": big}, request_timeout_s=0.2)
    _, port = await api.start()
    loop = asyncio.get_running_loop()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setblocking(False)
    try:
        await loop.sock_connect(client, ("127.0.0.1", port))
        await loop.sock_sendall(client, post("big"))
        await asyncio.sleep(0.2 + 1.0 + 2.0)  # the drain timeout, the close's grace, a margin
        received = 0
        with contextlib.suppress(ConnectionResetError):
            async with asyncio.timeout(10.0):
                while chunk := await loop.sock_recv(client, 1 << 20):
                    received += len(chunk)
        assert received < BIG_ANSWER_BYTES
    finally:
        client.close()
        await api.close()


def test_constructor_checks() -> None:
    with pytest.raises(LocalProtocolError):
        ControlApiServer(cookie="", handlers={})
    with pytest.raises(LocalProtocolError):
        ControlApiServer(cookie=COOKIE, handlers={"Bad/Name": echo})
    assert COOKIE not in repr(ControlApiServer(cookie=COOKIE, handlers={"echo": echo}))


# -- the head parser, whole and fuzzed --


def test_parse_request_head() -> None:
    head = parse_request_head(
        b"POST /v1/status HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-Thing:  a b \t\r\n"
        b"Content-Length:5\r\n\r\n"
    )
    assert (head.method, head.target) == ("POST", "/v1/status")
    assert head.header("x-thing") == "a b"
    assert head.header("content-length") == "5"
    assert head.header("missing") is None


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST /v1/x HTTP/1.1\r\n", 400),
        (b"POST /v1/x HTTP/1.1\n\n", 400),
        (b"POST  /v1/x HTTP/1.1\r\n\r\n", 400),
        (b"POST /v1/x\r\n\r\n", 400),
        (b"POST /v1/\xff HTTP/1.1\r\n\r\n", 400),
        (b"POST /v1/x HTTP/1.1\r\n folded: x\r\n\r\n", 400),
        (b"POST /v1/x HTTP/1.1\r\nName : x\r\n\r\n", 400),
        (b"POST /v1/x HTTP/1.1\r\nNoColon\r\n\r\n", 400),
        (b"POST /v1/x HTTP/1.1\r\nA: x\x00y\r\n\r\n", 400),
        (b"POST /v1/x HTTP/1.1\r\nA: x\ry\r\n\r\n", 400),
        (b"POST /v1/x HTTP/1.1\r\nA: caf\xc3\xa9\r\n\r\n", 400),
        (b"POST /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"POST /v1/x HTTP/1.1\r\n" + b"A" * 9000 + b": x\r\n\r\n", 431),
        (
            b"POST /v1/x HTTP/1.1\r\n" + b"".join(b"H%d: x\r\n" % i for i in range(65)) + b"\r\n",
            431,
        ),
        (b"POST /v1/x HTTP/3.0\r\n\r\n", 505),
    ],
)
def test_parse_request_head_refuses(head: bytes, status: int) -> None:
    with pytest.raises(HttpError) as info:
        parse_request_head(head)
    assert info.value.status == status


def test_64_headers_are_fine() -> None:
    head = b"POST /v1/x HTTP/1.1\r\n" + b"".join(b"H%d: x\r\n" % i for i in range(64)) + b"\r\n"
    assert len(parse_request_head(head).headers) == 64


@given(st.binary(max_size=2000), st.booleans())
def test_parser_garbage_raises_only_http_error(data: bytes, terminate: bool) -> None:
    try:
        parse_request_head(data + (b"\r\n\r\n" if terminate else b""))
    except HttpError as exc:
        assert 400 <= exc.status <= 599


_pieces = st.sampled_from(
    [
        b"POST",
        b"GET",
        b" ",
        b"  ",
        b"/v1/status",
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"\r\n",
        b"\n",
        b"\r",
        b":",
        b"Host",
        b"Content-Length",
        b"5",
        b"-1",
        b"\t",
        b"\x00",
        b"\xff",
        b"a" * 9000,
    ]
)


@given(st.lists(_pieces, max_size=40).map(b"".join))
def test_parser_structured_junk_raises_only_http_error(data: bytes) -> None:
    for candidate in (data, data + b"\r\n\r\n"):
        try:
            head = parse_request_head(candidate)
        except HttpError:
            continue
        assert head.method and head.target


_header_values = st.from_regex(r"([\x21-\x7e]([\x20-\x7e\t]{0,40}[\x21-\x7e])?)?", fullmatch=True)
request_heads = st.builds(
    RequestHead,
    method=st.from_regex(r"[A-Z]{1,10}", fullmatch=True),
    target=st.from_regex(r"/[\x21-\x7e]{0,60}", fullmatch=True),
    headers=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), _header_values, max_size=8
    ).map(lambda headers: tuple(headers.items())),
)


def _encode_head(head: RequestHead, minor_version: int) -> bytes:
    lines = [f"{head.method} {head.target} HTTP/1.{minor_version}"]
    lines += [f"{name}: {value}" for name, value in head.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@settings(max_examples=200)
@given(request_heads, st.sampled_from([0, 1]))
def test_any_valid_head_parses_to_what_it_says(head: RequestHead, minor_version: int) -> None:
    assert parse_request_head(_encode_head(head, minor_version)) == head


@settings(max_examples=200)
@given(damaged(st.builds(_encode_head, request_heads, st.sampled_from([0, 1]))))
def test_damaged_heads_raise_only_http_error(data: bytes) -> None:
    try:
        head = parse_request_head(data)
    except HttpError as exc:
        assert 400 <= exc.status <= 599
        return
    assert head.method and head.target


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=8), _json_values, max_size=4)


@settings(max_examples=200)
@given(json_objects)
def test_a_json_object_body_reads_back(params: dict[str, Any]) -> None:
    body = json.dumps(params, allow_nan=False).encode()
    assert ControlApiServer._parse_params(body) == params


@settings(max_examples=300)
@given(
    st.one_of(
        st.binary(max_size=200),
        damaged(json_objects.map(lambda params: json.dumps(params, allow_nan=False).encode())),
    )
)
def test_body_garbage_raises_only_a_400(body: bytes) -> None:
    try:
        params = ControlApiServer._parse_params(body)
    except HttpError as exc:
        assert exc.status == 400
        return
    assert isinstance(params, dict)
