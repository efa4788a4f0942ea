"""Circuits between a hostile peer and its victim, done by hand with the pure handshake steps.

Through a :class:`HandCircuit` (the peer as origin) the fuzzer's relay plaintexts reach the
victim's relay as *recognized* cells (the digest and the layer are made right here), so EXTEND,
DATA, COVER and whatever else the fuzzer writes in a relay header get past the crypto that
random bytes never would. Extended once more (to the honest node, with a real onionskin whose
secrets it keeps), the circuit has a second hop past the victim: cells recognized there make the
victim a middle relay, forwarding them one way and the second hop's answers the other. Through
a :class:`HandHop` (the peer as the victim's first hop) they reach the victim's circuit client
the same way.
"""

from __future__ import annotations

from collections import Counter

from murmur.base.errors import RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.crypto.stream import KeyStream
from murmur.overlay.circuits.handshake import (
    HopKeys,
    client_finish,
    client_onionskin,
    relay_answer,
)
from murmur.overlay.circuits.layers import Digest, RelayLayer
from murmur.overlay.circuits.onion_keys import OnionKeyPair, OnionPublicKeys
from murmur.wire.cells import (
    CELL_BODY_BYTES,
    CREATE_CELLS,
    RELAY_DATA_BYTES,
    CellCommand,
    Created,
    Extend,
    Onionskin,
    RelayAddress,
    RelayCommand,
    create_bodies,
    decode_create_body,
    decode_extended,
    decode_relay_plaintext,
    encode_cell,
    encode_relay_plaintext,
    extend_data,
)

MAX_HOPS = 2
"""The victim, then one hop past it (a third would be the victim or the peer again)."""


class _OriginHop:
    """The origin's half of one hop's layer, as ``OriginLayers`` holds it, but open: the fuzzer
    seals raw bodies (any relay command byte, any length field) that ``wrap_forward`` cannot."""

    __slots__ = ("backward", "backward_digest", "forward", "forward_digest")

    def __init__(self, keys: HopKeys) -> None:
        self.forward = KeyStream(keys.forward_key)
        self.backward = KeyStream(keys.backward_key)
        self.forward_digest = Digest(keys.forward_digest)
        self.backward_digest = Digest(keys.backward_digest)


