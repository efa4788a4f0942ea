"""The keyed stand-in for ML-DSA-87 and ML-KEM-1024: same sizes, same behaviour, scoped."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

from murmur.crypto import identity as identity_module
from murmur.crypto import kem as kem_module
from murmur.crypto.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, verify
from murmur.crypto.kem import MLKEM_CIPHERTEXT_BYTES, MlKemSecret, mlkem_encapsulate
from murmur.sim.crypto_standin import standin_active, standin_crypto
from murmur.sim.onion import OnionKit

SEED = bytes(range(32))


def test_off_by_default_and_restored_after_use() -> None:
    assert OnionKit().standin_crypto is False
    assert not standin_active()
    with standin_crypto() as on:
        assert on and standin_active()
    assert identity_module.mldsa is mldsa and kem_module.mlkem is mlkem
    with standin_crypto(enabled=False) as on:
        assert not on and not standin_active()


def test_signatures_have_the_real_sizes_and_check_like_real_ones() -> None:
    with standin_crypto():
        ident = Identity.from_seed(SEED)
        signature = ident.sign(b"message", b"context")
        assert len(ident.public_key) == PUBLIC_KEY_BYTES and len(signature) == SIGNATURE_BYTES
        assert verify(ident.public_key, signature, b"message", b"context")
        assert not verify(ident.public_key, signature, b"massage", b"context")
        assert not verify(ident.public_key, signature, b"message", b"other")
        other = Identity.from_seed(bytes(32))
        assert not verify(other.public_key, signature, b"message", b"context")
        assert ident.seed() == SEED


def test_encapsulation_agrees_has_the_real_sizes_and_is_reproducible() -> None:
    def exchange() -> tuple[bytes, bytes, bytes]:
        with standin_crypto():
            secret = MlKemSecret(bytes(64))
            ciphertext, shared = mlkem_encapsulate(secret.public)
            return ciphertext, shared, secret.decapsulate(ciphertext)

    ciphertext, shared, decapsulated = exchange()
    assert len(ciphertext) == MLKEM_CIPHERTEXT_BYTES and shared == decapsulated
    assert exchange() == (ciphertext, shared, decapsulated)


def test_real_keys_are_untouched_outside_the_context() -> None:
    real = Identity.from_seed(SEED)
    with standin_crypto():
        stand_in = Identity.from_seed(SEED)
    assert real.public_key != stand_in.public_key
    assert verify(real.public_key, real.sign(b"m", b"c"), b"m", b"c")
