"""What a parser must do with hostile bytes: refuse them with ``RemoteProtocolError`` or decode
them; anything else it raises is a finding (the fuzzer reports the exception)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from murmur.base.errors import RemoteProtocolError

T = TypeVar("T")


def decoded(decode: Callable[[bytes], T], data: bytes) -> T | None:
    """``decode(data)``, or None when it refused the bytes the one allowed way."""
    try:
        return decode(data)
    except RemoteProtocolError:
        return None


def canonical(decode: Callable[[bytes], T], encode: Callable[[T], bytes], data: bytes) -> None:
    """Refused, or decoded to the value whose encoding ``data`` is."""
    value = decoded(decode, data)
    if value is not None and encode(value) != data:
        raise AssertionError(f"{decode.__qualname__} accepted a non-canonical encoding")


def canonical_zero_padded(
    decode: Callable[[bytes], T], encode: Callable[[T], bytes], data: bytes
) -> None:
    """For fixed-size bodies: refused, or the value's encoding followed by zeros only."""
    value = decoded(decode, data)
    if value is None:
        return
    encoded = encode(value)
    if encoded + bytes(len(data) - len(encoded)) != data:
        raise AssertionError(f"{decode.__qualname__} accepted a non-canonical body")


def stable(decode: Callable[[bytes], T], encode: Callable[[T], bytes], data: bytes) -> None:
    """For formats with free padding: what decodes re-encodes to bytes decoding to the same."""
    value = decoded(decode, data)
    if value is not None and decode(encode(value)) != value:
        raise AssertionError(f"{decode.__qualname__} does not round-trip")
