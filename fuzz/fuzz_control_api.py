"""The control API's request handling, head to handler, on one request per input.

The input is everything a local client sends on one connection; it goes through the server's
own path (``ControlApiServer._answer``: the head parser, the cookie check, routing, body
framing and JSON) into an ``echo`` method. Every answer must be a well-formed HTTP response
with a JSON body and never a 500 (the echo method cannot fail, so a 500 is an exception the
parsing let through); an empty answer is right only for a request cut short.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from murmur.runtime.control_api import MAX_HEAD_BYTES, ControlApiServer

COOKIE = b"fuzz-cookie"


async def _echo(params: dict[str, Any]) -> dict[str, Any]:
    return params


@functools.cache
def _server() -> ControlApiServer:
    return ControlApiServer(cookie=COOKIE.decode(), handlers={"echo": _echo})


@functools.cache
def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def request(target: bytes, body: bytes) -> bytes:
    """A request the server accepts, for seeds."""
    head = b"POST %s HTTP/1.1\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
    return head % (target, COOKIE, len(body)) + body


async def _answer(data: bytes) -> bytes:
    reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES)
    reader.feed_data(data)
    reader.feed_eof()
    return await _server()._answer(reader)


def one_input(data: bytes) -> None:
    answer = _loop().run_until_complete(_answer(data))
    if not answer:
        return
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    if not status_line.startswith(b"HTTP/1.1 ") or status_line[9:12] == b"500":
        raise AssertionError(f"bad answer {status_line!r}")
    if f"Content-Length: {len(body)}".encode() not in head:
        raise AssertionError("answer length does not match its body")
    json.loads(body)
