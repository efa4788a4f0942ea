from __future__ import annotations

import pytest

from murmur.crypto.identity import Identity


@pytest.fixture(scope="session")
def alice() -> Identity:
    return Identity.from_seed(b"A" * 32)


@pytest.fixture(scope="session")
def bob() -> Identity:
    return Identity.from_seed(b"B" * 32)
