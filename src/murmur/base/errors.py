"""One error root, two kinds that matter (the h11 split).

``RemoteProtocolError`` is the only thing hostile peer input may cause: the core turns it into a
drop or a close plus a counter. ``LocalProtocolError`` means our own caller misused an API.
Crypto failures share one opaque message so that error text never tells an attacker which check
failed, and no error text ever includes keys.
"""

from __future__ import annotations


class MurmurError(Exception):
    """Root of every error Murmur raises on purpose."""


class LocalProtocolError(MurmurError):
    """Our caller used an API wrongly (a bug or a bad command, never the peer's doing)."""


class RemoteProtocolError(MurmurError):
    """The peer sent something the protocol does not allow.

    ``reason`` is a short stable token used as a metric label (``"bad_length"``,
    ``"auth_failed"``...), so counters can be keyed by it without parsing messages.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class CryptoError(RemoteProtocolError):
    """Any cryptographic check failed. Deliberately opaque."""

    def __init__(self) -> None:
        super().__init__("crypto", "authentication failed")


class ConfigError(MurmurError):
    """A configuration file or option is invalid."""
