"""SHA3-256 and HMAC-SHA3-256 (pyca/cryptography)."""

from __future__ import annotations

from cryptography.hazmat.primitives import constant_time, hashes, hmac

DIGEST_BYTES = 32


def sha3_256(*parts: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA3_256())
    for part in parts:
        h.update(part)
    return h.finalize()


def hmac_sha3_256(key: bytes, *parts: bytes | bytearray | memoryview) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA3_256())
    for part in parts:
        mac.update(part)
    return mac.finalize()


def equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison for MACs and tags."""
    return constant_time.bytes_eq(a, b)
