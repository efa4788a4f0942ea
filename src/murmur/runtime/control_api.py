"""The local control API: HTTP/1.1 + JSON on 127.0.0.1, authenticated by the cookie file.

Theory of operation. One request per connection. The server reads the request head (everything
up to the blank line) and hands it to :func:`parse_request_head`, a strict pure parser with hard
limits: a request line of at most 8 KiB, at most 64 header lines of at most 8 KiB each, CRLF
line ends only, no duplicate headers, no obsolete line folding. Anything it does not like raises
:class:`HttpError` (a :class:`RemoteProtocolError` carrying the status to answer), which is the
only exception hostile bytes can cause. Then, in this order:

1. authentication: ``Authorization: Bearer <cookie>``, compared in constant time (401);
2. method and route: only ``POST /v1/<method>`` to a registered method (405, 404);
3. body framing: ``Content-Length`` only, at most 1 MiB (411, 413; chunked is refused);
4. the body must be a JSON object (400), which is passed to the method's handler.

The answer is ``{"result": ...}`` or ``{"error": {"code": ..., "message": ...}}`` and the
connection closes. A handler raising :class:`ApiError` chooses its error; any other exception
becomes a bare 500 (the traceback goes to the local log, never to the client). The whole request
must arrive within ``request_timeout_s`` (a slowloris holding a connection open is cut off), and
at most :data:`MAX_CONNECTIONS` connections are served at once. When they are all taken, a new
connection evicts the oldest one that has not yet presented the cookie (a local client sends its
whole request at once, so only an idle or hostile connection is still reading its head); only
when every slot holds an authenticated request is the newcomer refused. Without that, any local
user could hold every slot with idle connections and lock the node's owner out. The server binds
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from murmur.base.errors import ConfigError, LocalProtocolError, MurmurError, RemoteProtocolError
from murmur.base.metrics import Counters

LOOPBACK_HOST = "127.0.0.1"
MAX_REQUEST_LINE_BYTES = 8 * 1024
MAX_HEADER_LINE_BYTES = 8 * 1024
MAX_HEADERS = 64
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
MAX_CONNECTIONS = 64
REQUEST_TIMEOUT_S = 10.0

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

_log = logging.getLogger(__name__)

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])\Z")
_HEADER_NAME = re.compile(_TOKEN + rb"\Z")
_HEADER_VALUE = re.compile(rb"[\x20-\x7e\t]*\Z")
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([\x21-\x7e]+)\Z")
_ROUTE = re.compile(r"/v1/([a-z][a-z0-9_]{0,63})\Z")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,16}\Z")


class HttpError(RemoteProtocolError):
    """The client sent a request we refuse; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.status = status


