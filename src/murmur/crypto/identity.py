"""Node identity: an ML-DSA-87 key pair; the node id is SHA3-256 of the public key."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa

from murmur.base.ids import NodeId
from murmur.crypto.hashing import sha3_256

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 2592
SIGNATURE_BYTES = 4627


def node_id_of(public_key: bytes) -> NodeId:
    return NodeId(sha3_256(public_key))


@dataclass(frozen=True, slots=True, repr=False)
class Identity:
    """A node's long-term signing key. ``repr`` never shows the secret."""

    _private: mldsa.MLDSA87PrivateKey
    public_key: bytes
    node_id: NodeId

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        if len(seed) != SEED_BYTES:
            raise ValueError("ML-DSA-87 seed must be 32 bytes")
        private = mldsa.MLDSA87PrivateKey.from_seed_bytes(seed)
        public = private.public_key().public_bytes_raw()
        return cls(private, public, node_id_of(public))

    def seed(self) -> bytes:
        """The 32-byte seed, for the key file only."""
        return self._private.private_bytes_raw()

    def sign(self, message: bytes, context: bytes) -> bytes:
        return self._private.sign(message, context)

    def __repr__(self) -> str:
        return f"Identity(node_id={self.node_id.hex()[:16]}…)"


def verify(public_key: bytes, signature: bytes, message: bytes, context: bytes) -> bool:
    """True when ``signature`` is valid; malformed keys or signatures are simply invalid."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        mldsa.MLDSA87PublicKey.from_public_bytes(public_key).verify(signature, message, context)
    except (InvalidSignature, ValueError):
        return False
    return True
