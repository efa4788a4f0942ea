"""Symmetric pull/push codec over one buffer (the aioquic ``Buffer`` idea, in pure Python).

Every ``pull_*`` checks that the bytes are there and raises :class:`RemoteProtocolError`
(``truncated``) otherwise; ``pull_vbytes`` takes the largest length the caller allows, so a
length field can never make the reader allocate more than that.
"""

from __future__ import annotations

import struct

from murmur.base.errors import RemoteProtocolError

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _take(self, n: int) -> memoryview:
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise RemoteProtocolError("truncated", f"need {n} bytes, have {self.remaining}")
        view = self._data[self._pos : end]
        self._pos = end
        return view

    def pull_u8(self) -> int:
        return self._take(1)[0]

    def pull_u16(self) -> int:
        return _U16.unpack(self._take(2))[0]

    def pull_u32(self) -> int:
        return _U32.unpack(self._take(4))[0]

    def pull_u64(self) -> int:
        return _U64.unpack(self._take(8))[0]

    def pull_bytes(self, n: int) -> bytes:
        return bytes(self._take(n))

    def pull_vbytes(self, max_len: int, *, width: int = 2) -> bytes:
        """A length-prefixed byte string (``width`` = 1, 2 or 4 bytes of length)."""
        n = {1: self.pull_u8, 2: self.pull_u16, 4: self.pull_u32}[width]()
        if n > max_len:
            raise RemoteProtocolError("bad_length", f"{n} > {max_len}")
        return self.pull_bytes(n)

    def pull_rest(self) -> bytes:
        return self.pull_bytes(self.remaining)

    def expect_end(self) -> None:
        if self.remaining:
            raise RemoteProtocolError("trailing_data", f"{self.remaining} extra bytes")


class Writer:
    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def push_u8(self, v: int) -> Writer:
        self._parts.append(bytes((v,)))
        return self

    def push_u16(self, v: int) -> Writer:
        self._parts.append(_U16.pack(v))
        return self

    def push_u32(self, v: int) -> Writer:
        self._parts.append(_U32.pack(v))
        return self

    def push_u64(self, v: int) -> Writer:
        self._parts.append(_U64.pack(v))
        return self

    def push_bytes(self, b: bytes) -> Writer:
        self._parts.append(bytes(b))
        return self

    def push_vbytes(self, b: bytes, *, width: int = 2) -> Writer:
        {1: self.push_u8, 2: self.push_u16, 4: self.push_u32}[width](len(b))
        self._parts.append(bytes(b))
        return self

    def getvalue(self) -> bytes:
        return b"".join(self._parts)
