"""Damaged encodings for parser fuzz tests.

Random bytes rarely get past a parser's first check (a version byte, a type, a length), so the
fuzz tests also feed valid encodings with a few defects: truncation, bit flips, overwritten,
inserted or deleted bytes, and 1-, 2- or 4-byte fields (lengths, counts) set to the values where
bounds checks have their edges. Every edit keeps the input small, so a parser that trusts a
length field shows it by raising the wrong error or allocating, not the test by running out of
memory first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from hypothesis import strategies as st

from murmur.base.errors import RemoteProtocolError

T = TypeVar("T")

_FIELD_EDGES = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF)


def _truncate(draw: st.DrawFn, data: bytearray) -> None:
    del data[draw(st.integers(0, len(data))) :]


def _flip_bit(draw: st.DrawFn, data: bytearray) -> None:
    if data:
        bit = draw(st.integers(0, 8 * len(data) - 1))
        data[bit // 8] ^= 1 << (bit % 8)


def _set_byte(draw: st.DrawFn, data: bytearray) -> None:
    if data:
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))


def _set_field(draw: st.DrawFn, data: bytearray) -> None:
    width = draw(st.sampled_from((1, 2, 4)))
    if len(data) >= width:
        at = draw(st.integers(0, len(data) - width))
        edges = [value for value in _FIELD_EDGES if value < 1 << (8 * width)]
        data[at : at + width] = draw(st.sampled_from(edges)).to_bytes(width, "big")


def _insert(draw: st.DrawFn, data: bytearray) -> None:
    at = draw(st.integers(0, len(data)))
    data[at:at] = draw(st.binary(min_size=1, max_size=16))


def _delete(draw: st.DrawFn, data: bytearray) -> None:
    if data:
        at = draw(st.integers(0, len(data) - 1))
        del data[at : at + draw(st.integers(1, 16))]


_EDITS: tuple[Callable[[st.DrawFn, bytearray], None], ...] = (
    _truncate,
    _flip_bit,
    _set_byte,
    _set_field,
    _insert,
    _delete,
)


@st.composite
def damaged(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A value drawn from ``valid`` with one to three defects."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 3))):
        draw(st.sampled_from(_EDITS))(draw, data)
    return bytes(data)


def refused_or_canonical(
    decode: Callable[[bytes], T], encode: Callable[[T], bytes], data: bytes
) -> T | None:
    """What a parser must do with hostile bytes: refuse them with :class:`RemoteProtocolError`
    (``None`` here) or decode them to the value whose encoding they are (returned)."""
    try:
        value = decode(data)
    except RemoteProtocolError:
        return None
    assert encode(value) == data  # what decodes is canonical
    return value
