"""The onion public keys' byte format: round trips and hostile bytes.

Key rotation and the key ring are tested with the circuit handshake (test_handshake.py).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.crypto.kem import MLKEM_PUBLIC_BYTES, X25519_BYTES
from murmur.overlay.circuits.onion_keys import ONION_PUBLIC_KEYS_BYTES, OnionPublicKeys
from tests.damage import damaged, refused_or_canonical

public_keys = st.builds(
    OnionPublicKeys,
    st.binary(min_size=X25519_BYTES, max_size=X25519_BYTES),
    st.binary(min_size=MLKEM_PUBLIC_BYTES, max_size=MLKEM_PUBLIC_BYTES),
)


@settings(max_examples=200)
@given(public_keys)
def test_public_keys_read_back_from_their_encoding(keys: OnionPublicKeys) -> None:
    encoded = keys.encode()
    assert len(encoded) == ONION_PUBLIC_KEYS_BYTES
    assert OnionPublicKeys.decode(encoded) == keys


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=64), damaged(public_keys.map(OnionPublicKeys.encode))))
def test_garbage_raises_only_remote_protocol_error(data: bytes) -> None:
    refused_or_canonical(OnionPublicKeys.decode, OnionPublicKeys.encode, data)
