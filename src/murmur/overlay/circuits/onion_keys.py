"""Medium-term onion keys: what a relay publishes so that circuits can be extended to it.

Theory of operation. Each relay holds one onion key pair (an X25519 key and an ML-KEM-1024 key),
publishes its public half (:class:`OnionPublicKeys`) in its signed peer announcement, and
replaces it every few days. Clients name the pair they used by its key id (a hash of the public
half), so after a rotation the ring still accepts the previous pair until a grace period ends:
a client holding a slightly stale announcement can still build through this relay. Once the
grace period ends the old secrets are dropped, which bounds how long a stolen onion key helps
decrypt recorded handshakes.
"""

from __future__ import annotations

from dataclasses import dataclass

from murmur.base.errors import RemoteProtocolError
from murmur.base.rng import Rng
from murmur.crypto.hashing import sha3_256
from murmur.crypto.kem import (
    MLKEM_PUBLIC_BYTES,
    MLKEM_SEED_BYTES,
    X25519_BYTES,
    MlKemSecret,
    X25519Secret,
)
from murmur.wire.codec import Reader

ONION_PUBLIC_KEYS_BYTES = X25519_BYTES + MLKEM_PUBLIC_BYTES
KEY_ID_LABEL = b"murmur onion key id v1"


@dataclass(frozen=True, slots=True, repr=False)
class OnionPublicKeys:
    """The public half, as carried in a signed announcement: ``x25519 (32) || ml-kem (1568)``."""

    x25519: bytes
    mlkem: bytes

    def __post_init__(self) -> None:
        if len(self.x25519) != X25519_BYTES or len(self.mlkem) != MLKEM_PUBLIC_BYTES:
            raise ValueError("onion public key of the wrong size")

    def encode(self) -> bytes:
        return self.x25519 + self.mlkem

    @classmethod
    def decode(cls, data: bytes) -> OnionPublicKeys:
        r = Reader(data)
        keys = cls(r.pull_bytes(X25519_BYTES), r.pull_bytes(MLKEM_PUBLIC_BYTES))
        r.expect_end()
        return keys

    def key_id(self) -> bytes:
        return sha3_256(KEY_ID_LABEL, self.encode())

    def __repr__(self) -> str:
        return f"OnionPublicKeys(key_id={self.key_id().hex()[:16]}…)"


class OnionKeyPair:
    __slots__ = ("key_id", "mlkem", "public", "x25519")

    def __init__(self, x25519_seed: bytes, mlkem_seed: bytes) -> None:
        self.x25519 = X25519Secret(x25519_seed)
        self.mlkem = MlKemSecret(mlkem_seed)
        self.public = OnionPublicKeys(self.x25519.public, self.mlkem.public)
        self.key_id = self.public.key_id()

    @classmethod
    def generate(cls, rng: Rng) -> OnionKeyPair:
        return cls(rng.random_bytes(X25519_BYTES), rng.random_bytes(MLKEM_SEED_BYTES))

    def __repr__(self) -> str:
        return f"OnionKeyPair(key_id={self.key_id.hex()[:16]}…)"


class UnknownOnionKey(RemoteProtocolError):
    def __init__(self) -> None:
        super().__init__("unknown_onion_key", "no current or recent onion key has this id")


class OnionKeyRing:
    """The current pair, and the previous one until ``previous_until``."""

    __slots__ = ("_previous", "_previous_until", "current", "current_since")

    def __init__(self, current: OnionKeyPair, *, now: float) -> None:
        self.current = current
        self.current_since = now
        self._previous: OnionKeyPair | None = None
        self._previous_until = now

    def rotate(self, new: OnionKeyPair, *, now: float, grace_s: float) -> None:
        self._previous, self._previous_until = self.current, now + grace_s
        self.current, self.current_since = new, now

    @property
    def previous_until(self) -> float | None:
        """When the previous pair is dropped (``None`` when there is none): a deadline the
        relay's timer keeps, so the secrets go at the end of the grace period, not at the
        next rotation."""
        return None if self._previous is None else self._previous_until

    def expire(self, now: float) -> None:
        """Drops the previous pair once its grace period is over."""
        if self._previous is not None and now >= self._previous_until:
            self._previous = None

    def find(self, key_id: bytes, now: float) -> OnionKeyPair:
        self.expire(now)
        if key_id == self.current.key_id:
            return self.current
        if self._previous is not None and key_id == self._previous.key_id:
            return self._previous
        raise UnknownOnionKey()
