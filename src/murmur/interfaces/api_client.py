"""A synchronous client for the local control API (what the CLI uses).

Theory of operation: :meth:`ApiClient.from_node_dir` reads the address the running node wrote
to ``node.json`` and the cookie it wrote to ``api.cookie``; :meth:`ApiClient.call` sends one
``POST /v1/<method>`` with a JSON object and returns the ``result`` object. An error answer
raises :class:`ApiError` with the server's code and message; a node that is not there (no
``node.json``, nothing listening) raises :class:`NodeNotRunning`, whose message says how to
start it.
"""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
from typing import Any

from murmur.base.errors import ConfigError, MurmurError
from murmur.node.config import LOOPBACK_HOST, HostPort
from murmur.runtime.control_api import ApiError
from murmur.runtime.keystore import MissingFileError, read_cookie, read_node_info

__all__ = ["ApiClient", "ApiError", "NodeNotRunning"]

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT_S = 10.0


class NodeNotRunning(MurmurError):
    """No node answers for this directory."""


class ApiClient:
    __slots__ = ("_cookie", "host", "port")

    def __init__(self, host: str, port: int, cookie: str) -> None:
        self.host = host
        self.port = port
        self._cookie = cookie

    def __repr__(self) -> str:
        return f"ApiClient({self.host}:{self.port})"

    @classmethod
    def from_node_dir(cls, path: str | os.PathLike[str]) -> ApiClient:
        directory = Path(path)
        try:
            info = read_node_info(directory)
            cookie = read_cookie(directory)
        except MissingFileError as exc:
            raise NodeNotRunning(
                f"no node is running in {directory} ({exc.path.name} is missing); "
                f"start one with: murmur node --dir {directory}"
            ) from None
        api = info.get("api")
        try:
            address = HostPort.parse(api) if isinstance(api, str) else None
        except ConfigError:
            address = None
        if address is None or address.host != LOOPBACK_HOST or address.port == 0:
            raise ConfigError(f"{directory / 'node.json'} has no valid 'api' address")
        return cls(address.host, address.port, cookie)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Call ``method``; returns its result, raises :class:`ApiError` on an error answer."""
        body = json.dumps(params or {}).encode()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)
        try:
            try:
                connection.connect()
            except OSError as exc:
                raise NodeNotRunning(
                    f"no node answers at {self.host}:{self.port} ({exc.strerror or exc}); "
                    "is `murmur node` running?"
                ) from None
            try:
                connection.request(
                    "POST",
                    f"/v1/{method}",
                    body=body,
                    headers={
                        "Authorization": f"Bearer {self._cookie}",
                        "Content-Type": "application/json",
                    },
                )
                response = connection.getresponse()
                data = response.read(MAX_RESPONSE_BYTES + 1)
            except TimeoutError:
                raise ApiError("timeout", f"no answer within {timeout_s} s", 504) from None
            except (OSError, http.client.HTTPException) as exc:
                raise ApiError(
                    "connection", f"the node closed the connection: {exc}", 502
                ) from None
        finally:
            connection.close()
        return _decode(response.status, data)


def _decode(status: int, data: bytes) -> dict[str, Any]:
    if len(data) > MAX_RESPONSE_BYTES:
        raise ApiError("bad_response", "the answer is too large", status)
    try:
        answer = json.loads(data)
    except (ValueError, RecursionError):
        raise ApiError(
            "bad_response", f"HTTP {status} with a body that is not JSON", status
        ) from None
    if not isinstance(answer, dict):
        raise ApiError("bad_response", f"HTTP {status} with an unexpected body", status)
    error = answer.get("error")
    if isinstance(error, dict):
        raise ApiError(str(error.get("code", "unknown")), str(error.get("message", "")), status)
    result = answer.get("result")
    if status != 200 or not isinstance(result, dict):
        raise ApiError("bad_response", f"HTTP {status} without a result object", status)
    return result