class HandCircuit:
    """The hostile peer as origin of a circuit whose first hop is the victim."""

    def __init__(
        self, circ_id: int, relay_id: NodeId, relay_keys: OnionPublicKeys, x25519_seed: bytes
    ) -> None:
        self.circ_id = circ_id
        skin, self._pending = client_onionskin(relay_id, relay_keys, x25519_seed=x25519_seed)
        self.create_cells = [
            encode_cell(circ_id, CellCommand.CREATE, body) for body in create_bodies(skin)
        ]
        self._hops: list[_OriginHop] = []
        self._extending = False
        self.heard: Counter[tuple[int, RelayCommand]] = Counter()
        """Backward relay messages recognized, by hop (0: the victim) and command."""

    @property
    def hops(self) -> int:
        return len(self._hops)

    @property
    def built(self) -> bool:
        return bool(self._hops)

    @property
    def extendable(self) -> bool:
        """Built, short of :data:`MAX_HOPS`, and with no extension of its own in flight."""
        return 0 < len(self._hops) < MAX_HOPS and not self._extending

    def finish(self, created_body: bytes) -> None:
        """Takes the victim's CREATED body (the victim is trusted to answer correctly here)."""
        keys = client_finish(Created.decode_body(created_body), self._pending).keys
        self._hops.append(_OriginHop(keys))

    def extend_cells(
        self, node: NodeId, keys: OnionPublicKeys, address: RelayAddress, x25519_seed: bytes
    ) -> list[bytes]:
        """The EXTEND cells, for the last hop, that open a next hop at ``node`` with a real
        onionskin for ``keys``; the EXTENDED answer then adds that hop (:meth:`on_backward`)."""
        skin, self._pending = client_onionskin(node, keys, x25519_seed=x25519_seed)
        self._extending = True
        last = len(self._hops) - 1
        return [
            self.recognized_cell(bytes(encode_relay_plaintext(RelayCommand.EXTEND, data)), last)
            for data in extend_data(Extend(node, address, skin))
        ]

    def recognized_cell(self, plaintext: bytes, hop: int = 0) -> bytes:
        """A RELAY cell that hop ``hop`` (0: the victim; at most the last one) recognizes as
        its own, whatever ``plaintext`` says (it is cut or zero-filled to a body; its
        recognized and digest fields are overwritten)."""
        body = bytearray(plaintext[:CELL_BODY_BYTES].ljust(CELL_BODY_BYTES, b"\x00"))
        body[0:2] = b"\x00\x00"
        return self._wrapped(self._hops[hop].forward_digest.seal(body), hop)

    def opaque_cell(self, body: bytes) -> bytes:
        """A RELAY cell under every layer this circuit has that no hop will recognize (for a
        hop past the last: each hop forwards it if it was extended)."""
        padded = body[:CELL_BODY_BYTES].ljust(CELL_BODY_BYTES, b"\1")
        return self._wrapped(padded, len(self._hops) - 1)

    def on_backward(self, body: bytes) -> None:
        """A backward RELAY body from the victim: its layers are peeled from hop 0 outwards up
        to the first whose digest checks (as ``OriginLayers.unwrap_backward`` does), and an
        EXTENDED from the last hop finishes the extension in flight. What no hop recognizes is
        ignored: a hop the fuzzer extended to with secrets this side never kept may speak."""
        for index, hop in enumerate(self._hops):
            body = hop.backward.apply(body)
            if hop.backward_digest.check(body):
                self._on_message(index, body)
                return

    def _on_message(self, hop: int, body: bytes) -> None:
        try:
            message = decode_relay_plaintext(body)
        except RemoteProtocolError:
            return
        self.heard[hop, message.command] += 1
        if not self._extending or hop != len(self._hops) - 1:
            return
        if message.command is RelayCommand.EXTENDED:
            self._extending = False
            try:  # the EXTEND may have been mixed with the fuzzer's own on this circuit
                keys = client_finish(decode_extended(message.data), self._pending).keys
            except RemoteProtocolError:
                return
            self._hops.append(_OriginHop(keys))
        elif message.command is RelayCommand.TRUNCATED:
            self._extending = False

    def _wrapped(self, body: bytes, hop: int) -> bytes:
        for layer in reversed(self._hops[: hop + 1]):
            body = layer.forward.apply(body)
        return encode_cell(self.circ_id, CellCommand.RELAY, body)


class HandHop:
    """The hostile peer as the first hop of circuits the victim builds through it: it answers
    the victim's CREATE with its announced onion key, so it holds the hop's layer and can send
    the victim's circuit client backward cells it recognizes (EXTENDED, TRUNCATED, REPLY, ...
    with whatever data the fuzzer writes)."""

    def __init__(self, node_id: NodeId, onion_keys: OnionKeyPair) -> None:
        self._node_id = node_id
        self._onion_keys = onion_keys
        self._creates: dict[int, list[bytes]] = {}
        self.layers: dict[int, RelayLayer] = {}

    def on_create(self, circ_id: int, body: bytes) -> bytes | None:
        """One CREATE cell from the victim; the CREATED cell once the onionskin is whole and
        good (none for a bad one: this peer then never answers)."""
        chunks = self._creates.setdefault(circ_id, [])
        chunks.append(decode_create_body(body).chunk)
        if len(chunks) < CREATE_CELLS:
            return None
        del self._creates[circ_id]
        try:  # an onionskin a hostile origin made up, passed on by an honest relay
            skin = Onionskin.decode_body(b"".join(chunks))
            created, schedule = relay_answer(
                skin, self._onion_keys, node_id=self._node_id, y_seed=bytes(32)
            )
        except RemoteProtocolError:
            return None
        self.layers[circ_id] = RelayLayer(schedule.keys)
        return encode_cell(circ_id, CellCommand.CREATED, created.encode())

    def backward_cell(self, circ_id: int, command: RelayCommand, data: bytes) -> bytes:
        body = self.layers[circ_id].originate_backward(command, data[:RELAY_DATA_BYTES])
        return encode_cell(circ_id, CellCommand.RELAY, body)
