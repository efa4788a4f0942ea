"""HKDF with SHA3-256 (RFC 5869 over SHA3), split into extract and expand.

Splitting lets the key schedules in ``docs/protocol`` name every intermediate value, and lets
test vectors pin each one.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from murmur.crypto.hashing import hmac_sha3_256

PRK_BYTES = 32


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract(salt, IKM) = HMAC-SHA3-256(salt, IKM)."""
    return hmac_sha3_256(salt or b"\x00" * PRK_BYTES, ikm)


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA3_256(), length=length, info=info).derive(prk)