class ApiError(MurmurError):
    """An error answer: raised by handlers to choose it, and by the client on receiving one."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    """Lower-cased names, each present once."""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def parse_request_head(head: bytes) -> RequestHead:
    """Parse a request line and headers ending in a blank line; raises only :class:`HttpError`."""
    if not head.endswith(b"\r\n\r\n"):
        raise HttpError(400, "incomplete_head", "the request head must end with a blank line")
    lines = head[:-4].split(b"\r\n")
    request_line, header_lines = lines[0], lines[1:]
    if len(request_line) > MAX_REQUEST_LINE_BYTES:
        raise HttpError(414, "request_line_too_long", "the request line exceeds 8 KiB")
    if len(header_lines) > MAX_HEADERS:
        raise HttpError(431, "too_many_headers", f"more than {MAX_HEADERS} headers")
    match = _REQUEST_LINE.match(request_line)
    if match is None:
        raise HttpError(400, "bad_request_line", "expected METHOD TARGET HTTP/1.1")
    method, target, major, minor = match.groups()
    if (major, minor) not in ((b"1", b"1"), (b"1", b"0")):
        raise HttpError(505, "http_version", "only HTTP/1.0 and HTTP/1.1 are served")
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line in header_lines:
        if len(line) > MAX_HEADER_LINE_BYTES:
            raise HttpError(431, "header_too_long", "a header line exceeds 8 KiB")
        raw_name, colon, raw_value = line.partition(b":")
        if not colon or not _HEADER_NAME.match(raw_name) or not _HEADER_VALUE.match(raw_value):
            raise HttpError(400, "bad_header", "malformed header line")
        name = raw_name.decode("ascii").lower()
        if name in seen:
            raise HttpError(400, "duplicate_header", f"header {name!r} appears twice")
        seen.add(name)
        headers.append((name, raw_value.strip(b" \t").decode("ascii")))
    return RequestHead(method.decode("ascii"), target.decode("ascii"), tuple(headers))


def _response(status: int, payload: dict[str, Any], extra: tuple[str, ...] = ()) -> bytes:
    body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
    head = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def _error(status: int, code: str, message: str, extra: tuple[str, ...] = ()) -> bytes:
    return _response(status, {"error": {"code": code, "message": message}}, extra)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class ControlApiServer:
    def __init__(
        self,
        *,
        cookie: str,
        handlers: dict[str, Handler],
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        counters: Counters | None = None,
    ) -> None:
        if not cookie:
            raise LocalProtocolError("the control API needs a cookie")
        for name in handlers:
            if not _ROUTE.match(f"/v1/{name}"):
                raise LocalProtocolError(f"bad method name {name!r}")
        self._cookie = cookie.encode("ascii")
        self._handlers = dict(handlers)
        self._request_timeout_s = request_timeout_s
        self.counters = counters if counters is not None else Counters()
        """``api.evicted_unauthenticated``, ``api.refused_full`` and ``api.bad_request.<reason>``
        for each request refused with an HTTP error (the node passes its own)."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unauthenticated: dict[asyncio.Task[None], None] = {}
        """Connections still reading their head, oldest first (the ones a newcomer evicts)."""

    def __repr__(self) -> str:
        return f"ControlApiServer(methods={sorted(self._handlers)})"

    async def start(self, host: str = LOOPBACK_HOST, port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (127.0.0.1 only); returns the bound address."""
        if host != LOOPBACK_HOST:
            raise ConfigError(f"the control API listens on {LOOPBACK_HOST} only, not {host!r}")
        if self._server is not None:
            raise LocalProtocolError("the control API is already started")
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_HEAD_BYTES, reuse_address=True
        )
        bound_host, bound_port = self._server.sockets[0].getsockname()[:2]
        return bound_host, bound_port

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or not self._make_room():
            writer.transport.abort()
            return
        self._tasks.add(task)
        self._unauthenticated[task] = None
        try:
            answer = await self._answer(reader)
            if answer:
                writer.write(answer)
                async with asyncio.timeout(self._request_timeout_s):
                    await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # Evicted, or the server is closing. Nothing awaits this task but the streams'
            # done-callback, which would log a cancelled task as an error.
            pass
        except Exception:
            _log.exception("control API connection failed")
        finally:
            self._tasks.discard(task)
            self._unauthenticated.pop(task, None)
            writer.close()
            try:
                with contextlib.suppress(ConnectionError, TimeoutError):
                    async with asyncio.timeout(1.0):
                        await writer.wait_closed()
            finally:
                # A client that stops reading would otherwise keep the socket, and the answer
                # still buffered for it, for good: closing waits for the buffer to drain.
                writer.transport.abort()

    def _make_room(self) -> bool:
        """True if a new connection may be served, evicting an unauthenticated one if needed."""
        if len(self._tasks) < MAX_CONNECTIONS:
            return True
        if not self._unauthenticated:
            self.counters.inc("api.refused_full")
            return False
        oldest = next(iter(self._unauthenticated))
        del self._unauthenticated[oldest]
        self._tasks.discard(oldest)
        oldest.cancel()
        self.counters.inc("api.evicted_unauthenticated")
        return True

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        """The response bytes for one request (empty when the client vanished)."""
        try:
            async with asyncio.timeout(self._request_timeout_s):
                name, params = await self._read_request(reader)
        except HttpError as exc:
            self.counters.inc(f"api.bad_request.{exc.reason}")
            extra: tuple[str, ...] = ("WWW-Authenticate: Bearer",) if exc.status == 401 else ()
            extra += ("Allow: POST",) if exc.status == 405 else ()
            return _error(exc.status, exc.reason, exc.detail, extra)
        except TimeoutError:
            self.counters.inc("api.bad_request.timeout")
            return _error(408, "timeout", "the request did not arrive in time")
        except asyncio.LimitOverrunError:
            self.counters.inc("api.bad_request.head_too_large")
            return _error(431, "head_too_large", "the request head exceeds 64 KiB")
        except (asyncio.IncompleteReadError, ConnectionError):
            return b""
        return await self._call(name, params)

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, dict[str, Any]]:
        head = parse_request_head(await reader.readuntil(b"\r\n\r\n"))
        authorization = _BEARER.match(head.header("authorization") or "")
        presented = authorization.group(1).encode("ascii") if authorization else b""
        if not hmac.compare_digest(presented, self._cookie):
            raise HttpError(401, "unauthorized", "missing or wrong API cookie")
        task = asyncio.current_task()
        if task is not None:
            self._unauthenticated.pop(task, None)  # holds its slot until answered
        if head.method != "POST":
            raise HttpError(405, "method_not_allowed", "use POST")
        route = _ROUTE.match(head.target)
        if route is None or route.group(1) not in self._handlers:
            raise HttpError(404, "unknown_method", f"no method at {head.target[:80]!r}")
        if head.header("transfer-encoding") is not None:
            raise HttpError(400, "transfer_encoding", "send the body with Content-Length")
        length_text = head.header("content-length")
        if length_text is None:
            raise HttpError(411, "length_required", "Content-Length is required")
        if not _CONTENT_LENGTH.match(length_text):
            raise HttpError(400, "bad_content_length", "Content-Length must be a number")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise HttpError(413, "body_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
        body = await reader.readexactly(length)
        return route.group(1), self._parse_params(body)

    @staticmethod
    def _parse_params(body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            params = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise HttpError(400, "bad_json", "the body is not valid JSON") from None
        if not isinstance(params, dict):
            raise HttpError(400, "bad_params", "the body must be a JSON object")
        return params

    async def _call(self, name: str, params: dict[str, Any]) -> bytes:
        try:
            result = await self._handlers[name](params)
            return _response(200, {"result": result})
        except ApiError as exc:
            status = exc.status if 400 <= exc.status <= 599 else 500
            return _error(status, exc.code, exc.message)
        except Exception:
            _log.exception("control API method %r failed", name)
            return _error(500, "internal", f"method {name!r} failed; see the node's log")
