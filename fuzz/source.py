"""Reading structured choices out of fuzzer bytes, the same way with or without atheris.

atheris's ``FuzzedDataProvider`` would do, but the corpora must replay in the test suite where
atheris is not installed, so the harnesses read their input through this small reader instead.
Running out of bytes is not an error: every read then returns zeros or an empty string, so any
input is a valid program.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
W = TypeVar("W")


class ByteSource:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def exhausted(self) -> bool:
        return self._pos >= len(self._data)

    def take(self, n: int) -> bytes:
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk

    def uint(self, width: int) -> int:
        return int.from_bytes(self.take(width).ljust(width, b"\x00"), "big")

    def u8(self) -> int:
        return self.uint(1)

    def u16(self) -> int:
        return self.uint(2)

    def blob(self, max_len: int) -> bytes:
        """A u16 length (reduced modulo ``max_len + 1``) and that many bytes."""
        return self.take(self.u16() % (max_len + 1))

    def pick(self, choices: Sequence[T]) -> T:
        return choices[self.u8() % len(choices)]


def run_program(
    src: ByteSource, world: W, operations: Sequence[Callable[[W, ByteSource], None]], steps: int
) -> None:
    """Up to ``steps`` operations, each picked by the next byte and reading its own arguments,
    until the input runs out."""
    for _ in range(steps):
        if src.exhausted:
            break
        src.pick(operations)(world, src)
