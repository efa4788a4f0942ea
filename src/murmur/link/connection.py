"""One authenticated, encrypted link to a peer, as a sans-I/O state machine.

Theory of operation. The runtime feeds bytes from whatever transport carries the link
(``receive_data``), timer ticks (``handle_timer``) and local commands (``send_message``,
``ping``, ``close``), and drains ``data_to_send()`` and ``drain_events()``. The link consumes
only the byte stream it is given: a transport may wrap, obfuscate or prefix it freely.

Any :class:`RemoteProtocolError` the peer causes (bad record length, failed tag, a replayed or
reordered record, a ping flood, a flood of the other frames the link consumes itself, a failed
handshake) closes the link; it surfaces once as a
:class:`LinkClosed` event with the reason token and never as an exception to the caller.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from murmur.base.errors import LocalProtocolError, RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.base.metrics import Counters
from murmur.base.rng import Rng
from murmur.crypto.aead import AeadAlgorithm
from murmur.crypto.identity import Identity
from murmur.crypto.kem import MLKEM_SEED_BYTES, X25519_BYTES
from murmur.link import handshake as hs
from murmur.link.channel import ReceiveChannel, SendChannel
from murmur.wire.link import (
    MAX_HANDSHAKE_RECORD_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_RECORD_BODY_BYTES,
    PING_PAYLOAD_BYTES,
    RECORD_HEADER,
    RECORD_HEADER_BYTES,
    FrameType,
    encode_record,
)


class LinkState(enum.Enum):
    AWAIT_HELLO = "await_hello"
    AWAIT_REPLY = "await_reply"
    AWAIT_AUTH = "await_auth"
    ESTABLISHED = "established"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class LinkConfig:
    aead: AeadAlgorithm = AeadAlgorithm.CHACHA20_POLY1305
    handshake_timeout_s: float = 10.0
    keepalive_interval_s: float = 15.0
    idle_timeout_s: float = 60.0
    ping_window_s: float = 10.0
    max_pings_per_window: int = 20
    max_control_frames_per_window: int = 64
    """PADDING, PONG and REKEY frames taken per ``ping_window_s``. An honest peer sends a few
    (padding at most every half second, a pong per ping, a rekey per million frames), and the
    link consumes them itself, so the node's rate limiter never sees them: uncapped, 25-byte
    REKEY records (an AEAD open, an HKDF and a new cipher each, about 6 us) at 4 MB/s kept a
    core busy."""


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    peer_id: NodeId
    peer_public_key: bytes = field(repr=False)
    session_id: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MessageReceived:
    payload: bytes = field(repr=False)

    def __init__(self, payload: bytes) -> None:
        # Written out: mypyc compiles this one, the dataclasses module's runs interpreted
        # (about 12 x slower), and one is built for every frame.
        object.__setattr__(self, "payload", payload)


@dataclass(frozen=True, slots=True)
class PongReceived:
    rtt_s: float


@dataclass(frozen=True, slots=True)
class LinkClosed:
    reason: str
    by_peer_error: bool
    """True when the peer broke the protocol (the node may ban an authenticated peer)."""


LinkEvent = HandshakeCompleted | MessageReceived | PongReceived | LinkClosed

_SENT_COUNTER = {t: f"frames_sent.{t.name.lower()}" for t in FrameType}


class LinkConnection:
    def __init__(
        self,
        *,
        initiator: bool,
        identity: Identity,
        rng: Rng,
        now: float,
        config: LinkConfig | None = None,
        expected_peer: NodeId | None = None,
    ) -> None:
        self.config = config or LinkConfig()
        self.initiator = initiator
        self.counters = Counters()
        self.peer_id: NodeId | None = None
        self.session_id: bytes | None = None
        self.rtt_s: float | None = None
        """Round-trip time: the handshake's at first (our flight and the peer's answer), then
        each keepalive's."""
        self._flight_sent_at = now
        self._identity = identity
        self._rng = rng
        self._expected_peer = expected_peer
        self._inbuf = bytearray()
        self._out: list[bytes] = []
        self._events: list[LinkEvent] = []
        self._send: SendChannel | None = None
        self._recv: ReceiveChannel | None = None
        self._initiator_state: hs.InitiatorWaiting | None = None
        self._responder_state: hs.ResponderWaiting | None = None
        self._handshake_deadline = now + self.config.handshake_timeout_s
        self._last_received = now
        self._next_keepalive = now
        self._ping_outstanding: tuple[bytes, float] | None = None
        self._window_start = now
        self._pings_in_window = 0
        self._control_in_window = 0
        if initiator:
            hello, self._initiator_state = hs.initiator_hello(
                rng.random_bytes(X25519_BYTES), rng.random_bytes(MLKEM_SEED_BYTES), self.config.aead
            )
            self._out.append(encode_record(hello))
            self.state = LinkState.AWAIT_REPLY
        else:
            self.state = LinkState.AWAIT_HELLO

    # --- outputs -------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def drain_events(self) -> list[LinkEvent]:
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        if self.state is LinkState.CLOSED:
            return None
        if self.state is not LinkState.ESTABLISHED:
            return self._handshake_deadline
        return min(self._next_keepalive, self._last_received + self.config.idle_timeout_s)

    # --- commands ------------------------------------------------------------------------

    def send_message(self, payload: bytes, now: float, *, padding: int = 0) -> None:
        self._send_frame(FrameType.DATA, payload, padding)

    def send_padding(self, nbytes: int, now: float) -> None:
        """A padding-only frame (cover at the link level; the receiver drops it)."""
        self._send_frame(FrameType.PADDING, b"", nbytes)

    def ping(self, now: float) -> None:
        nonce = self._rng.random_bytes(PING_PAYLOAD_BYTES)
        self._ping_outstanding = (nonce, now)
        self._send_frame(FrameType.PING, nonce)

    def close(self, now: float, reason: str = "local") -> None:
        if self.state is LinkState.ESTABLISHED:
            self._send_frame(FrameType.CLOSE, reason.encode()[:64])
        self._closed(reason, by_peer_error=False)

    def _send_frame(self, frame_type: FrameType, payload: bytes, padding: int = 0) -> None:
        if self._send is None or self.state is not LinkState.ESTABLISHED:
            raise LocalProtocolError(f"link is {self.state.value}, cannot send")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise LocalProtocolError(f"payload of {len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
        self._out.append(self._send.seal(frame_type, payload, padding))
        self.counters.inc(_SENT_COUNTER[frame_type])

    # --- inputs --------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        if self.state is LinkState.CLOSED:
            return
        if self.state is not LinkState.ESTABLISHED:
            if now >= self._handshake_deadline:
                self._closed("handshake_timeout", by_peer_error=False)
            return
        if now >= self._last_received + self.config.idle_timeout_s:
            self._closed("idle_timeout", by_peer_error=False)
            return
        if now >= self._next_keepalive:
            self.ping(now)
            self._next_keepalive = now + self.config.keepalive_interval_s

    def receive_data(self, data: bytes, now: float) -> None:
        if self.state is LinkState.CLOSED:
            return
        try:
            if self._inbuf:
                self._inbuf += data
                buf = self._inbuf
                with memoryview(buf) as view:
                    used = self._process_records(view, now)
                del buf[:used]
            else:
                # Fast path: whole records are opened straight from ``data``; only a trailing
                # partial record is copied into the buffer.
                used = self._process_records(memoryview(data), now)
                if self.state is not LinkState.CLOSED:
                    self._inbuf += data[used:]
        except RemoteProtocolError as exc:
            self.counters.inc(f"protocol_error.{exc.reason}")
            self._closed(exc.reason, by_peer_error=True)

    def _process_records(self, view: memoryview, now: float) -> int:
        """Handles every complete record in ``view``; returns the bytes consumed.

        Record header and body reach ``_handle_record`` as temporary slices of ``view``, so no
        reference outlives the call and the caller can then trim its buffer.
        """
        pos, size = 0, len(view)
        while self.state is not LinkState.CLOSED and size - pos >= RECORD_HEADER_BYTES:
            (length,) = RECORD_HEADER.unpack_from(view, pos)
            limit = (
                MAX_RECORD_BODY_BYTES
                if self.state is LinkState.ESTABLISHED
                else MAX_HANDSHAKE_RECORD_BYTES
            )
            if length > limit:
                raise RemoteProtocolError("bad_length", f"record of {length} bytes")
            body_start = pos + RECORD_HEADER_BYTES
            end = body_start + length
            if size < end:
                break
            self._last_received = now
            self._handle_record(view[pos:body_start], view[body_start:end], now)
            pos = end
        return pos

    def _handle_record(self, header: memoryview, body: memoryview, now: float) -> None:
        state = self.state
        if state is LinkState.ESTABLISHED:
            self._handle_frame(header, body, now)
            return
        step = bytes(body)  # the handshake steps take bytes
        if state is LinkState.AWAIT_HELLO:
            reply, self._responder_state = hs.responder_reply(
                step,
                x25519_seed=self._rng.random_bytes(X25519_BYTES),
                public_key=self._identity.public_key,
                sign=self._identity.sign,
            )
            self._out.append(encode_record(reply))
            self._flight_sent_at = now
            self.state = LinkState.AWAIT_AUTH
        elif state is LinkState.AWAIT_REPLY:
            assert self._initiator_state is not None
            auth, keys = hs.initiator_finish(
                step,
                self._initiator_state,
                public_key=self._identity.public_key,
                sign=self._identity.sign,
                expected_peer=self._expected_peer,
            )
            self._out.append(encode_record(auth))
            self._established(keys, self.config.aead, now)
        elif state is LinkState.AWAIT_AUTH:
            assert self._responder_state is not None
            keys = hs.responder_finish(step, self._responder_state)
            self._established(keys, self._responder_state.aead, now)

    def _established(self, keys: hs.HandshakeKeys, aead: AeadAlgorithm, now: float) -> None:
        self._initiator_state = self._responder_state = None
        self._send = SendChannel(aead, keys.send_key)
        self._recv = ReceiveChannel(aead, keys.recv_key)
        self.peer_id = keys.peer_id
        self.session_id = keys.session_id
        self.state = LinkState.ESTABLISHED
        self.rtt_s = now - self._flight_sent_at
        self._next_keepalive = now + self.config.keepalive_interval_s
        self.counters.inc("handshakes_completed")
        self._events.append(HandshakeCompleted(keys.peer_id, keys.peer_public_key, keys.session_id))

    def _handle_frame(self, header: memoryview, body: memoryview, now: float) -> None:
        assert self._recv is not None
        frame = self._recv.open(header, body)
        if frame is None:
            self._check_control_rate(now)
            self.counters.inc("rekeys_received")
            return
        kind = frame.type
        if kind is FrameType.DATA:
            self._events.append(MessageReceived(frame.payload))
        elif kind is FrameType.PING:
            self._check_ping_rate(now)
            if len(frame.payload) != PING_PAYLOAD_BYTES:
                raise RemoteProtocolError("bad_length", "ping payload")
            self._send_frame(FrameType.PONG, frame.payload)
        elif kind is FrameType.PONG:
            self._check_control_rate(now)
            outstanding = self._ping_outstanding
            if outstanding is not None and frame.payload == outstanding[0]:
                self._ping_outstanding = None
                self.rtt_s = now - outstanding[1]
                self._events.append(PongReceived(self.rtt_s))
            else:
                self.counters.inc("unsolicited_pongs")
        elif kind is FrameType.CLOSE:
            self._closed("peer_closed", by_peer_error=False)
        elif kind is FrameType.PADDING:
            self._check_control_rate(now)
            self.counters.inc("padding_frames_received")
        self.counters.inc("frames_received")

    def _roll_window(self, now: float) -> None:
        if now - self._window_start >= self.config.ping_window_s:
            self._window_start = now
            self._pings_in_window = 0
            self._control_in_window = 0

    def _check_ping_rate(self, now: float) -> None:
        self._roll_window(now)
        self._pings_in_window += 1
        if self._pings_in_window > self.config.max_pings_per_window:
            raise RemoteProtocolError("ping_flood", f"> {self.config.max_pings_per_window} pings")

    def _check_control_rate(self, now: float) -> None:
        self._roll_window(now)
        self._control_in_window += 1
        limit = self.config.max_control_frames_per_window
        if self._control_in_window > limit:
            raise RemoteProtocolError("control_flood", f"> {limit} padding, pong or rekey frames")

    def _closed(self, reason: str, *, by_peer_error: bool) -> None:
        if self.state is LinkState.CLOSED:
            return
        self.state = LinkState.CLOSED
        self._send = self._recv = None
        self._initiator_state = self._responder_state = None
        self._inbuf = bytearray()  # not clear(): a record view may still be exported
        self._events.append(LinkClosed(reason, by_peer_error))
