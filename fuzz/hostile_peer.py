"""The hostile side of an authenticated link: a real ``LinkConnection`` whose owner is the fuzzer.

It completes the handshake honestly (so the victim believes it is talking to a peer it may
ban), then seals whatever frame plaintext the fuzzer chooses under the link's real keys and
counter, so bad frames, bad channels and every overlay message arrive behind valid encryption.
It answers the victim's pings (the link does that itself) and keeps what the victim sends.
"""

from __future__ import annotations

from murmur.base.ids import NodeId
from murmur.crypto.identity import Identity
from murmur.link.connection import LinkConnection, LinkState, MessageReceived
from murmur.node.actions import ConnId
from murmur.sim.rng import SeededRng
from murmur.wire.link import MAX_PAYLOAD_BYTES, MAX_RECORD_BODY_BYTES

INBOX_LIMIT = 256
"""Victim messages kept for the harness to react to (older ones are dropped)."""


class HostilePeer:
    def __init__(
        self, identity: Identity, victim: NodeId, conn_id: ConnId, seed: int, now: float
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.conn_id = conn_id
        self.link = LinkConnection(
            initiator=True, identity=identity, rng=SeededRng(seed), now=now, expected_peer=victim
        )
        self.inbox: list[bytes] = []

    @property
    def established(self) -> bool:
        return self.link.state is LinkState.ESTABLISHED

    def receive(self, data: bytes, now: float) -> bytes:
        """Bytes from the victim; returns what the link answers (handshake, pongs)."""
        self.link.receive_data(data, now)
        for event in self.link.drain_events():
            if isinstance(event, MessageReceived):
                self.inbox.append(event.payload)
        del self.inbox[:-INBOX_LIMIT]
        return self.link.data_to_send()

    def message(self, payload: bytes, now: float) -> bytes:
        """A DATA frame with this payload (the first byte is the overlay channel)."""
        self.link.send_message(payload[:MAX_PAYLOAD_BYTES], now)
        return self.link.data_to_send()

    def sealed(self, plaintext: bytes) -> bytes:
        """A record holding any frame plaintext at all (type, length and padding included),
        sealed with the link's next send key and counter: the fuzzer's own frame layer."""
        channel = self.link._send  # the harness is the peer: it may use its own send keys
        assert channel is not None
        return channel._seal_one(plaintext[: MAX_RECORD_BODY_BYTES - 16])
